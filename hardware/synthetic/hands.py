"""Articulated hands: a 21-joint skeleton (MediaPipe order) with adult proportions, joint limits and scripted
motions (reach, wave, pinch, grab, leaving and re-entering the view).

Hand frame of a right hand: origin at the wrist, x towards the thumb (radial), y towards the fingers, z out of
the palm. A left hand is the mirror image through the head's x = 0 plane. Motions are written for the right hand
in the head frame (OpenXR: x right, y up, z backward) and mirrored for the left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Metres. Palm about 8.5 cm wide across the knuckles (with the fingers' flesh), wrist to middle tip about 18 cm.
MCP_POSITIONS = np.array([[0.031, 0.083, 0.0], [0.010, 0.088, 0.0], [-0.010, 0.084, 0.0], [-0.029, 0.076, 0.0]])
PHALANX_LENGTHS = np.array([[0.040, 0.024, 0.019], [0.045, 0.028, 0.020], [0.042, 0.026, 0.020],
                            [0.034, 0.019, 0.018]])  # fmt: skip
FINGER_SPREAD = np.radians([8.0, 1.0, -6.0, -13.0])  # splay of the fingers about the palm normal
THUMB_CMC = np.array([0.022, 0.025, 0.008])
THUMB_LENGTHS = np.array([0.045, 0.032, 0.027])  # metacarpal, proximal, distal
FINGER_RADII = np.array([0.0095, 0.0085, 0.0075])  # proximal, middle, distal phalanx
THUMB_RADII = np.array([0.012, 0.0100, 0.0085])
PALM_RADIUS = 0.012
WRIST_HALF_WIDTH = 0.026
MIRROR_X = np.diag([-1.0, 1.0, 1.0])

# Joint limits, radians, per finger row: (mcp flexion, mcp abduction, pip flexion, dip flexion); the thumb row is
# (cmc flexion, cmc abduction, mcp flexion, ip flexion).
LIMITS_LO = np.radians([[-20, -20, 0, -10], [-20, -20, 0, 0], [-20, -15, 0, 0], [-20, -15, 0, 0], [-20, -20, 0, 0]])
LIMITS_HI = np.radians([[60, 40, 70, 85], [90, 20, 110, 80], [95, 15, 110, 80], [95, 15, 110, 80], [95, 20, 110, 80]])

OPEN = np.zeros((5, 4))
RELAXED = np.radians([[10, 5, 15, 15], [15, 0, 20, 12], [18, 0, 25, 15], [20, 0, 28, 18], [22, 0, 30, 20]])
FIST = np.radians([[45, 25, 55, 60], [85, 0, 100, 60], [90, 0, 105, 60], [90, 0, 105, 60], [90, 0, 100, 60]])
PINCH = np.radians([[14, 18, 18, 31], [44, 0, 50, 23], [22, 0, 28, 15], [25, 0, 32, 18], [28, 0, 35, 20]])
POINT = np.radians([[40, 20, 45, 50], [0, 0, 0, 0], [85, 0, 100, 60], [90, 0, 105, 60], [90, 0, 100, 60]])


def clamp_pose(angles: np.ndarray) -> np.ndarray:
    """Finger angles (5, 4) clipped to the joint limits."""
    return np.clip(angles, LIMITS_LO, LIMITS_HI)


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def hand_joints_local(angles: np.ndarray) -> np.ndarray:
    """The 21 joints (21, 3) in the right-hand frame for finger angles (5, 4) (clipped to the limits)."""
    angles = clamp_pose(angles)
    joints = np.zeros((21, 3))
    # Thumb: the metacarpal leaves the CMC turned towards the radial side and out of the palm plane.
    cmc_flex, cmc_abd, mcp, ip = angles[0]
    R = _rz(-0.7 + cmc_abd) @ _rx(0.25 + cmc_flex) @ _ry(-0.9)
    joints[1] = THUMB_CMC
    joints[2] = joints[1] + R @ (0.0, THUMB_LENGTHS[0], 0.0)
    R = R @ _rx(mcp)
    joints[3] = joints[2] + R @ (0.0, THUMB_LENGTHS[1], 0.0)
    R = R @ _rx(ip)
    joints[4] = joints[3] + R @ (0.0, THUMB_LENGTHS[2], 0.0)
    for f in range(4):
        flex, abd, pip, dip = angles[f + 1]
        base = 5 + 4 * f
        R = _rz(FINGER_SPREAD[f] + abd) @ _rx(flex)
        joints[base] = MCP_POSITIONS[f]
        joints[base + 1] = joints[base] + R @ (0.0, PHALANX_LENGTHS[f, 0], 0.0)
        R = R @ _rx(pip)
        joints[base + 2] = joints[base + 1] + R @ (0.0, PHALANX_LENGTHS[f, 1], 0.0)
        R = R @ _rx(dip)
        joints[base + 3] = joints[base + 2] + R @ (0.0, PHALANX_LENGTHS[f, 2], 0.0)
    return joints


@dataclass(frozen=True)
class HandState:
    """A right hand in the head frame at one instant: wrist position (3,) m, rotation R_head_hand (3, 3),
    finger angles (5, 4) rad."""

    position: np.ndarray
    rotation: np.ndarray
    angles: np.ndarray

    def joints_head(self, side: str) -> np.ndarray:
        """The 21 joints (21, 3) in the head frame, mirrored through x = 0 for the left hand."""
        joints = self.position + hand_joints_local(self.angles) @ self.rotation.T
        return joints @ MIRROR_X if side == "left" else joints


def _smooth01(x: np.ndarray | float) -> float:
    """0..1 smoothstep, for blending between poses without jerks."""
    x = float(np.clip(x, 0.0, 1.0))
    return x * x * (3.0 - 2.0 * x)


def _cycle(t: float, period: float, phase: float = 0.0) -> float:
    """0 -> 1 -> 0 smoothly over ``period`` seconds."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * (t / period + phase))


