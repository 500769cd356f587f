"""Gyro–vision fusion: PnP with an orientation prior, and the gyro integration that feeds it."""

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from tracking.pose.fusion import RotationPrior, fuse_rotation_prior
from tracking.pose.geometry import from_rvec_tvec, invert, make_transform, pose_delta
from tracking.pose.head import integrate_gyro

R_HEAD_CAM = Rotation.from_euler("x", 180, degrees=True).as_matrix()  # OpenXR head, OpenCV camera


def _scene(rng):
    """80 points 2.5-3.5 m in front of a camera with a 60° field of view; the true T_cam_world."""
    points_cam = np.column_stack([rng.uniform(-1.2, 1.2, 80), rng.uniform(-0.9, 0.9, 80), rng.uniform(2.5, 3.5, 80)])
    T_world_cam = make_transform(Rotation.from_rotvec([0.05, -0.2, 0.02]).as_matrix(), [0.1, 1.6, -0.3])
    points_world = points_cam @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]
    return points_world, invert(T_world_cam)


def _observe(points_world, T_cam_world):
    x = points_world @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    return x[:, :2] / x[:, 2:]


def _head_rotation(T_cam_world):
    return T_cam_world[:3, :3].T @ R_HEAD_CAM.T


def test_a_tight_prior_decides_the_rotation_that_the_images_confuse_with_a_translation():
    rng = np.random.default_rng(1)
    points_world, T_true = _scene(rng)
    # every observation shifted alike by 1 px (f = 250 px): a rotation, or a sideways step, explains it
    observed = _observe(points_world, T_true) + np.array([1.0, 0.0]) / 250.0
    # the images alone: a pose that explains the shift by rotating and stepping (what PnP finds)
    T_vision = T_true.copy()
    T_vision[:3, :3] = Rotation.from_rotvec([0.0, 1.0 / 250.0, 0.0]).as_matrix() @ T_true[:3, :3]
    tight = RotationPrior(_head_rotation(T_true), np.eye(3) * 1e-10)
    T_fused, covariance = fuse_rotation_prior(points_world, observed, T_vision, R_HEAD_CAM, tight, 1.0 / 250.0)
    _, angle = pose_delta(T_fused, T_true)
    assert np.degrees(angle) < 1e-3  # the rotation is the prior's
    # the shift is explained by a sideways step of about depth × angle: 3 m × 4 mrad = 12 mm
    step = invert(T_fused)[:3, 3] - invert(T_true)[:3, 3]
    assert 0.008 < np.linalg.norm(step) < 0.016
    assert np.all(np.linalg.eigvalsh(covariance) < 1e-9)


def test_a_loose_prior_leaves_the_images_in_charge():
    rng = np.random.default_rng(2)
    points_world, T_true = _scene(rng)
    observed = _observe(points_world, T_true) + rng.normal(0.0, 0.3 / 250.0, (len(points_world), 2))
    wrong = Rotation.from_rotvec([0.0, 0.05, 0.0]).as_matrix() @ _head_rotation(T_true)  # 3° off
    loose = RotationPrior(wrong, np.eye(3) * 1.0)
    T_start = T_true.copy()
    T_start[:3, 3] += [0.01, -0.01, 0.02]
    T_fused, covariance = fuse_rotation_prior(points_world, observed, T_start, R_HEAD_CAM, loose, 0.3 / 250.0, 5)
    rvec, tvec = cv2.solvePnP(points_world, observed, np.eye(3), None, flags=cv2.SOLVEPNP_ITERATIVE)[1:]
    dt, dr = pose_delta(T_fused, from_rvec_tvec(rvec, tvec))  # the images' own least-squares pose
    assert dt < 2e-4 and np.degrees(dr) < 0.005
    assert np.all(np.linalg.eigvalsh(covariance) < 1e-4)  # the images' own certainty, far below the prior's 1 rad²


def test_gyro_integration_covers_the_whole_frame_interval():
    # samples at 1 kHz a third of a millisecond off the 60 Hz frame times, as a real IMU's would be
    omega = np.array([0.0, 1.5, 0.0])  # rad/s about the head's y axis
    prev_t_ns, t_ns = 1_000_000_000, 1_016_666_667
    times = np.arange(prev_t_ns + 333_333, t_ns, 1_000_000)
    imu = np.column_stack([times, np.tile(omega, (len(times), 1)), np.zeros((len(times), 3))])
    R, rate = integrate_gyro(np.eye(3), imu, prev_t_ns, t_ns, np.eye(4), np.zeros(3))
    angle = np.linalg.norm(Rotation.from_matrix(R).as_rotvec())
    # summing each sample's rate over the stretch before it comes out 0.5 mrad short
    assert abs(angle - 1.5 * (t_ns - prev_t_ns) * 1e-9) < 1e-9
    np.testing.assert_allclose(rate, omega)
