"""The synthetic headset world: the frame contract, truth that matches the pixels, IMU physics, sparsity regimes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hardware import open_source
from hardware.synthetic import SCENARIOS, World, build_world, make_rig, open_synthetic
from hardware.synthetic.hands import FIST, LIMITS_HI, OPEN, hand_joints_local
from hardware.synthetic.source import T0_NS
from hardware.synthetic.trajectory import HeadMotion, ImuErrors, imu_samples, imu_times_ns
from skiptrack_types import MEDIAPIPE_JOINTS, InvalidInputError, SkipTrackError, SourceError

CHANGE_THRESHOLD = 8


def changed_fractions(source, frames: int) -> list[float]:
    """Per consecutive pair, the fraction of left-camera pixels changing by more than 8 grey levels."""
    previous, out = None, []
    for seq in range(frames):
        left = source.frame(seq).images[0].astype(np.int16)
        if previous is not None:
            out.append(float((np.abs(left - previous) > CHANGE_THRESHOLD).mean()))
        previous = left
    return out


def project(rig, T_world_head: np.ndarray, points_world: np.ndarray, cam: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 2) and camera-frame points (N, 3) of world points seen by camera ``cam``."""
    T_world_cam = T_world_head @ (rig.T_head_cam0 if cam == 0 else rig.T_head_cam1)
    T_cam_world = np.linalg.inv(T_world_cam)
    points_cam = points_world @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    return rig.cameras[cam].project(points_cam), points_cam


@pytest.fixture(scope="module")
def seated():
    return open_synthetic("seated", seconds=0.5)


@pytest.fixture(scope="module")
def seated_frame(seated):
    return seated.frame(12)


# ------------------------------------------------------------------------------------------- the contract


def test_frames_have_sequential_seq_and_evenly_spaced_integer_times(seated):
    frames = list(seated)
    assert [f.seq for f in frames] == list(range(30)) == list(range(seated.num_frames))
    times = [f.t_ns for f in frames]
    assert all(isinstance(t, int) for t in times)
    assert times[0] == T0_NS
    assert np.allclose(np.diff(times), 1e9 / 60, atol=1)


def test_images_are_a_uint8_contiguous_stereo_pair_of_the_requested_size(seated_frame):
    assert len(seated_frame.images) == 2
    for image in seated_frame.images:
        assert image.dtype == np.uint8 and image.shape == (240, 320) and image.flags.c_contiguous


def test_truth_has_every_landmark_per_camera_and_every_scripted_hand(seated, seated_frame):
    truth = seated_frame.truth
    n = len(seated.landmarks_world)
    assert 300 <= n <= 2000
    assert [px.shape for px in truth.landmarks_px] == [(n, 2), (n, 2)]
    assert all(v.dtype == np.bool_ and v.shape == (n,) for v in truth.landmarks_visible)
    assert sorted(h.side for h in truth.hands) == ["left", "right"]
    assert all(vis.sum() > 50 for vis in truth.landmarks_visible)


def test_uri_query_options_arrive_as_strings_and_are_converted():
    source = open_source("synthetic:still_hand?seconds=0.1&size=160x120&seed=3&rate=30")
    assert source.rig.cam0.size == (160, 120)
    assert source.num_frames == 3 and source.rate_hz == 30.0 and source.seed == 3
    assert source.scenario == "still_hand"


def test_every_named_scenario_exists():
    assert set(SCENARIOS) == {"still_hand", "seated", "look_around", "walk", "fast", "dark", "occlusion"}


# ------------------------------------------------------------------------------------------- validation


def test_unknown_scenario_is_a_source_error_listing_the_scenarios():
    with pytest.raises(SourceError, match="still_hand.*seated.*look_around"):
        open_synthetic("sitting")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": "1280x960"}, "640x480"),
        ({"size": (640, 481)}, "640x480"),
        ({"size": "big"}, "WxH"),
        ({"seconds": "-1"}, "seconds must be > 0"),
        ({"seconds": "soon"}, "seconds"),
        ({"rate": 0}, "rate must be in"),
        ({"seed": "-2"}, "seed must be >= 0"),
        ({"seed": "1.5"}, "seed"),
        ({"colour": "red"}, "unknown synthetic option.*colour.*valid options: seconds"),
    ],
)
def test_bad_options_raise_skiptrack_errors_that_say_what_is_valid(options, message):
    with pytest.raises(InvalidInputError, match=message) as err:
        open_synthetic("seated", **options)
    assert isinstance(err.value, SkipTrackError)


