"""Keypoint providers: what turns a frame into one ``Keypoints`` per camera for the Tracker.

``NetworkKeypointProvider`` runs the shipped keypoint network (skip-convolution or dense), one model per camera
because skip layers keep per-camera state. ``stats()`` sums the engine's counts over the cameras of the last frame.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from skiptrack_types import Frame, InvalidInputError
from tracking.keypoints import Keypoints
from tracking.network.decode import HandsCallback, decode_many


class NetworkKeypointProvider:
    """The keypoint network on every camera image. ``skip=False`` runs the same folded weights densely (the
    baseline); ``threshold`` None uses the gate ε stored with the weights. ``precision`` of the whole-model dense
    passes: "auto" (default) runs them in bfloat16 on a CPU with bfloat16 instructions, about twice as fast
    (``tracking.network.api.resolve_precision``), "fp32" or "bf16" force one.

    ``parallel`` (default: when the machine has a core per camera) runs each camera's network in its own thread
    (then decodes all cameras at once, ``decode_many``: in threads the decoding would wait for the GIL), and sets
    PyTorch's intra-op threads to the cores per camera (``torch.set_num_threads``, for the whole process). On 2
    cores the network takes as long as with 2 intra-op threads, but its threads then block when they finish
    instead of spinning in OpenMP's pool, which slowed the hand worker process beside them by a quarter (the
    Tracker's ``hand_process``)."""

    def __init__(
        self,
        cameras: int = 2,
        skip: bool = True,
        threshold: float | None = None,
        parallel: bool | None = None,
        precision: str = "auto",
    ) -> None:
        import torch

        from tracking.network import load_default

        self.skip = skip
        self.models = [load_default(skip=skip, threshold=threshold, precision=precision) for _ in range(cameras)]
        self.last_keypoints: tuple[Keypoints, ...] | None = None
        cores = os.cpu_count() or 1
        if parallel is None:
            parallel = cameras > 1 and cores >= cameras
        self._pool = ThreadPoolExecutor(cameras, thread_name_prefix="skiptrack-network") if parallel else None
        if parallel:
            torch.set_num_threads(max(1, cores // cameras))

    def __call__(self, frame: Frame, on_hands: HandsCallback | None = None) -> tuple[Keypoints, ...]:
        """One ``Keypoints`` per camera image; ``on_hands`` (optional) gets every camera's hands first, as soon as
        they are decoded (see ``decode_many``)."""
        if len(frame.images) != len(self.models):
            raise InvalidInputError(f"{len(frame.images)} images for a network provider of {len(self.models)} cameras")
        if self._pool is None:
            outputs = [model.run(image) for model, image in zip(self.models, frame.images, strict=True)]
        else:
            outputs = list(self._pool.map(lambda model, image: model.run(image), self.models, frame.images))
        size = (frame.images[0].shape[1], frame.images[0].shape[0])
        self.last_keypoints = tuple(decode_many(outputs, size, self.models[0].decode_config, on_hands))
        return self.last_keypoints

    @property
    def precision(self) -> str:
        """The whole-model dense passes' arithmetic as resolved on this CPU: "fp32" or "bf16"."""
        return self.models[0].engine.precision

    def skip_masks(self) -> list[np.ndarray | None]:
        """Per camera, (H', W') bool: where the network's first convolution recomputed on the last frame."""
        return [model.engine.active_mask() for model in self.models]

    def reset(self) -> None:
        """Next frame is a key frame on every camera (after a gap or a scene cut)."""
        for model in self.models:
            model.reset()

    def stats(self) -> dict[str, float]:
        """``macs``, ``dense_macs``, ``mac_ratio`` (executed / dense) and ``active_fraction`` over all cameras."""
        per_camera = [model.stats(per_layer=False) for model in self.models]
        macs = sum(s["macs"] for s in per_camera)
        dense = sum(s["dense_macs"] for s in per_camera)
        active = float(np.mean([s["active_fraction"] for s in per_camera]))
        ratio = macs / dense if dense else 1.0
        return {"macs": macs, "dense_macs": dense, "mac_ratio": ratio, "active_fraction": active}
