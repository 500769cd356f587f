"""OpenXR poses in game-engine axes, as pure functions (the C# and C++ in ENGINES.md mirror these).

OpenXR: right-handed, x right, y up, -z forward, metres. Unity: left-handed, x right, y up, +z forward, metres.
Unreal: left-handed, x forward, y right, z up, centimetres. Each conversion is a reflection M of the axes;
a rotation R becomes M R M^T, which for quaternions (x, y, z, w) means: vector part -> det(M) * M (x, y, z).

Shapes: positions and velocities (..., 3), quaternions (..., 4) in (x, y, z, w) order, in and out. Linear
velocities convert like positions; angular velocities are axial vectors (``*_angular_velocity``).
"""

from __future__ import annotations

import numpy as np

from skiptrack_types import InvalidInputError

UNITY_AXES = np.diag([1.0, 1.0, -1.0])
"""Unity (x, y, z) = UNITY_AXES @ OpenXR (x, y, z)."""

UNREAL_AXES = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
"""Unreal (x, y, z) = UNREAL_AXES @ OpenXR (x, y, z), before scaling to centimetres."""

UNREAL_CM_PER_M = 100.0


def unity_position(position: np.ndarray) -> np.ndarray:
    """OpenXR (x, y, z) m -> Unity (x, y, -z) m."""
    return _last_axis("position", position, 3) @ UNITY_AXES.T


def unity_rotation(quaternion: np.ndarray) -> np.ndarray:
    """OpenXR (qx, qy, qz, qw) -> Unity (-qx, -qy, qz, qw)."""
    return _reflect_quaternion(_last_axis("quaternion", quaternion, 4), UNITY_AXES)


def unreal_position(position: np.ndarray) -> np.ndarray:
    """OpenXR (x, y, z) m -> Unreal (-z, x, y) cm."""
    return UNREAL_CM_PER_M * (_last_axis("position", position, 3) @ UNREAL_AXES.T)


def unreal_rotation(quaternion: np.ndarray) -> np.ndarray:
    """OpenXR (qx, qy, qz, qw) -> Unreal FQuat (qz, -qx, -qy, qw)."""
    return _reflect_quaternion(_last_axis("quaternion", quaternion, 4), UNREAL_AXES)


def unity_angular_velocity(angular_velocity: np.ndarray) -> np.ndarray:
    """OpenXR (wx, wy, wz) rad/s -> Unity (-wx, -wy, wz): an axial vector, like the quaternion's vector part."""
    return -_last_axis("angular_velocity", angular_velocity, 3) @ UNITY_AXES.T


def unreal_angular_velocity(angular_velocity: np.ndarray) -> np.ndarray:
    """OpenXR (wx, wy, wz) rad/s -> Unreal (wz, -wx, -wy) rad/s."""
    return -_last_axis("angular_velocity", angular_velocity, 3) @ UNREAL_AXES.T


def _reflect_quaternion(q: np.ndarray, axes: np.ndarray) -> np.ndarray:
    # A reflection turns the rotation axis like a pseudo-vector (times det) and keeps the angle's cosine.
    out = np.empty_like(q)
    out[..., :3] = np.linalg.det(axes) * (q[..., :3] @ axes.T)
    out[..., 3] = q[..., 3]
    return out


def _last_axis(name: str, value: np.ndarray, n: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != n:
        raise InvalidInputError(f"{name} must have shape (..., {n}), got {array.shape}")
    return array
