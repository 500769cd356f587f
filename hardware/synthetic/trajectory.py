"""Head motion as smooth analytic functions of time, and the IMU that motion produces.

Every coordinate of the head pose is a constant plus a sum of sines, so velocity, acceleration and angular
velocity are exact derivatives, not finite differences. Orientation is ``R = Ry(yaw) Rx(pitch) Rz(roll)`` in the
world (OpenXR: +Y up, -Z forward), so yaw 0 looks down -Z and positive yaw turns to the left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

GRAVITY_WORLD = np.array([0.0, -9.81, 0.0])
IMU_RATE_HZ = 1000.0
IMU_PERIOD_NS = int(round(1e9 / IMU_RATE_HZ))


@dataclass(frozen=True)
class Sine:
    """``amplitude * sin(2 pi freq_hz t + phase)``; amplitude in metres or radians."""

    amplitude: float
    freq_hz: float
    phase: float = 0.0


Terms = tuple[Sine, ...]


def _sum_of_sines(base: float, terms: Terms, t: np.ndarray, order: int) -> np.ndarray:
    """The ``order``-th time derivative (0, 1 or 2) of ``base + sum(terms)`` at times ``t`` (N,) seconds."""
    out = np.full(t.shape, base if order == 0 else 0.0)
    for s in terms:
        w = 2.0 * np.pi * s.freq_hz
        arg = w * t + s.phase
        if order == 0:
            out += s.amplitude * np.sin(arg)
        elif order == 1:
            out += s.amplitude * w * np.cos(arg)
        else:
            out -= s.amplitude * w * w * np.sin(arg)
    return out


@dataclass(frozen=True)
class HeadMotion:
    """Head pose in the world over time. ``position`` (3,) m and ``angles`` (yaw, pitch, roll) rad are the means;
    ``position_terms`` / ``angle_terms`` hold the sines added to each of the three coordinates."""

    position: tuple[float, float, float] = (0.0, 1.2, 0.0)
    angles: tuple[float, float, float] = (0.0, 0.0, 0.0)
    position_terms: tuple[Terms, Terms, Terms] = ((), (), ())
    angle_terms: tuple[Terms, Terms, Terms] = ((), (), ())

    def position_at(self, t: np.ndarray, order: int = 0) -> np.ndarray:
        """Head position (order 0, m), velocity (1, m/s) or acceleration (2, m/s^2) in the world: (N, 3)."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        return np.stack(
            [_sum_of_sines(b, terms, t, order) for b, terms in zip(self.position, self.position_terms, strict=True)],
            axis=1,
        )

    def angles_at(self, t: np.ndarray, order: int = 0) -> np.ndarray:
        """(yaw, pitch, roll) or their derivatives: (N, 3)."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        return np.stack(
            [_sum_of_sines(b, terms, t, order) for b, terms in zip(self.angles, self.angle_terms, strict=True)],
            axis=1,
        )

    def rotation_at(self, t: np.ndarray) -> Rotation:
        """R_world_head at times ``t`` (N,)."""
        return Rotation.from_euler("YXZ", self.angles_at(t))

    def T_world_head(self, t: float) -> np.ndarray:
        """The (4, 4) head pose at time ``t`` seconds."""
        T = np.eye(4)
        T[:3, :3] = self.rotation_at(np.array([t])).as_matrix()[0]
        T[:3, 3] = self.position_at(np.array([t]))[0]
        return T

    def angular_velocity_head(self, t: np.ndarray) -> np.ndarray:
        """Angular velocity (N, 3) rad/s in the head frame, exact.

        With R = Ry(yaw) Rx(pitch) Rz(roll): w_head = roll' e_z + Rz^T (pitch' e_x + Rx^T yaw' e_y).
        """
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        yaw, pitch, roll = self.angles_at(t).T
        dyaw, dpitch, droll = self.angles_at(t, order=1).T
        # Rx(pitch)^T e_y * yaw' = (0, cos p, -sin p) * yaw'
        v = np.stack([dpitch, dyaw * np.cos(pitch), -dyaw * np.sin(pitch)], axis=1)
        cr, sr = np.cos(roll), np.sin(roll)
        # Rz(roll)^T v
        w = np.stack([cr * v[:, 0] + sr * v[:, 1], -sr * v[:, 0] + cr * v[:, 1], v[:, 2] + droll], axis=1)
        return w

    def specific_force_head(self, t: np.ndarray) -> np.ndarray:
        """What an ideal accelerometer at the head origin reads: R^T (a_world - g_world), (N, 3) m/s^2."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        a_world = self.position_at(t, order=2) - GRAVITY_WORLD
        return self.rotation_at(t).inv().apply(a_world)


@dataclass(frozen=True)
class ImuErrors:
    """Constant biases (3,) and white-noise standard deviations per sample of a MEMS IMU."""

    gyro_bias: np.ndarray
    accel_bias: np.ndarray
    gyro_noise: float = 0.002  # rad/s per sample at 1 kHz
    accel_noise: float = 0.02  # m/s^2 per sample

    @classmethod
    def for_seed(cls, seed: int) -> ImuErrors:
        rng = np.random.default_rng([seed, 7001])
        return cls(gyro_bias=rng.normal(0.0, 0.002, 3), accel_bias=rng.normal(0.0, 0.03, 3))


def imu_times_ns(t_from_ns: int, t_to_ns: int) -> np.ndarray:
    """IMU sample times (int64 ns) in the half-open interval (t_from_ns, t_to_ns], on the 1 kHz grid."""
    first = t_from_ns // IMU_PERIOD_NS + 1
    last = t_to_ns // IMU_PERIOD_NS
    return np.arange(first, last + 1, dtype=np.int64) * IMU_PERIOD_NS


def imu_samples(
    motion: HeadMotion, errors: ImuErrors, t_ns: np.ndarray, t0_ns: int, rng: np.random.Generator
) -> np.ndarray:
    """IMU rows (N, 7): (t_ns, gx, gy, gz, ax, ay, az) for sample times ``t_ns``; motion time is (t_ns - t0_ns)."""
    t = (t_ns - t0_ns).astype(np.float64) * 1e-9
    gyro = motion.angular_velocity_head(t) + errors.gyro_bias + rng.normal(0.0, errors.gyro_noise, (len(t), 3))
    accel = motion.specific_force_head(t) + errors.accel_bias + rng.normal(0.0, errors.accel_noise, (len(t), 3))
    return np.hstack([t_ns[:, None].astype(np.float64), gyro, accel])
