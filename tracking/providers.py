"""Keypoint providers: what turns a frame into one ``Keypoints`` per camera for the Tracker.

``NetworkKeypointProvider`` runs the shipped keypoint network (skip-convolution or dense), one model per camera
because skip layers keep per-camera state. ``stats()`` sums the engine's counts over the cameras of the last frame.
"""

from __future__ import annotations

import numpy as np

from skiptrack_types import Frame
from tracking.keypoints import Keypoints


class NetworkKeypointProvider:
    """The keypoint network on every camera image. ``skip=False`` runs the same folded weights densely (the
    baseline); ``threshold`` None uses the gate ε stored with the weights."""

    def __init__(self, cameras: int = 2, skip: bool = True, threshold: float | None = None) -> None:
        from tracking.network import load_default

        self.skip = skip
        self.models = [load_default(skip=skip, threshold=threshold) for _ in range(cameras)]
        self.last_keypoints: tuple[Keypoints, ...] | None = None

    def __call__(self, frame: Frame) -> tuple[Keypoints, ...]:
        self.last_keypoints = tuple(model.infer(image) for model, image in zip(self.models, frame.images, strict=True))
        return self.last_keypoints

    def skip_masks(self) -> list[np.ndarray | None]:
        """Per camera, (H', W') bool: where the network's first convolution recomputed on the last frame."""
        return [model.engine.active_mask() for model in self.models]

    def reset(self) -> None:
        """Next frame is a key frame on every camera (after a gap or a scene cut)."""
        for model in self.models:
            model.reset()

    def stats(self) -> dict[str, float]:
        """``macs``, ``dense_macs``, ``mac_ratio`` (executed / dense) and ``active_fraction`` over all cameras."""
        per_camera = [model.stats() for model in self.models]
        macs = sum(s["macs"] for s in per_camera)
        dense = sum(s["dense_macs"] for s in per_camera)
        active = float(np.mean([s["active_fraction"] for s in per_camera]))
        ratio = macs / dense if dense else 1.0
        return {"macs": macs, "dense_macs": dense, "mac_ratio": ratio, "active_fraction": active}