# ------------------------------------------------------------------------------------------- rig


def test_rig_cameras_look_forward_64mm_apart_and_toe_out():
    rig = make_rig((320, 240))
    assert np.allclose(rig.T_head_imu, np.eye(4))
    assert np.allclose(rig.T_head_cam0[:3, 3], (-0.032, 0, 0)) and np.allclose(rig.T_head_cam1[:3, 3], (0.032, 0, 0))
    assert rig.baseline_m == pytest.approx(0.064)
    forward0 = rig.T_head_cam0[:3, :3] @ (0, 0, 1)  # camera +z in the head frame
    forward1 = rig.T_head_cam1[:3, :3] @ (0, 0, 1)
    assert forward0[2] < -0.99 and forward1[2] < -0.99  # both look down head -z
    assert forward0[0] < 0 < forward1[0]  # toed out: left camera a little left, right a little right
    toe = np.degrees(np.arccos(np.clip(forward0 @ (0, 0, -1), -1, 1)))
    assert 2.0 <= toe <= 5.0
    assert np.allclose(rig.T_head_cam0[:3, :3] @ (0, 1, 0), (0, -1, 0), atol=1e-9)  # camera y down = head -y


def test_horizontal_field_of_view_is_95_to_100_degrees_and_intrinsics_scale_with_size():
    small, large = make_rig((320, 240)).cam0, make_rig((640, 480)).cam0
    assert 140 <= small.fx <= 150 and small.dist[0] < 0
    edges = small.undistort_points(np.array([[-0.5, small.cy], [small.width - 0.5, small.cy]]))
    fov = np.degrees(np.arctan(-edges[0, 0]) + np.arctan(edges[1, 0]))
    assert 95 <= fov <= 100
    assert large.fx == pytest.approx(2 * small.fx)


# ------------------------------------------------------------------------------------------- truth vs images


def test_hand_joint_pixels_are_the_projection_of_the_world_joints(seated, seated_frame):
    truth = seated_frame.truth
    for hand in truth.hands:
        for cam in (0, 1):
            px, _ = project(seated.rig, truth.T_world_head, hand.joints_world, cam)
            assert np.allclose(px, hand.joints_px[cam], atol=1e-9, equal_nan=True)
            assert hand.visible[cam].any()


def test_landmark_pixels_are_the_projection_of_the_world_landmarks(seated, seated_frame):
    truth = seated_frame.truth
    for cam in (0, 1):
        px, _ = project(seated.rig, truth.T_world_head, seated.landmarks_world, cam)
        assert np.allclose(px, truth.landmarks_px[cam], atol=1e-9, equal_nan=True)


