"""Rigid-transform helpers shared by the pose stages: 4x4 transforms, OpenCV rvec/tvec, pose differences.

``T_a_b`` (4, 4) maps points from frame b to frame a. Per-frame rotation conversions on the tracking path go through
OpenCV's Rodrigues (microseconds); ``scipy.spatial.transform.Rotation`` (about 100 µs a call) serves the rest.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial.transform import Rotation


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The 4x4 transform with rotation ``R`` (3, 3) and translation ``t`` (3,)."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64).ravel()
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform, exact (R^T, -R^T t)."""
    R, t = T[:3, :3], T[:3, 3]
    return make_transform(R.T, -R.T @ t)


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``T`` (4, 4) to ``points`` (N, 3)."""
    return points @ T[:3, :3].T + T[:3, 3]


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """The rotation (3, 3) of a rotation vector (3,) rad (axis times angle)."""
    return cv2.Rodrigues(np.asarray(rotvec, dtype=np.float64).reshape(3, 1))[0]


def matrix_to_rotvec(R: np.ndarray) -> np.ndarray:
    """The rotation vector (3,) rad of a rotation (3, 3)."""
    return cv2.Rodrigues(np.ascontiguousarray(R, dtype=np.float64))[0].ravel()


def skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices (N, 3, 3) of vectors (N, 3): skew(v) @ w = v x w."""
    out = np.zeros((len(v), 3, 3))
    out[:, 0, 1], out[:, 0, 2], out[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    return out - out.transpose(0, 2, 1)


def rotation_angle(R: np.ndarray) -> np.ndarray | float:
    """Angle (rad) of rotations ``R`` (..., 3, 3), from sin and cos together (accurate near 0 and near π)."""
    R = np.asarray(R, dtype=np.float64)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    vee = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], axis=-1)
    angle = np.arctan2(np.linalg.norm(vee, axis=-1) / 2.0, cos)
    return float(angle) if np.ndim(angle) == 0 else angle


def to_rvec_tvec(T_cam_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's (rvec (3, 1), tvec (3, 1)) for a world-to-camera transform."""
    return matrix_to_rotvec(T_cam_world[:3, :3]).reshape(3, 1), T_cam_world[:3, 3].reshape(3, 1).copy()


def from_rvec_tvec(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """The world-to-camera transform for OpenCV's (rvec, tvec)."""
    return make_transform(rotvec_to_matrix(rvec), np.ravel(tvec))


def pose_delta(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """(translation distance m, rotation angle rad) between two poses of the same frame."""
    dt = float(np.linalg.norm(T_a[:3, 3] - T_b[:3, 3]))
    return dt, rotation_angle(T_a[:3, :3].T @ T_b[:3, :3])


def pose_deltas(T_a: np.ndarray, T_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pose_delta`` of many poses ``T_a`` (N, 4, 4) against one pose ``T_b`` (4, 4): ((N,) m, (N,) rad)."""
    dt = np.linalg.norm(T_a[:, :3, 3] - T_b[:3, 3], axis=1)
    return dt, np.atleast_1d(rotation_angle(np.swapaxes(T_a[:, :3, :3], 1, 2) @ T_b[:3, :3]))


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation (3, 3) taking direction ``a`` (3,) to direction ``b`` (3,)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s = float(np.linalg.norm(axis))
    angle = float(np.arctan2(s, float(a @ b)))
    if s < 1e-12:
        if a @ b > 0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * perp / np.linalg.norm(perp)).as_matrix()
    return Rotation.from_rotvec(axis / s * angle).as_matrix()


def pose_to_tum_row(t_s: float, T: np.ndarray) -> list[float]:
    """One TUM trajectory row: t tx ty tz qx qy qz qw."""
    return [t_s, *T[:3, 3].tolist(), *Rotation.from_matrix(T[:3, :3]).as_quat().tolist()]


def kabsch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (3, 3) and translation (3,) taking points ``src`` (N >= 3, 3) onto ``dst`` (N, 3) in least squares
    (Kabsch, no reflection)."""
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    U, _, Vt = np.linalg.svd((dst - cd).T @ (src - cs))
    R = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    return R, cd - R @ cs
