"""The shared types validate at the boundary and follow the project's conventions."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hardware import open_source, parse_uri
from skiptrack_types import (
    CameraModel,
    CameraModelKind,
    Frame,
    HandPose,
    HeadPose,
    InvalidInputError,
    SourceError,
    StereoRig,
    TimestampError,
    TrackingFlags,
    Truth,
    require_later,
)


def _camera(kind=CameraModelKind.PINHOLE_RADTAN) -> CameraModel:
    dist = [-0.08, 0.01, 0.0005, -0.0003, 0.0] if kind is CameraModelKind.PINHOLE_RADTAN else [0.02, -0.01, 0.0, 0.0]
    return CameraModel.from_intrinsics(320, 240, 148.0, 148.5, 161.2, 119.3, dist, kind)


def _image(h=240, w=320) -> np.ndarray:
    return np.zeros((h, w), np.uint8)


@pytest.mark.parametrize("kind", list(CameraModelKind))
def test_camera_project_then_unproject_returns_the_ray(kind):
    cam = _camera(kind)
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-0.8, 0.8, 50), rng.uniform(-0.6, 0.6, 50), rng.uniform(1.0, 4.0, 50)])
    rays = cam.unproject(cam.project(points))
    np.testing.assert_allclose(rays[:, :2], points[:, :2] / points[:, 2:], atol=1e-6)


def test_camera_marks_points_behind_it_as_nan():
    px = _camera().project(np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 2.0]]))
    assert np.isnan(px[0]).all() and np.isfinite(px[1]).all()


def test_camera_rejects_wrong_distortion_count():
    with pytest.raises(InvalidInputError, match="distortion"):
        CameraModel.from_intrinsics(320, 240, 100, 100, 160, 120, [0.1, 0.2], CameraModelKind.PINHOLE_RADTAN)


def test_stereo_rectification_keeps_the_baseline():
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("y", 3, degrees=True).as_matrix()
    T[0, 3] = 0.064
    rig = StereoRig(_camera(), _camera(), T)
    rect = rig.rectification
    assert rect.baseline_m == pytest.approx(0.064, rel=1e-6)
    left, right = rect.rectify((_image(), _image()))
    assert left.shape == right.shape == (240, 320)


def test_stereo_rig_rejects_a_non_rigid_transform():
    T = np.eye(4)
    T[0, 0] = 2.0
    with pytest.raises(InvalidInputError, match="rotation"):
        StereoRig(_camera(), _camera(), T)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ((np.zeros((240, 320), np.float32),), "dtype uint8"),
        ((np.zeros((240, 320, 3), np.uint8),), "shape"),
        ((_image(), _image(120, 160)), "one size"),
        ((np.zeros((320, 240), np.uint8).T,), "C-contiguous"),
        ((), "at least one image"),
    ],
)
def test_frame_rejects_bad_images_with_a_clear_message(images, message):
    with pytest.raises(InvalidInputError, match=message):
        Frame(0, 0, images)


def test_frame_rejects_nan_imu():
    imu = np.zeros((3, 7))
    imu[1, 2] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        Frame(0, 0, (_image(),), imu=imu)


def test_frame_rejects_imu_time_going_backwards():
    imu = np.zeros((3, 7))
    imu[:, 0] = [3, 2, 4]
    with pytest.raises(TimestampError):
        Frame(0, 0, (_image(),), imu=imu)


def test_require_later_rejects_repeated_and_backward_time():
    require_later("t", None, 5)
    require_later("t", 5, 6)
    for bad in (5, 4):
        with pytest.raises(TimestampError, match="strictly increase"):
            require_later("t", 5, bad)


def test_truth_needs_landmark_visibility_per_camera():
    with pytest.raises(InvalidInputError, match="one entry per camera"):
        Truth(np.eye(4), (), (np.zeros((4, 2)),), ())


def test_head_pose_rejects_a_non_unit_quaternion():
    with pytest.raises(InvalidInputError, match="unit quaternion"):
        HeadPose(0, 0, np.zeros(3), np.array([0.0, 0.0, 0.0, 2.0]))


def test_head_pose_matrix_follows_scipy_quaternion_order():
    q = Rotation.from_euler("y", 30, degrees=True).as_quat()
    pose = HeadPose(0, 10, np.array([1.0, 2.0, 3.0]), q)
    np.testing.assert_allclose(pose.T_world_head[:3, :3], Rotation.from_quat(q).as_matrix())
    assert pose.display_t_ns == 10


def test_hand_pose_wrist_is_joint_one():
    positions = np.arange(78, dtype=float).reshape(26, 3)
    orientations = np.tile([0.0, 0.0, 0.0, 1.0], (26, 1))
    pose = HandPose(0, 0, "left", positions, orientations, np.full(26, 0.01), np.ones(26, bool), np.ones(26, bool))
    np.testing.assert_array_equal(pose.position, positions[1])


def test_tracking_flags_bits_follow_openxr():
    assert TrackingFlags.tracked().to_bits() == 0b1111
    assert TrackingFlags.predicted().to_bits() == 0b0011
    for bits in range(16):
        assert TrackingFlags.from_bits(bits).to_bits() == bits


def test_source_uri_query_becomes_options():
    assert parse_uri("synthetic:seated?seconds=5&seed=3") == ("synthetic", "seated", {"seconds": "5", "seed": "3"})


def test_unknown_source_scheme_lists_the_known_ones():
    with pytest.raises(SourceError, match="known schemes: .*synthetic"):
        open_source("nosuch:thing")


def test_source_without_scheme_explains_the_form():
    with pytest.raises(SourceError, match="scheme:target"):
        open_source("seated")
