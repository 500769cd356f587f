"""The live view: both camera images side by side with what the tracker saw and decided.

Drawn per camera: the skip-convolution mask as a heat overlay (where the network recomputed), scene keypoints,
hand skeletons; on top: the exit stage, tracking state, active fraction, and the world's axes as the left camera
sees them.
"""

from __future__ import annotations

import cv2
import numpy as np

from skiptrack_types import Frame, StereoRig

HAND_BONES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11), (11, 12),
    (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip
"""MediaPipe hand skeleton edges (joint index pairs)."""

SIDE_COLOURS = {"left": (255, 160, 0), "right": (0, 200, 255)}  # BGR


def draw_overlay(frame: Frame, result, provider, rig: StereoRig) -> np.ndarray:
    """A BGR image (H, 2W, 3) of both cameras with the overlay; ``provider`` may expose per-camera
    ``skip_masks()`` (H, W) in [0, 1] and ``last_keypoints``."""
    masks = provider.skip_masks() if hasattr(provider, "skip_masks") else [None] * len(frame.images)
    keypoints = getattr(provider, "last_keypoints", None) or [None] * len(frame.images)
    panels = []
    for cam, image in enumerate(frame.images):
        panel = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if masks[cam] is not None:
            panel = _heat(panel, masks[cam])
        if keypoints[cam] is not None:
            _draw_keypoints(panel, keypoints[cam])
        panels.append(panel)
    canvas = np.hstack(panels)
    if result.head is not None:
        _draw_world_axes(canvas[:, : frame.images[0].shape[1]], result.head.T_world_head, rig)
    _draw_text(canvas, result)
    return canvas


def _heat(panel: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mask = cv2.resize(mask.astype(np.float32), panel.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    heat = cv2.applyColorMap((mask * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = (0.45 * mask)[..., None]
    return (panel * (1 - alpha) + heat * alpha).astype(np.uint8)


def _draw_keypoints(panel: np.ndarray, keypoints) -> None:
    for x, y in keypoints.points_px:
        cv2.circle(panel, (int(round(x)), int(round(y))), 2, (0, 255, 0), 1, cv2.LINE_AA)
    for hand in keypoints.hands:
        colour = SIDE_COLOURS[hand.side]
        joints = hand.joints_px
        for a, b in HAND_BONES:
            if hand.confidence[a] > 0.3 and hand.confidence[b] > 0.3:
                pa, pb = tuple(np.round(joints[a]).astype(int)), tuple(np.round(joints[b]).astype(int))
                cv2.line(panel, pa, pb, colour, 1, cv2.LINE_AA)
        for (x, y), c in zip(joints, hand.confidence, strict=True):
            if c > 0.3:
                cv2.circle(panel, (int(round(x)), int(round(y))), 2, colour, -1, cv2.LINE_AA)


def _draw_world_axes(panel: np.ndarray, T_world_head: np.ndarray, rig: StereoRig) -> None:
    """The world frame's axes (x red, y green, z blue), 0.5 m long, placed 1.5 m in front of the head so that they
    stay in view: they show the head's orientation in the world as the left camera sees it."""
    T_cam_world = np.linalg.inv(T_world_head @ rig.T_head_cam0)
    origin = T_world_head[:3, 3] + T_world_head[:3, :3] @ np.array([0.0, 0.0, -1.5])
    ends = origin + 0.5 * np.eye(3)
    points_world = np.vstack([origin, ends])
    points_cam = points_world @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    px = rig.cam0.project(points_cam)
    if not np.isfinite(px).all():
        return
    o = tuple(np.round(px[0]).astype(int))
    for i, colour in enumerate(((0, 0, 255), (0, 255, 0), (255, 0, 0))):
        cv2.line(panel, o, tuple(np.round(px[i + 1]).astype(int)), colour, 2, cv2.LINE_AA)


def _draw_text(canvas: np.ndarray, result) -> None:
    if result.problems:
        text = f"problem: {result.problems[0][:60]}"
    elif result.head is None:
        text = "initializing"
    else:
        state = "tracked" if result.head.flags.position_tracked else "predicted"
        active = result.network_stats.get("active_fraction", 1.0)
        text = f"{state}  exit stage {result.exit_stage}  active {float(active):.1%}"
    cv2.putText(canvas, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