def test_hands_are_drawn_where_their_visible_joints_project(seated, seated_frame):
    t_s = (seated_frame.t_ns - T0_NS) * 1e-9
    without = seated.render(seated_frame.truth.T_world_head, t_s, seq=seated_frame.seq, hands=False)
    for cam in (0, 1):
        difference = np.abs(seated_frame.images[cam].astype(int) - without.images[cam].astype(int))
        # Same noise in both renders: only the hands differ (3x3: a hand pixel may match the wall by chance).
        hand_pixels = cv2.dilate((difference > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        for hand in seated_frame.truth.hands:
            px = np.round(hand.joints_px[cam][hand.visible[cam]]).astype(int)
            assert hand_pixels[px[:, 1], px[:, 0]].all()
        covered = (difference > 0).mean()
        assert 0.005 < covered < 0.10, f"two hands cover {covered:.1%} of the image; a few percent expected"


def test_hands_hide_the_landmarks_behind_them(seated, seated_frame):
    t_s = (seated_frame.t_ns - T0_NS) * 1e-9
    without = seated.render(seated_frame.truth.T_world_head, t_s, seq=seated_frame.seq, hands=False)
    hidden = without.truth.landmarks_visible[0] & ~seated_frame.truth.landmarks_visible[0]
    assert hidden.any()
    px = np.round(seated_frame.truth.landmarks_px[0][hidden]).astype(int)
    changed = seated_frame.images[0].astype(int) != without.images[0].astype(int)
    assert changed[px[:, 1], px[:, 0]].mean() > 0.8


def test_checkerboard_landmarks_are_image_corners_within_a_tenth_of_a_pixel():
    source = open_synthetic("still_hand", seconds=0.1, size="640x480")
    world = source.world
    checker = world.landmark_kinds == "checker"
    target = world.landmarks_world[np.flatnonzero(checker)[0]]
    wall = min(world.walls, key=lambda f: abs(np.dot(target - f.origin, f.normal)))
    T_world_head = np.eye(4)  # 1 m in front of the board, looking straight at it
    T_world_head[:3, :3] = Rotation.from_euler("y", np.arctan2(wall.normal[0], wall.normal[2])).as_matrix()
    T_world_head[:3, 3] = target + wall.normal * 1.0 + (0.0, 0.1, 0.0)
    view = source.render(T_world_head, 0.0, hands=False)
    errors = []
    for cam in (0, 1):
        seen = np.flatnonzero(view.truth.landmarks_visible[cam] & checker)
        assert len(seen) >= 12
        truth_px = view.truth.landmarks_px[cam][seen]
        start = (truth_px + (0.8, -0.7)).astype(np.float32).reshape(-1, 1, 2)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 50, 1e-3)
        found = cv2.cornerSubPix(view.images[cam], start, (5, 5), (-1, -1), criteria).reshape(-1, 2)
        errors.append(np.linalg.norm(found - truth_px, axis=1))
    assert np.max(np.concatenate(errors)) < 0.15


def test_landmarks_are_stronger_corners_than_random_pixels(seated_frame):
    image = seated_frame.images[0]
    cornerness = cv2.dilate(cv2.cornerMinEigenVal(image, 3), np.ones((3, 3)))
    h, w = image.shape
    px = np.round(seated_frame.truth.landmarks_px[0][seated_frame.truth.landmarks_visible[0]]).astype(int)
    inside = (px[:, 0] >= 3) & (px[:, 0] < w - 3) & (px[:, 1] >= 3) & (px[:, 1] < h - 3)
    at_landmarks = cornerness[px[inside, 1], px[inside, 0]]
    rng = np.random.default_rng(0)
    at_random = cornerness[rng.integers(3, h - 3, 2000), rng.integers(3, w - 3, 2000)]
    assert np.median(at_landmarks) > 3 * np.median(at_random)


def test_rectified_disparity_of_landmarks_is_focal_times_baseline_over_depth(seated, seated_frame):
    rig, truth = seated.rig, seated_frame.truth
    rect = rig.rectification
    both = truth.landmarks_visible[0] & truth.landmarks_visible[1]
    _, points_cam0 = project(rig, truth.T_world_head, seated.landmarks_world[both], 0)
    depth = (points_cam0 @ rect.R0.T)[:, 2]
    rectified = []
    for cam, (R, P) in enumerate(((rect.R0, rect.P0), (rect.R1, rect.P1))):
        camera = rig.cameras[cam]
        px = truth.landmarks_px[cam][both].reshape(-1, 1, 2)
        rectified.append(cv2.undistortPointsIter(px, camera.K, camera.dist, R, P, (3, 100, 1e-12)).reshape(-1, 2))
    disparity = rectified[0][:, 0] - rectified[1][:, 0]
    assert np.allclose(rectified[0][:, 1], rectified[1][:, 1], atol=0.01)
    assert np.allclose(disparity, rect.focal_px * rect.baseline_m / depth, atol=0.01)
    # The pixels agree: block matching along the rectified row finds the same disparity.
    left, right = rect.rectify(seated_frame.images)
    hits = []
    for (u, v), d in zip(rectified[0], disparity, strict=True):
        u, v = int(round(u)), int(round(v))
        if not (8 <= v < left.shape[0] - 8 and 40 <= u < left.shape[1] - 8):
            continue
        patch = left[v - 6 : v + 7, u - 6 : u + 7]
        strip = right[v - 6 : v + 7, u - 36 : u + 7]
        score = cv2.matchTemplate(strip, patch, cv2.TM_SQDIFF_NORMED).ravel()
        found = (len(score) - 1) - int(np.argmin(score))
        hits.append(abs(found - d) <= 1.0)
    assert len(hits) > 30 and np.mean(hits) > 0.8


# ------------------------------------------------------------------------------------------- IMU


def test_imu_rows_are_1khz_samples_between_consecutive_frames(seated):
    rows = [seated.frame(seq).imu for seq in range(3)]
    for seq, imu in enumerate(rows):
        assert imu.shape[1] == 7
        assert seated.t_ns(seq - 1) < imu[0, 0] and imu[-1, 0] <= seated.t_ns(seq)
    times = np.concatenate([imu[:, 0] for imu in rows])
    assert np.all(np.diff(times) == 1e6)


def test_gyro_integrated_over_a_frame_matches_the_truth_rotation():
    source = open_synthetic("look_around", seconds=0.5)
    previous = source.frame(9)
    errors, turned = [], []
    for seq in range(10, 14):
        frame = source.frame(seq)
        R = Rotation.from_matrix(previous.truth.T_world_head[:3, :3])
        t_prev = previous.t_ns
        for t_ns, *gyro in frame.imu[:, :4]:
            R = R * Rotation.from_rotvec(np.array(gyro) * (t_ns - t_prev) * 1e-9)
            t_prev = t_ns
        truth = Rotation.from_matrix(frame.truth.T_world_head[:3, :3])
        errors.append((R.inv() * truth).magnitude())
        turned.append((Rotation.from_matrix(previous.truth.T_world_head[:3, :3]).inv() * truth).magnitude())
        previous = frame
    assert min(turned) > np.radians(0.5)  # the head really turned
    assert max(errors) < 1e-3  # ~30x below the rotation per frame: bias and noise only


def test_accelerometer_at_rest_reads_gravity_upwards():
    errors = ImuErrors.for_seed(0)
    t_ns = imu_times_ns(T0_NS, T0_NS + 1_000_000_000)
    rows = imu_samples(HeadMotion(position=(0.0, 1.5, 0.0)), errors, t_ns, T0_NS, np.random.default_rng(0))
    assert np.allclose(rows[:, 4:].mean(axis=0), (0.0, 9.81, 0.0), atol=0.1)
    assert np.allclose(rows[:, 1:4].mean(axis=0), 0.0, atol=0.01)


def test_accelerometer_reads_specific_force_of_the_truth_trajectory_in_the_head_frame():
    source = open_synthetic("walk", seconds=0.2)
    frames = [source.frame(seq) for seq in (4, 5, 6)]
    positions = [f.truth.T_world_head[:3, 3] for f in frames]
    dt = 1.0 / source.rate_hz
    a_world = (positions[0] - 2 * positions[1] + positions[2]) / dt**2
    R_world_head = frames[1].truth.T_world_head[:3, :3]
    expected = R_world_head.T @ (a_world - (0.0, -9.81, 0.0))
    near_frame = frames[1].imu[-4:, 4:].mean(axis=0)  # the last 4 ms before the frame
    assert np.linalg.norm(a_world) > 0.1  # walking: the head accelerates
    assert np.allclose(near_frame, expected, atol=0.1)


# ------------------------------------------------------------------------------------------- hands


def test_hand_has_adult_proportions():
    joints = hand_joints_local(OPEN)
    assert len(joints) == len(MEDIAPIPE_JOINTS) == 21
    assert 0.17 <= np.linalg.norm(joints[12] - joints[0]) <= 0.19  # wrist to middle fingertip
    knuckles = np.linalg.norm(joints[5] - joints[17]) + 2 * 0.0115  # index to pinky MCP, plus flesh
    assert 0.075 <= knuckles <= 0.095


def test_finger_flexion_is_clipped_to_joint_limits():
    beyond = hand_joints_local(LIMITS_HI + 1.0)
    at_limit = hand_joints_local(LIMITS_HI)
    assert np.allclose(beyond, at_limit)
    fist = hand_joints_local(FIST)
    assert np.linalg.norm(fist[12] - fist[0]) < 0.11  # a closed hand is short


def test_hands_in_view_are_held_25_to_60_cm_from_the_cameras():
    rig = make_rig((320, 240))
    T_cam_head = np.linalg.inv(rig.T_head_cam0)
    palm_distances = []
    for scenario in SCENARIOS.values():
        for script in scenario.hands:
            for t in np.arange(0.0, 8.0, 0.1):
                joints_cam = script.joints_head(t) @ T_cam_head[:3, :3].T + T_cam_head[:3, 3]
                palm = joints_cam[[0, 5, 9, 13, 17]].mean(axis=0, keepdims=True)
                u, v = rig.cam0.project(palm)[0]
                if 0 <= u < 320 and 0 <= v < 240:
                    palm_distances.append(float(np.linalg.norm(palm)))
    assert len(palm_distances) > 500
    assert 0.25 <= min(palm_distances) and max(palm_distances) <= 0.60


def test_hands_leave_and_reenter_the_view_and_keep_their_truth():
    source = open_synthetic("occlusion", seconds=4.0, rate=10.0)
    seen = {"left": [], "right": []}
    for frame in source:
        for hand in frame.truth.hands:
            seen[hand.side].append(int(hand.visible[1].sum()))
    for counts in seen.values():
        assert len(counts) == source.num_frames  # truth present even when out of view
        assert min(counts) == 0 and max(counts) >= 10


def test_a_covered_camera_is_near_black_and_sees_nothing():
    source = open_synthetic("occlusion", seconds=2.0)
    middle = source.frame(source.num_frames // 2)
    assert middle.images[0].mean() < 12 and middle.images[1].mean() > 60
    assert not middle.truth.landmarks_visible[0].any() and middle.truth.landmarks_visible[1].sum() > 50
    assert source.frame(5).images[0].mean() > 60


def test_dark_scenario_is_dim_and_noisy_but_normal_noise_stays_below_8_levels():
    normal = open_synthetic("seated", seconds=0.1)
    dark = open_synthetic("dark", seconds=0.1)
    view = normal.frame(0)
    again = normal.render(view.truth.T_world_head, 0.0, seq=1)  # same scene, other noise
    noise = np.abs(view.images[0].astype(int) - again.images[0].astype(int))
    assert (noise > 8).mean() < 0.01
    assert dark.frame(0).images[0].mean() < 0.35 * view.images[0].mean()


# ------------------------------------------------------------------------------------------- determinism, sparsity


def test_same_seed_gives_the_same_pixels_and_another_seed_does_not():
    first = [f.images for f in open_synthetic("walk", seconds=0.05, seed=4)]
    second = [f.images for f in open_synthetic("walk", seconds=0.05, seed=4)]
    other = next(iter(open_synthetic("walk", seconds=0.05, seed=5))).images
    assert all(np.array_equal(a, b) for pa, pb in zip(first, second, strict=True) for a, b in zip(pa, pb, strict=True))
    assert (first[0][0] != other[0]).mean() > 0.5


def test_iterating_twice_gives_identical_frames_and_truth(seated):
    a, b = seated.frame(7), seated.frame(7)
    assert np.array_equal(a.images[1], b.images[1]) and np.array_equal(a.imu, b.imu)
    assert np.array_equal(a.truth.landmarks_visible[0], b.truth.landmarks_visible[0])


def test_still_hand_changes_at_most_5_percent_of_pixels_per_frame():
    fractions = changed_fractions(open_synthetic("still_hand", seconds=1.0), 60)
    assert np.median(fractions) <= 0.05


def test_look_around_changes_most_pixels_per_frame():
    fractions = changed_fractions(open_synthetic("look_around", seconds=1.0), 60)
    assert np.median(fractions) >= 0.5


def test_world_textures_are_cached_per_seed():
    assert build_world(0) is build_world(0)
    assert not np.array_equal(build_world(0).landmarks_world[:50], build_world(1).landmarks_world[:50])


def test_boxes_hide_what_is_behind_them_but_not_their_own_front():
    world = build_world(0)
    eye = np.array([0.0, 1.2, 0.4])
    for box in world.boxes:
        towards = box.center - eye
        behind = box.center + towards / np.linalg.norm(towards) * 2.0
        # The front face along the sight line: where the line enters the box (slab entry).
        t1, t2 = (box.lo - eye) / towards, (box.hi - eye) / towards
        front = eye + np.minimum(t1, t2).max() * towards
        beside = box.center + np.cross(towards, (0.0, 1.0, 0.0)) / np.linalg.norm(towards) * 2.0
        alone = World(world.walls, (box,), world.landmarks_world, world.landmark_kinds)
        hidden = alone.occluded_by_boxes(eye, np.array([behind, front, beside]))
        assert hidden.tolist() == [True, False, False], box.name


def test_prerendered_frames_are_the_rendered_frames_and_cost_no_rendering(monkeypatch):
    source = open_source("synthetic:still_hand", seconds=0.1, seed=4)
    rendered = [source.frame(seq) for seq in range(len(source))]
    counted = []
    source.prerender(counted.append)
    assert sum(counted) == len(source)
    monkeypatch.setattr(source, "render", lambda *a, **k: pytest.fail("rendered after prerender"))
    for seq, frame in enumerate(rendered):
        again = source.frame(seq)
        assert again.t_ns == frame.t_ns and np.array_equal(again.images, frame.images)
        assert np.array_equal(again.imu, frame.imu)
