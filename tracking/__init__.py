"""tracking: skip-convolution engine, keypoint network, head and hand pose, early-exit refinement, filtering.

``tracking.Tracker`` and ``tracking.TrackerConfig`` are imported on first use, so that importing a light
submodule (``tracking.keypoints``, ``tracking.filter``) does not load the whole pipeline.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrackResult", "Tracker", "TrackerConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tracking import tracker

        return getattr(tracker, name)
    raise AttributeError(f"module 'tracking' has no attribute {name!r}")
