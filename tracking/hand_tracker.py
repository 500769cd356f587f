"""Hands frame by frame in the head frame: pair the cameras' hands, observe them (stereo), fit each side's hand
model, smooth it, and give the 26 OpenXR joints.

The head pose is not needed until the very end (hands are fitted in the head frame), so the Tracker can run this
while it tracks the head: in a second process (``tracking.hand_worker``) or, on one core, after the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from skiptrack_types import HAND_SIDES, InvalidInputError, StereoRig
from tracking.filter import OneEuroConfig, OneEuroFilter
from tracking.keypoints import DESCRIPTOR_DIM, HandKeypoints, Keypoints
from tracking.pose.hand_model import HandModel
from tracking.pose.hand_prior import default_prior
from tracking.pose.hands import HandConfig, hand_joint_frames, hand_radii, observe_hand, pair_hands


@dataclass(frozen=True, eq=False)
class HandJob:
    """One frame's input to the hands: ``t_ns``, the hands each camera found (``Keypoints`` whose scene points
    may be left out), and the two camera images when both cameras saw a hand (None otherwise: no stereo
    refinement is possible then, and the images need not travel to another process)."""

    t_ns: int
    keypoints: tuple[Keypoints, Keypoints]
    images: tuple[np.ndarray, np.ndarray] | None

    @classmethod
    def of(cls, t_ns: int, keypoints: tuple[Keypoints, ...], images: tuple[np.ndarray, ...]) -> HandJob:
        """The job for one frame, with only the hands of ``keypoints`` (a few hundred bytes instead of the scene
        points and their descriptors)."""
        return cls.of_hands(t_ns, [kp.hands for kp in keypoints], images)

    @classmethod
    def of_hands(cls, t_ns: int, hands: Sequence[tuple[HandKeypoints, ...]], images: tuple[np.ndarray, ...]) -> HandJob:
        """The job for one frame from each camera's hands alone (before its scene points are decoded)."""
        if len(hands) != 2:
            raise InvalidInputError(f"a hand job needs the hands of 2 cameras, got {len(hands)}")
        only = [Keypoints(np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros((0, DESCRIPTOR_DIM),
                          np.float32), tuple(h)) for h in hands]  # fmt: skip
        stereo = all(hands)
        return cls(t_ns, (only[0], only[1]), (images[0], images[1]) if stereo else None)


@dataclass(frozen=True, eq=False)
class HeadFrameHand:
    """One fitted hand in the head frame: which of the 21 MediaPipe joints the cameras ``observed`` (21,) bool,
    and the 26 OpenXR joints of the smoothed fit: ``positions`` (26, 3) m, ``orientations`` (26, 4) (x, y, z, w),
    ``radii`` (26,) m."""

    side: str
    observed: np.ndarray
    positions: np.ndarray
    orientations: np.ndarray
    radii: np.ndarray


class HandTracker:
    """Per-side hand models and One-Euro filters; ``process`` one ``HandJob`` per frame, ``reset`` after a gap."""

    def __init__(self, rig: StereoRig, config: HandConfig, filter_config: OneEuroConfig) -> None:
        self.rig = rig
        self.config = config
        self.filter_config = filter_config
        self._prior = default_prior()  # a missing or corrupt prior file fails here, not when a hand first shows
        self._models: dict[str, HandModel] = {}
        self._filters: dict[str, OneEuroFilter] = {}

    def process(self, job: HandJob) -> list[HeadFrameHand]:
        """The hands fitted in this frame, in ``HAND_SIDES`` order. A side that is not fitted loses its filter
        and its pose (its learned shape stays)."""
        pairs = pair_hands(job.keypoints[0], job.keypoints[1], self.rig)
        stereo = any(left is not None and right is not None for _, left, right in pairs)
        rectified = self.rig.rectification.rectify(job.images) if stereo and job.images is not None else None
        out = []
        for side, left, right in pairs:
            observation = observe_hand(left, right, self.rig, self.config, rectified)
            if side not in self._models:
                self._models[side] = HandModel(side, self._prior)
            fitted = self._models[side].update(observation) if observation is not None else None
            if fitted is None:
                continue
            # the model works in the head frame, so the filter does not smooth the head's own motion twice
            joints, observed = fitted
            if side not in self._filters:
                self._filters[side] = OneEuroFilter(self.filter_config)
            joints = self._filters[side](job.t_ns, joints)
            positions, orientations = hand_joint_frames(side, joints)
            out.append(HeadFrameHand(side, observed, positions, orientations, hand_radii(joints)))
        seen = {hand.side for hand in out}
        for side in HAND_SIDES:
            if side not in seen and self._filters.pop(side, None) is not None:
                self._models[side].reset()
        return out

    def bone_lengths(self) -> dict[str, np.ndarray]:
        """Per side seen so far, its model's learned bone lengths (5, 3) m (``HandModel.bone_lengths``)."""
        return {side: model.bone_lengths for side, model in self._models.items() if model.bone_lengths is not None}

    def reset(self) -> None:
        """Forget the hands' poses and filter states (after a gap in the frames)."""
        self._filters.clear()
        for model in self._models.values():
            model.reset()