def _blend(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    return a + (b - a) * w


# Palm down, fingers forward, thumb towards the body's midline: hand x -> head -x, y -> head -z, z -> head -y.
PALM_DOWN = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]]).T
HOME = np.array([0.13, -0.13, -0.30])


def _orient(pitch_deg: float, roll_deg: float) -> np.ndarray:
    """PALM_DOWN tilted fingers-up by ``pitch``, rolled about the forearm by ``roll`` (thumb up for positive)."""
    return _rx(np.radians(pitch_deg)) @ PALM_DOWN @ _ry(np.radians(roll_deg))


def rest(t: float, phase: float) -> HandState:
    """Held in front, drifting a little, fingers relaxed, now and then pointing."""
    p = 2.0 * np.pi * phase
    drift = 0.015 * np.array([np.sin(0.7 * t + p), np.sin(0.9 * t + 2 * p), np.sin(0.5 * t + p)])
    fingers = _blend(RELAXED, POINT, _smooth01(2.0 * _cycle(t, 5.0, phase) - 1.0))
    return HandState(HOME + drift, _orient(25 + 5 * np.sin(0.6 * t), 20 + 8 * np.sin(0.4 * t + p)), fingers)


def reach(t: float, phase: float) -> HandState:
    """Reach forward with an open hand, grab at full extension, pull back: a 3 s cycle."""
    c = _cycle(t, 3.0, phase)
    position = HOME + np.array([-0.03 * c, 0.05 * c, -0.17 * c])
    grip = _smooth01((c - 0.8) / 0.2)
    fingers = _blend(_blend(RELAXED, OPEN, _smooth01(c / 0.5)), FIST, grip)
    return HandState(position, _orient(15 + 10 * c, 30), fingers)


def wave(t: float, phase: float) -> HandState:
    """Hand raised, palm forward, swinging side to side at about 1.5 Hz."""
    swing = np.sin(2.0 * np.pi * (1.5 * t + phase))
    position = np.array([0.16 + 0.04 * swing, 0.0, -0.36])
    R = _rz(np.radians(-25.0 * swing)) @ _orient(90, 180)
    return HandState(position, R, _blend(OPEN, RELAXED, 0.3))


def pinch(t: float, phase: float) -> HandState:
    """Thumb and index pinch together and apart once a second, the hand nearly still."""
    c = _cycle(t, 1.0, phase)
    drift = 0.01 * np.array([np.sin(0.5 * t), np.sin(0.8 * t + 2.0 * np.pi * phase), 0.0])
    return HandState(HOME + drift + np.array([-0.02, 0.02, -0.02]), _orient(35, 55), _blend(RELAXED, PINCH, c))


def grab(t: float, phase: float) -> HandState:
    """Open hand closing to a fist and opening again: a 2 s cycle."""
    c = _smooth01(_cycle(t, 2.0, phase) * 1.3 - 0.15)
    return HandState(HOME + np.array([0.0, 0.02 * c, -0.03 * c]), _orient(30, 35 + 20 * c), _blend(OPEN, FIST, c))


def enter_leave(t: float, phase: float) -> HandState:
    """Out of view below and to the side, then in view for a while, in a 4 s cycle; gestures while in view."""
    away = _smooth01(2.0 * abs(((t / 4.0 + phase) % 1.0) - 0.5) * 2.5 - 1.0)
    state = grab(t, phase)
    position = state.position + away * np.array([0.25, -0.45, 0.12])
    return HandState(position, state.rotation, state.angles)


HandMotion = Callable[[float, float], HandState]

MOTIONS: dict[str, HandMotion] = {
    "rest": rest,
    "reach": reach,
    "wave": wave,
    "pinch": pinch,
    "grab": grab,
    "enter_leave": enter_leave,
}
"""name -> function(t_s, phase) giving the right hand's state in the head frame."""


@dataclass(frozen=True)
class HandScript:
    """One hand in a scenario: which side, which motion (a key of ``MOTIONS``), and a phase offset in cycles."""

    side: str
    motion: str
    phase: float = 0.0

    def state(self, t: float) -> HandState:
        return MOTIONS[self.motion](t, self.phase)

    def joints_head(self, t: float) -> np.ndarray:
        """(21, 3) joints in the head frame at time ``t`` seconds."""
        return self.state(t).joints_head(self.side)


BONES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4),
    (0, 5), (5, 6), (6, 7), (7, 8),
    (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16),
    (0, 17), (17, 18), (18, 19), (19, 20),
    (5, 9), (9, 13), (13, 17),
)  # fmt: skip
"""Skeleton edges between MediaPipe joints, for drawing."""


def bone_radius(parent: int, child: int) -> float:
    """Radius (m) of the capsule between two joints: fingers thin towards the tip, metacarpals as palm flesh."""
    if parent == 0 or child <= 1 or child in (9, 13, 17):
        return PALM_RADIUS
    if child <= 4:
        return float(THUMB_RADII[child - 2])
    return float(FINGER_RADII[(child - 5) % 4 - 1])
