"""Head pose: the cascade's stages on the analytic pose scene (truth keypoints with 0.5 px noise)."""

import numpy as np
import pytest
from pose_scene import PoseScene

from tracking.evaluate import ate
from tracking.keypoints import landmark_descriptors, truth_keypoints
from tracking.pose.geometry import pose_delta
from tracking.pose.head import gravity_aligned_orientation, integrate_gyro
from tracking.refine.cascade import ExitStage, RefinementCascade


def _run(scene, seconds_blind=None):
    desc = landmark_descriptors(len(scene.landmarks_world))
    rng = np.random.default_rng(0)
    cascade = RefinementCascade(scene.rig, desc.shape[1])
    outcomes, truths = [], []
    for frame in scene:
        keypoints = tuple(truth_keypoints(frame, c, desc, 0.5, rng) for c in range(2))
        outcomes.append(cascade.step(frame.seq, frame.t_ns, keypoints, frame.imu))
        truths.append(frame.truth.T_world_head)
    return cascade, outcomes, np.array(truths)


@pytest.fixture(scope="module")
def tracked():
    return _run(PoseScene(seconds=2.0, gyro_bias=(0.01, -0.005, 0.003)))


def test_head_pose_follows_truth_within_a_centimetre(tracked):
    _, outcomes, truths = tracked
    ate_m, ate_deg, _ = ate(np.array([o.T_world_head for o in outcomes]), truths)
    assert ate_m < 0.01
    assert ate_deg < 0.5


def test_every_frame_is_tracked_and_says_its_exit_stage(tracked):
    _, outcomes, _ = tracked
    assert all(o.flags.position_tracked for o in outcomes)
    assert all(o.exit_stage is ExitStage.FULL for o in outcomes)


def test_tracking_stage_adds_landmarks_where_the_map_explains_the_frame_or_the_view_is_new(tracked):
    """A frame the map explains almost entirely (a repeatable detector) grows the map at the tracking stage, as
    the full stage would; one with as many unexplained keypoints as explained ones (a network's top-k) grows it
    there only in a new view (no keyframe near), with the keypoints unlike every landmark."""
    import copy

    from tracking.keypoints import Keypoints
    from tracking.pose.map import UNMATCHED

    cascade, _, _ = tracked
    scene = PoseScene(seconds=2.0, gyro_bias=(0.01, -0.005, 0.003))
    frame = scene.frame(119)
    desc = landmark_descriptors(len(scene.landmarks_world))
    rng = np.random.default_rng(5)
    left, right = (truth_keypoints(frame, c, desc, 0.5, rng) for c in range(2))

    def with_novel(n):
        novel = rng.normal(size=(n, desc.shape[1])).astype(np.float32)
        novel /= np.linalg.norm(novel, axis=1, keepdims=True)
        return Keypoints(np.vstack([left.points_px, rng.uniform([20, 20], [300, 220], (n, 2))]).astype(np.float32),
                         np.ones(len(left) + n, np.float32), np.vstack([left.descriptors, novel]))  # fmt: skip

    for n, new_view, grows in ((5, False, True), (len(left), False, False), (len(left), True, True)):
        stages = copy.deepcopy(cascade.stages)
        if new_view:
            stages.map.keyframes = []
        result = stages.track_guided(frame.truth.T_world_head, (with_novel(n), right))
        assert result.ok and result.camera == 0
        assert (result.left_ids >= 0).sum() > 50
        unmatched = (result.left_ids == UNMATCHED).sum()
        assert (result.left_ids[-n:] == UNMATCHED).sum() >= (0.8 * n if grows else 0)
        assert grows or unmatched == 0


def test_gyro_bias_is_learned_from_vision(tracked):
    cascade, _, _ = tracked
    np.testing.assert_allclose(cascade._bias, (0.01, -0.005, 0.003), atol=0.003)


def test_world_is_gravity_aligned_from_the_accelerometer():
    scene = PoseScene(seconds=0.1)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.3), -np.sin(0.3)], [0.0, np.sin(0.3), np.cos(0.3)]])
    imu = np.zeros((10, 7))
    imu[:, 4:7] = tilt.T @ np.array([0.0, 9.81, 0.0])
    R = gravity_aligned_orientation(imu, scene.rig.T_head_imu)
    np.testing.assert_allclose(R @ imu[0, 4:7], [0.0, 9.81, 0.0], atol=1e-9)


def test_gyro_integration_matches_the_true_rotation():
    scene = PoseScene(seconds=0.5)
    T0, T1 = scene.pose(0.1), scene.pose(0.2)
    imu = scene.imu(0.1, 0.2)
    t0, t1 = 1_000_000_000 + 100_000_000, 1_000_000_000 + 200_000_000
    R, _ = integrate_gyro(T0[:3, :3], imu, t0, t1, scene.rig.T_head_imu, np.zeros(3))
    _, angle = pose_delta(np.block([[R, np.zeros((3, 1))], [np.zeros((1, 3)), 1]]), T1)
    assert np.degrees(angle) < 0.05


