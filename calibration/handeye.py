"""Camera-to-headset (hand-eye) calibration: T_head_cam0 from board poses seen by camera 0 and headset poses.

The headset is the robot "gripper", the tracking world its "base", the board the "target": with A_i = T_world_head
and B_i = T_cam0_board at the same instants, T_world_head_i @ X @ T_cam0_board_i is the (fixed) board pose for the
unknown X = T_head_cam0, which ``cv2.calibrateHandEye`` solves (Tsai-Lenz by default, Park-Martin optional).

Pose files are TUM trajectories: one line ``t tx ty tz qx qy qz qw`` per pose (t in seconds, metres, unit
quaternion), ``#`` comments allowed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from skiptrack_types import CalibrationError

MIN_PAIRS = 3
MIN_AXIS_SPREAD_DEG = 10.0
"""Motions must rotate about axes at least this far apart, or the rotation about the common axis is unobservable."""


class HandEyeMethod(enum.Enum):
    TSAI = cv2.CALIB_HAND_EYE_TSAI
    PARK = cv2.CALIB_HAND_EYE_PARK
    DANIILIDIS = cv2.CALIB_HAND_EYE_DANIILIDIS


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Timestamps ``t_s`` (N,) seconds and poses ``T`` (N, 4, 4)."""

    t_s: np.ndarray
    T: np.ndarray

    def __len__(self) -> int:
        return len(self.t_s)


@dataclass(frozen=True, eq=False)
class HandEyeResult:
    """``T_head_cam0`` (4, 4) and how consistent the implied board poses T_world_board are over the ``pairs`` used:
    translation spread (m, RMS about the mean) and rotation spread (deg, RMS about the mean)."""

    T_head_cam0: np.ndarray
    pairs: int
    board_spread_m: float
    board_spread_deg: float


def read_tum(path: str | Path) -> Trajectory:
    """Read a TUM trajectory file; raise CalibrationError naming the file and line on bad input."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise CalibrationError(f"{path}: pose file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: cannot read pose file ({e})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            values = [float(v) for v in text.replace(",", " ").split()]
        except ValueError:
            raise CalibrationError(f"{path}:{number}: not numbers; expected 't tx ty tz qx qy qz qw'") from None
        if len(values) != 8 or not np.isfinite(values).all():
            raise CalibrationError(f"{path}:{number}: expected 8 finite numbers 't tx ty tz qx qy qz qw'")
        if abs(np.linalg.norm(values[4:]) - 1.0) > 1e-3:
            raise CalibrationError(f"{path}:{number}: quaternion (qx qy qz qw) is not unit length")
        rows.append(values)
    if not rows:
        raise CalibrationError(f"{path}: no poses found")
    data = np.array(rows)
    if np.any(np.diff(data[:, 0]) <= 0):
        raise CalibrationError(f"{path}: timestamps must strictly increase")
    T = np.tile(np.eye(4), (len(data), 1, 1))
    T[:, :3, :3] = Rotation.from_quat(data[:, 4:]).as_matrix()
    T[:, :3, 3] = data[:, 1:4]
    return Trajectory(data[:, 0], T)


def write_tum(path: str | Path, trajectory: Trajectory) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quats = Rotation.from_matrix(trajectory.T[:, :3, :3]).as_quat()
    lines = ["# t tx ty tz qx qy qz qw"]
    for t, T, q in zip(trajectory.t_s, trajectory.T, quats, strict=True):
        lines.append(" ".join(f"{v:.9f}" for v in (t, *T[:3, 3], *q)))
    path.write_text("\n".join(lines) + "\n")
    return path


def match_by_time(a: Trajectory, b: Trajectory, max_dt_s: float) -> list[tuple[int, int]]:
    """Index pairs (i in a, j in b) of each pose of ``a`` with the nearest pose of ``b`` within ``max_dt_s``."""
    j = np.clip(np.searchsorted(b.t_s, a.t_s), 1, len(b) - 1) if len(b) > 1 else np.zeros(len(a), dtype=int)
    if len(b) > 1:
        j = np.where(np.abs(b.t_s[j - 1] - a.t_s) <= np.abs(b.t_s[j] - a.t_s), j - 1, j)
    return [(i, int(k)) for i, k in enumerate(j) if abs(b.t_s[k] - a.t_s[i]) <= max_dt_s]


def solve_hand_eye(
    T_world_head: np.ndarray, T_cam0_board: np.ndarray, method: HandEyeMethod = HandEyeMethod.TSAI
) -> HandEyeResult:
    """T_head_cam0 from matched poses ``T_world_head`` (N, 4, 4) and ``T_cam0_board`` (N, 4, 4)."""
    if len(T_world_head) != len(T_cam0_board):
        raise CalibrationError("hand-eye needs one board pose per headset pose")
    if len(T_world_head) < MIN_PAIRS:
        raise CalibrationError(
            f"hand-eye needs at least {MIN_PAIRS} matched poses, got {len(T_world_head)}; check that both files "
            "use the same clock and widen --max-dt-ms if needed"
        )
    _require_rotation_diversity(T_world_head)
    R, t = cv2.calibrateHandEye(
        T_world_head[:, :3, :3], T_world_head[:, :3, 3], T_cam0_board[:, :3, :3], T_cam0_board[:, :3, 3],
        method=method.value,
    )  # fmt: skip
    X = np.eye(4)
    X[:3, :3] = R
    X[:3, 3] = np.asarray(t).ravel()
    boards = T_world_head @ X @ T_cam0_board
    spread_m = float(np.sqrt(np.mean(np.sum((boards[:, :3, 3] - boards[:, :3, 3].mean(0)) ** 2, axis=1))))
    rotations = Rotation.from_matrix(boards[:, :3, :3])
    spread_deg = float(np.degrees(np.sqrt(np.mean((rotations * rotations.mean().inv()).magnitude() ** 2))))
    return HandEyeResult(X, len(T_world_head), spread_m, spread_deg)


def _require_rotation_diversity(T_world_head: np.ndarray) -> None:
    relative = Rotation.from_matrix(T_world_head[1:, :3, :3]) * Rotation.from_matrix(T_world_head[:-1, :3, :3]).inv()
    rotvecs = relative.as_rotvec()
    angles = np.linalg.norm(rotvecs, axis=1)
    axes = rotvecs[angles > np.radians(2.0)] / angles[angles > np.radians(2.0), None]
    if len(axes) >= 2:
        cosines = np.abs(axes @ axes.T)
        if np.degrees(np.arccos(np.clip(cosines.min(), 0.0, 1.0))) >= MIN_AXIS_SPREAD_DEG:
            return
    raise CalibrationError(
        "hand-eye is degenerate: the headset must rotate about at least two different axes between poses "
        "(turn and tilt it while the camera sees the board)"
    )
