"""What the keypoint network gives the pose stages, per camera image.

The network (tracking/network) produces these from pixels; ``truth_keypoints`` produces them from a synthetic
frame's ground truth so that pose code can be built and tested independently of the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from skiptrack_types import HAND_SIDES, Frame, InvalidInputError, require_array

DESCRIPTOR_DIM = 32


@dataclass(frozen=True, eq=False)
class HandKeypoints:
    """One detected hand in one image: ``joints_px`` (21, 2) pixels (MediaPipe order), ``confidence`` (21,) in
    [0, 1], ``presence`` in [0, 1] and ``side`` ("left"/"right")."""

    side: str
    joints_px: np.ndarray
    confidence: np.ndarray
    presence: float = 1.0

    def __post_init__(self) -> None:
        if self.side not in HAND_SIDES:
            raise InvalidInputError(f"hand side must be one of {HAND_SIDES}, got {self.side!r}")
        require_array("joints_px", self.joints_px, (21, 2))
        require_array("confidence", self.confidence, (21,))


@dataclass(frozen=True, eq=False)
class Keypoints:
    """Scene interest points of one image: ``points_px`` (N, 2) sub-pixel positions, ``scores`` (N,),
    ``descriptors`` (N, D) L2-normalised float32; and the hands found in it."""

    points_px: np.ndarray
    scores: np.ndarray
    descriptors: np.ndarray
    hands: tuple[HandKeypoints, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.points_px)
        require_array("points_px", self.points_px, (n, 2))
        require_array("scores", self.scores, (n,))
        require_array("descriptors", self.descriptors, (n, None))

    def __len__(self) -> int:
        return len(self.points_px)

    def hand(self, side: str) -> HandKeypoints | None:
        return next((h for h in self.hands if h.side == side), None)


def landmark_descriptors(num_landmarks: int, dim: int = DESCRIPTOR_DIM, seed: int = 0) -> np.ndarray:
    """A fixed random unit descriptor per landmark id (num_landmarks, dim): what a perfect network would give."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((num_landmarks, dim)).astype(np.float32)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def truth_keypoints(
    frame: Frame,
    camera: int,
    descriptors: np.ndarray,
    pixel_noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> Keypoints:
    """Keypoints of ``camera`` in a synthetic ``frame`` taken from its truth: visible landmarks with their
    per-id ``descriptors`` (from ``landmark_descriptors``), visible hand joints. ``pixel_noise`` (px, std)
    perturbs positions to imitate a detector."""
    if frame.truth is None or not frame.truth.landmarks_px:
        raise InvalidInputError("truth_keypoints needs a frame with landmark truth (a synthetic: source)")
    rng = rng or np.random.default_rng(0)
    vis = frame.truth.landmarks_visible[camera]
    px = frame.truth.landmarks_px[camera][vis].astype(np.float32)
    if pixel_noise > 0:
        px = px + rng.normal(0.0, pixel_noise, px.shape).astype(np.float32)
    hands = []
    for hand in frame.truth.hands:
        visible = hand.visible[camera]
        if not visible.any():
            continue
        joints = np.nan_to_num(hand.joints_px[camera]).astype(np.float32)
        if pixel_noise > 0:
            joints = joints + rng.normal(0.0, pixel_noise, joints.shape).astype(np.float32)
        hands.append(HandKeypoints(hand.side, joints, visible.astype(np.float32), 1.0))
    return Keypoints(px, np.ones(len(px), np.float32), descriptors[vis], tuple(hands))
