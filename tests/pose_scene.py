"""A small analytic world for the pose tests: random landmarks on the walls of a room, a smooth head trajectory
with an exact gyro and accelerometer, and a rigid hand held in front of the head. Frames carry the truth the
keypoint interface needs (landmark projections and visibility, hand joints per camera); images are random texture
(the pose layer never looks at pixels, but the truth keypoint provider skips flat, camera-covered patches)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from skiptrack_types import CameraModel, Frame, HandTruth, StereoRig, Truth

WIDTH, HEIGHT, FX = 320, 240, 145.0
T0_NS = 1_000_000_000
GRAVITY = np.array([0.0, -9.81, 0.0])


def make_rig() -> StereoRig:
    """Two forward-looking cameras 64 mm apart, OpenCV axes in the OpenXR head frame, mild distortion."""
    cam = CameraModel.from_intrinsics(WIDTH, HEIGHT, FX, FX, 160.0, 120.0, [-0.05, 0.01, 0.0, 0.0, 0.0])
    flip = np.diag([1.0, -1.0, -1.0])
    T_head_cam0 = np.eye(4)
    T_head_cam0[:3, :3] = flip
    T_head_cam0[:3, 3] = (-0.032, 0.0, 0.0)
    T_cam0_cam1 = np.eye(4)
    T_cam0_cam1[0, 3] = 0.064
    return StereoRig(cam, cam, T_cam0_cam1, T_head_cam0)


def make_landmarks(n: int = 1500, seed: int = 0) -> np.ndarray:
    """Points on the walls, floor and ceiling of a 6 x 3 x 6 m room around the origin (N, 3)."""
    rng = np.random.default_rng(seed)
    face = rng.integers(0, 6, n)
    p = rng.uniform(-1.0, 1.0, (n, 3)) * (3.0, 1.5, 3.0)
    extent = np.array([3.0, 1.5, 3.0])
    axis, sign = face % 3, np.where(face < 3, 1.0, -1.0)
    p[np.arange(n), axis] = sign * extent[axis]
    return p


def head_pose(t: float, amplitude_m: float = 0.05, amplitude_rad: float = 0.3) -> np.ndarray:
    """T_world_head at time t s: a smooth sway and a yaw/pitch wobble."""
    pos = amplitude_m * np.array([np.sin(0.9 * t), 0.3 * np.sin(1.3 * t), 0.5 * np.sin(0.7 * t)])
    rotvec = amplitude_rad * np.array([0.3 * np.sin(0.8 * t), np.sin(0.6 * t), 0.1 * np.sin(1.1 * t)])
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = pos
    return T


# a right hand in the head frame, palm down, fingers forward (-Z), 21 MediaPipe joints (m)
_HAND_HEAD = np.array(
    [
        [0.10, -0.15, -0.30],
        [0.08, -0.15, -0.33],
        [0.065, -0.15, -0.355],
        [0.05, -0.15, -0.375],
        [0.04, -0.15, -0.395],
        [0.08, -0.15, -0.39],
        [0.078, -0.15, -0.43],
        [0.077, -0.15, -0.455],
        [0.076, -0.15, -0.475],
        [0.10, -0.15, -0.392],
        [0.10, -0.15, -0.437],
        [0.10, -0.15, -0.465],
        [0.10, -0.15, -0.487],
        [0.12, -0.15, -0.388],
        [0.122, -0.15, -0.428],
        [0.123, -0.15, -0.454],
        [0.124, -0.15, -0.474],
        [0.14, -0.15, -0.38],
        [0.143, -0.15, -0.41],
        [0.145, -0.15, -0.43],
        [0.146, -0.15, -0.447],
    ]
)


class PoseScene:
    """Frames of the analytic world at ``rate`` Hz for ``seconds``, with IMU at 1 kHz and an optional gyro bias."""

    def __init__(
        self,
        seconds: float = 2.0,
        rate: float = 60.0,
        seed: int = 0,
        gyro_bias=(0.0, 0.0, 0.0),
        amplitude_m: float = 0.05,
        amplitude_rad: float = 0.3,
        blind: tuple[float, float] | None = None,
    ):
        self.rig = make_rig()
        self.landmarks_world = make_landmarks(seed=seed)
        self.rate_hz = rate
        self.seconds = seconds
        self.gyro_bias = np.asarray(gyro_bias, dtype=np.float64)
        self.amplitude = (amplitude_m, amplitude_rad)
        self.blind = blind

    def pose(self, t: float) -> np.ndarray:
        return head_pose(t, *self.amplitude)

    def imu(self, t0: float, t1: float) -> np.ndarray:
        """IMU rows for samples in (t0, t1] at 1 kHz: exact gyro (head = IMU frame) plus bias, exact specific force."""
        times = np.arange(np.floor(t0 * 1000) + 1, np.floor(t1 * 1000) + 1) / 1000.0
        rows = []
        h = 1e-4
        for t in times:
            R0, R1 = self.pose(t - h)[:3, :3], self.pose(t + h)[:3, :3]
            omega = Rotation.from_matrix(R0.T @ R1).as_rotvec() / (2 * h)
            p = [self.pose(t + k * h)[:3, 3] for k in (-1, 0, 1)]
            acc_world = (p[0] - 2 * p[1] + p[2]) / h**2
            f = self.pose(t)[:3, :3].T @ (acc_world - GRAVITY)
            rows.append([T0_NS + round(t * 1e9), *(omega + self.gyro_bias), *f])
        return np.array(rows).reshape(-1, 7)

    def frame(self, seq: int) -> Frame:
        t = seq / self.rate_hz
        T_world_head = self.pose(t)
        px, vis = [], []
        for T_head_cam, cam in zip((self.rig.T_head_cam0, self.rig.T_head_cam1), self.rig.cameras, strict=True):
            T_cam_world = np.linalg.inv(T_world_head @ T_head_cam)
            pts = self.landmarks_world @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
            p = cam.project(pts)
            inside = (
                np.isfinite(p).all(axis=1) & (p[:, 0] >= 0) & (p[:, 0] < WIDTH) & (p[:, 1] >= 0) & (p[:, 1] < HEIGHT)
            )
            if self.blind is not None and self.blind[0] <= t < self.blind[1]:
                inside[:] = False
            px.append(p)
            vis.append(inside)
        hands = (self.hand(T_world_head),)
        truth = Truth(T_world_head, hands, tuple(px), tuple(vis))
        image = np.random.default_rng(seq).integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
        imu = self.imu(t - 1.0 / self.rate_hz, t) if seq > 0 else self.imu(t - 0.01, t)
        return Frame(seq, T0_NS + round(t * 1e9), (image, image.copy()), imu, truth)

    def hand(self, T_world_head: np.ndarray) -> HandTruth:
        joints_world = _HAND_HEAD @ T_world_head[:3, :3].T + T_world_head[:3, 3]
        px, vis = [], []
        for T_head_cam, cam in zip((self.rig.T_head_cam0, self.rig.T_head_cam1), self.rig.cameras, strict=True):
            pts = _HAND_HEAD @ np.linalg.inv(T_head_cam)[:3, :3].T + np.linalg.inv(T_head_cam)[:3, 3]
            p = cam.project(pts)
            px.append(p)
            vis.append(
                np.isfinite(p).all(axis=1) & (p[:, 0] >= 0) & (p[:, 0] < WIDTH) & (p[:, 1] >= 0) & (p[:, 1] < HEIGHT)
            )
        return HandTruth("right", joints_world, tuple(px), tuple(vis))

    def __iter__(self):
        for seq in range(int(self.seconds * self.rate_hz)):
            yield self.frame(seq)
