"""One-Euro filtering of pose jitter, and prediction of poses to a display time.

One-Euro filter (Casiez, Roussel, Vogel, CHI 2012): an exponential smoother whose cutoff rises with the speed of
the signal, ``fc = min_cutoff + beta * |dx/dt|``, so a still pose is smoothed hard and a moving one follows with
little lag. With the default ``beta`` the lag of a pose moving at walking-head speeds stays within one frame.
Rotations are filtered in the tangent space of the previous filtered rotation (rotation vectors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from skiptrack_types import InvalidInputError
from tracking.pose.geometry import matrix_to_rotvec, rotvec_to_matrix


@dataclass(frozen=True)
class OneEuroConfig:
    """``min_cutoff`` Hz at rest, ``beta`` s/unit (cutoff gain per unit of speed), ``d_cutoff`` Hz for the speed."""

    min_cutoff: float = 1.0
    beta: float = 80.0
    d_cutoff: float = 8.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise InvalidInputError(
                f"One-Euro cutoffs must be positive and beta non-negative, got min_cutoff={self.min_cutoff}, "
                f"beta={self.beta}, d_cutoff={self.d_cutoff}"
            )


def _alpha(cutoff_hz: float, dt_s: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt_s)


def _alpha_array(cutoff_hz: np.ndarray, dt_s: float) -> np.ndarray:
    tau = 1.0 / (2.0 * np.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """One-Euro filter of a signal of points (..., 3) or a vector; the speed that opens the cutoff is each point's
    own (the norm over the last axis), so one moving finger does not unsmooth the whole hand. ``reset()``
    forgets the past (after a gap)."""

    def __init__(self, config: OneEuroConfig | None = None) -> None:
        self.config = config or OneEuroConfig()
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t_ns: int | None = None

    def reset(self) -> None:
        self._x = self._dx = self._t_ns = None

    def __call__(self, t_ns: int, x: np.ndarray) -> np.ndarray:
        """Filter sample ``x`` taken at ``t_ns``; a sample not after the previous one restarts the filter."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t_ns is None or t_ns <= self._t_ns:
            self._x, self._dx, self._t_ns = x.copy(), np.zeros_like(x), t_ns
            return x.copy()
        dt = (t_ns - self._t_ns) * 1e-9
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.config.d_cutoff, dt) * (dx - self._dx)
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) if x.ndim else np.abs(self._dx)
        cutoff = self.config.min_cutoff + self.config.beta * speed
        self._x = self._x + _alpha_array(cutoff, dt) * (x - self._x)
        self._t_ns = t_ns
        return self._x.copy()


class PoseFilter:
    """One-Euro filter of a rigid pose: position (m) and rotation (3, 3). The rotation is filtered in the tangent
    space at the previous filtered rotation (rotation vector of the step to the new sample, rad), with its own
    speed scale ``rotation_beta`` (s/rad)."""

    def __init__(self, config: OneEuroConfig | None = None, rotation_beta: float = 25.0) -> None:
        self.config = config or OneEuroConfig()
        self.rotation_beta = rotation_beta
        self._position = OneEuroFilter(self.config)
        self._R: np.ndarray | None = None
        self._rate = np.zeros(3)
        self._t_ns: int | None = None

    def reset(self) -> None:
        self._position.reset()
        self._R, self._t_ns = None, None
        self._rate = np.zeros(3)

    def __call__(self, t_ns: int, position: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Filtered (position (3,), rotation (3, 3)) for a pose sample at ``t_ns``."""
        p = self._position(t_ns, position)
        if self._R is None or self._t_ns is None or t_ns <= self._t_ns:
            self._R, self._t_ns, self._rate = np.array(R, dtype=np.float64), t_ns, np.zeros(3)
            return p, self._R.copy()
        dt = (t_ns - self._t_ns) * 1e-9
        step = matrix_to_rotvec(self._R.T @ R)
        self._rate = self._rate + _alpha(self.config.d_cutoff, dt) * (step / dt - self._rate)
        cutoff = self.config.min_cutoff + self.rotation_beta * float(np.linalg.norm(self._rate))
        self._R = self._R @ rotvec_to_matrix(_alpha(cutoff, dt) * step)
        self._t_ns = t_ns
        return p, self._R.copy()


def predict_pose(
    position: np.ndarray,
    orientation: np.ndarray,
    linear_velocity: np.ndarray,
    angular_velocity: np.ndarray,
    horizon_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity prediction: position + v·h and orientation rotated by ω·h (ω in the world frame, rad/s)."""
    p = np.asarray(position, dtype=np.float64) + np.asarray(linear_velocity) * horizon_s
    R = Rotation.from_rotvec(np.asarray(angular_velocity) * horizon_s) * Rotation.from_quat(orientation)
    return p, R.as_quat()
