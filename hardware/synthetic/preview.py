"""Drawing a frame's truth over its images: the side-by-side stereo preview used by the CLI."""

from __future__ import annotations

import cv2
import numpy as np

from hardware.synthetic.hands import BONES
from skiptrack_types import Frame

LANDMARK_BGR = (60, 220, 60)
HAND_BGR = {"left": (255, 160, 40), "right": (40, 120, 255)}


def draw_truth(frame: Frame) -> np.ndarray:
    """Side-by-side BGR image (H, 2W, 3) of the frame's cameras with visible landmarks and hand skeletons drawn.

    Hidden hand joints are drawn hollow, so occlusion truth can be checked by eye.
    """
    panels = []
    for cam, image in enumerate(frame.images):
        panel = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        truth = frame.truth
        if truth is not None:
            if truth.landmarks_px:
                px, vis = truth.landmarks_px[cam], truth.landmarks_visible[cam]
                for u, v in px[vis]:
                    cv2.circle(panel, (int(round(u)), int(round(v))), 2, LANDMARK_BGR, 1, cv2.LINE_AA)
            for hand in truth.hands:
                _draw_hand(panel, hand.joints_px[cam], hand.visible[cam], HAND_BGR[hand.side])
        panels.append(panel)
    return np.hstack(panels)


def _draw_hand(panel: np.ndarray, px: np.ndarray, visible: np.ndarray, color: tuple[int, int, int]) -> None:
    h, w = panel.shape[:2]
    near = np.isfinite(px).all(axis=1) & (np.abs(px) < 4 * max(h, w)).all(axis=1)
    if not visible.any():
        return
    pts = np.round(np.where(near[:, None], px, 0)).astype(int)
    for a, b in BONES:
        if near[a] and near[b]:
            cv2.line(panel, tuple(pts[a]), tuple(pts[b]), color, 1, cv2.LINE_AA)
    for j in np.flatnonzero(near):
        cv2.circle(panel, tuple(pts[j]), 2, color, -1 if visible[j] else 1, cv2.LINE_AA)