def test_tracking_resumes_right_after_both_cameras_were_blind():
    _, outcomes, truths = _run(PoseScene(seconds=2.0, blind=(0.8, 1.3), amplitude_rad=0.4))
    lost = [i for i, o in enumerate(outcomes) if not o.flags.position_tracked]
    assert lost, "the blind stretch must lose position tracking"
    first_back = lost[-1] + 1
    assert first_back < len(outcomes) and first_back / 60.0 - 1.3 < 0.1
    T_align = truths[0] @ np.linalg.inv(outcomes[0].T_world_head)
    dt, dr = pose_delta(T_align @ outcomes[first_back].T_world_head, truths[first_back])
    assert dt < 0.03 and np.degrees(dr) < 1.0


def test_relocalization_finds_the_pose_without_any_prior(tracked):
    cascade, outcomes, truths = tracked
    scene = PoseScene(seconds=2.0)
    frame = scene.frame(90)
    desc = landmark_descriptors(len(scene.landmarks_world))
    keypoints = tuple(truth_keypoints(frame, c, desc, 0.5, np.random.default_rng(5)) for c in range(2))
    far = np.eye(4)
    far[:3, 3] = (2.0, 0.0, -1.0)
    result = cascade.stages.relocalize(far, keypoints)
    assert result.ok and result.cost > 0
    dt, dr = pose_delta(result.T_world_head, outcomes[90].T_world_head)
    assert dt < 0.01 and np.degrees(dr) < 0.3


def test_after_a_long_blackout_the_pose_is_relocalized_within_a_second():
    # 1.5 s blind: beyond the 1 s the held position stays valid, so the motion prior is useless on return
    _, outcomes, truths = _run(PoseScene(seconds=3.0, blind=(1.0, 2.5), amplitude_rad=0.4))
    blind = [i for i, o in enumerate(outcomes) if 60 <= i < 150]
    assert not any(outcomes[i].flags.position_tracked for i in blind)
    assert not outcomes[149].flags.position_valid, "1.5 s without a fix: position no longer valid"
    back = next(i for i in range(150, len(outcomes)) if outcomes[i].flags.position_tracked)
    assert (back - 150) / 60.0 < 1.0
    T_align = truths[0] @ np.linalg.inv(outcomes[0].T_world_head)
    dt, dr = pose_delta(T_align @ outcomes[back].T_world_head, truths[back])
    assert dt < 0.03 and np.degrees(dr) < 1.0


def _map_with(n, config):
    from tracking.pose.map import UNMATCHED, LandmarkMap
    from tracking.pose.stereo import StereoPoints

    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-1, 1, (n, 2)), rng.uniform(1, 3, n)])
    stereo = StereoPoints(points, landmark_descriptors(n), np.arange(n), np.arange(n), np.full(n, 0.01))
    landmarks = LandmarkMap(32, config)
    ids = landmarks.fuse(np.eye(4), stereo, np.full(n, UNMATCHED), 200.0)
    landmarks.add_keyframe(0, np.eye(4), ids)
    return landmarks


def test_landmarks_searched_for_and_rarely_found_are_culled_and_compacted_away():
    from tracking.pose.map import MapConfig

    landmarks = _map_with(10, MapConfig(cull_after_searches=4, min_found_ratio=0.5, compact_min_dead=3))
    kept_position = landmarks.positions[9].copy()
    for _ in range(4):
        landmarks.note_search(np.arange(10), np.arange(5, 10))  # 0-4 never found, 5-9 always
    np.testing.assert_array_equal(landmarks.alive_ids(), np.arange(5, 10))
    new_ids = landmarks.compact()
    assert len(landmarks) == 5 and new_ids[:5].tolist() == [-1] * 5 and new_ids[9] == 4
    np.testing.assert_array_equal(landmarks.positions[4], kept_position)
    assert landmarks.keyframes[0].landmark_ids.tolist() == [0, 1, 2, 3, 4]


def test_a_landmark_found_often_is_kept_even_when_often_hidden():
    from tracking.pose.map import MapConfig

    landmarks = _map_with(3, MapConfig(cull_after_searches=4, min_found_ratio=0.5, keep_found=4))
    for i in range(20):
        landmarks.note_search(np.arange(3), np.array([0]) if i < 4 or i % 4 == 0 else np.zeros(0, np.int64))
    assert landmarks.alive[0] and not landmarks.alive[1:].any()
