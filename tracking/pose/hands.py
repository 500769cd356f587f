"""Hands: per-camera 2D joints -> stereo triangulation -> 21 joints in the world -> the 26 OpenXR joints.

Joint orientations follow XR_EXT_hand_tracking: +Y out of the back of the hand, -Z along the bone towards the
finger tip, X completing a right-handed frame. MediaPipe has no finger metacarpal bases, so those four OpenXR joints
are placed a quarter of the way from the wrist to the knuckle (the carpometacarpal joints sit close to the wrist).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from skiptrack_types import HAND_SIDES, StereoRig
from tracking.keypoints import HandKeypoints, Keypoints
from tracking.pose.geometry import invert, transform_points
from tracking.pose.stereo import rectify_points, refine_right_columns

WRIST, THUMB_CMC, INDEX_MCP, MIDDLE_MCP, PINKY_MCP = 0, 1, 5, 9, 17
FINGER_BASES = {"index": 5, "middle": 9, "ring": 13, "little": 17}
METACARPAL_FRACTION = 0.25

# 26 OpenXR joints as (MediaPipe index, or -1 for the palm / -2-k for finger k's metacarpal base)
_OPENXR_FROM_MEDIAPIPE: tuple[int, ...] = (
    -1, 0,
    1, 2, 3, 4,
    -2, 5, 6, 7, 8,
    -3, 9, 10, 11, 12,
    -4, 13, 14, 15, 16,
    -5, 17, 18, 19, 20,
)  # fmt: skip

# Radii (m) of an average adult hand (palm 8.5 cm wide), per OpenXR joint, scaled by the measured palm width.
_RADII_M = np.array(
    [0.025, 0.020,
     0.016, 0.012, 0.010, 0.008,
     0.014, 0.011, 0.009, 0.008, 0.007,
     0.014, 0.011, 0.009, 0.008, 0.007,
     0.013, 0.010, 0.009, 0.007, 0.006,
     0.012, 0.009, 0.008, 0.007, 0.006]
)  # fmt: skip
REFERENCE_PALM_WIDTH_M = 0.085

# A flat right hand (21 MediaPipe joints, m) relative to its wrist: palm down (back +Y), fingers along -Z, thumb
# towards -X, its base (CMC) 1 cm on the palm side of the knuckles' plane, as in real hands. The starting guess
# for joints no camera has seen yet.
_TEMPLATE_RIGHT = np.array(
    [[0.0, 0.0, 0.0],
     [-0.020, -0.010, -0.030], [-0.035, 0.0, -0.055], [-0.050, 0.0, -0.075], [-0.060, 0.0, -0.095],
     [-0.020, 0.0, -0.090], [-0.022, 0.0, -0.130], [-0.023, 0.0, -0.155], [-0.024, 0.0, -0.175],
     [0.000, 0.0, -0.092], [0.000, 0.0, -0.137], [0.000, 0.0, -0.165], [0.000, 0.0, -0.187],
     [0.020, 0.0, -0.088], [0.022, 0.0, -0.128], [0.023, 0.0, -0.154], [0.024, 0.0, -0.174],
     [0.040, 0.0, -0.080], [0.043, 0.0, -0.110], [0.045, 0.0, -0.130], [0.046, 0.0, -0.147]]
)  # fmt: skip

# The joint each bone points to (its child), for orientation; tips use their parent bone.
_CHILD = {
    0: 9,
    1: 2,
    2: 3,
    3: 4,
    5: 6,
    6: 7,
    7: 8,
    9: 10,
    10: 11,
    11: 12,
    13: 14,
    14: 15,
    15: 16,
    17: 18,
    18: 19,
    19: 20,
}
_PARENT_OF_TIP = {4: 3, 8: 7, 12: 11, 16: 15, 20: 19}


@dataclass(frozen=True)
class HandConfig:
    """Minimum joint confidence to use a 2D joint, maximum rectified row difference (px) for a stereo pair, the
    fewest triangulated joints that make a hand, and the detector's joint noise (px, standard deviation), which
    sets how uncertain a triangulated joint is.

    Stereo refinement (when ``observe_hand`` gets the rectified images): the right camera's joint moves along its
    rectified row to where a ``2 * patch_px + 1`` square of the left image around the left joint matches best
    (normalised cross-correlation, within ``search_px`` of the detector's position, sub-pixel by a parabola), when
    the match scores at least ``min_match``. The 7x7 patch (``patch_px`` 3) is about a finger's width at arm's
    length on a 320-pixel-wide camera (a finger of 17 mm at 40 cm spans 6.5 px): hand MPJPE in the head frame,
    network keypoints, training seeds 100 and 101: 11.8 mm with 9x9, 11.3 with 7x7, 13.0 with 5x5, 12.7 with
    13x13; held-out seeds 1, 2, 3: 12.5 / 12.2 / 12.0 -> 12.0 / 12.0 / 11.8 mm.

    ``min_triangulation_confidence``: a joint pair triangulates only when both cameras' confidences reach it (its
    viewing rays still count from ``min_confidence``). A joint hidden from one camera is often still found there, on
    whatever hides it, at a lower confidence, and its disparity then puts it centimetres too near (22 mm on
    average on seated seed 1). Chosen on the training seeds 100 and 101 (hand MPJPE in the head frame, network
    keypoints: 12.4 mm at 0.5, 12.1 at 0.6, 11.8 at 0.7, 11.8 at 0.75 with hands starting to be lost); on the
    held-out seeds 1, 2, 3: 13.1 / 12.8 / 12.8 -> 12.5 / 12.2 / 12.0 mm.

    ``surface_depth_m``: a refined finger joint or knuckle is put this much further away than its refined disparity
    says. The patches match the skin the cameras see, and a joint lies inside the finger, about its radius (8 mm)
    behind it: with the network's keypoints the refined joints triangulated 5.5 mm too near on average (0.3 mm
    without the refinement, whose noise is worse). Chosen on the training seeds 100 and 101 (hand MPJPE in the head
    frame, network keypoints: 9.9 mm at 0, 9.2 at 4 mm, 8.95 at 7, 8.9 at 8, 9.0 at 9, 9.4 at 12 mm), all joints;
    then leaving the wrist out, which is no finger (its error went 5.4 -> 9.2 mm with the offset): 8.9 -> 8.35 mm;
    the knuckles need it (9.3 mm without them). Held-out seeds 1 and 2: 10.1 -> 8.7 mm, 3 and 4: 10.1 -> 8.9 mm.
    With the truth keypoints (0.5 px noise) the refined joints are only 2.6 mm too near: held-out seeds 1 and 2
    5.8 -> 6.0 mm (at 3 mm: 5.8), so the value is the shipped network's."""

    min_confidence: float = 0.5
    min_triangulation_confidence: float = 0.7
    max_row_px: float = 3.0
    min_triangulated: int = 6
    keypoint_sigma_px: float = 0.5
    patch_px: int = 3
    search_px: int = 3
    min_match: float = 0.9
    surface_depth_m: float = 0.008


def pair_hands(
    left: Keypoints, right: Keypoints, rig: StereoRig
) -> list[tuple[str, HandKeypoints | None, HandKeypoints | None]]:
    """Pair the hands seen by the two cameras by epipolar agreement, and settle their sides.

    Each left-camera hand is paired with the right-camera hand whose joints lie on the same rectified rows; when
    the two cameras disagree on the side, the more confident detection wins. At most one hand per side is kept.
    """
    rect = rig.rectification
    rows_r = [rectify_points(rig.cam1, h.joints_px, rect.R1, rect.P1)[:, 1] for h in right.hands]
    used_r: set[int] = set()
    pairs: list[tuple[str, HandKeypoints | None, HandKeypoints | None]] = []
    for hl in left.hands:
        rows_l = rectify_points(rig.cam0, hl.joints_px, rect.R0, rect.P0)[:, 1]
        best, best_err = None, np.inf
        for j, hr in enumerate(right.hands):
            if j in used_r:
                continue
            both = (hl.confidence > 0) & (hr.confidence > 0)
            if both.sum() < 3:
                continue
            err = float(np.median(np.abs(rows_l[both] - rows_r[j][both])))
            if err < best_err:
                best, best_err = j, err
        if best is not None and best_err < 5.0:
            used_r.add(best)
            hr = right.hands[best]
            side = hl.side if hl.presence >= hr.presence else hr.side
            pairs.append((side, hl, hr))
        else:
            pairs.append((hl.side, hl, None))
    pairs.extend((hr.side, None, hr) for j, hr in enumerate(right.hands) if j not in used_r)
    chosen: dict[str, tuple[str, HandKeypoints | None, HandKeypoints | None]] = {}
    for pair in sorted(pairs, key=lambda p: -_pair_strength(p)):
        side = pair[0] if pair[0] not in chosen else _other(pair[0])
        if side not in chosen:
            chosen[side] = (side, pair[1], pair[2])
    return [chosen[s] for s in HAND_SIDES if s in chosen]


@dataclass(frozen=True, eq=False)
class HandObservation:
    """What the two cameras saw of one hand in one frame, in the head frame.

    ``points`` (21, 3) m: joints triangulated from both cameras (NaN elsewhere), ``triangulated`` (21,) bool;
    per camera the viewing rays of the joints it saw with enough confidence: ``ray_origins`` (2, 3) m,
    ``ray_dirs`` (2, 21, 3) unit vectors, ``seen`` (2, 21) bool. ``noise_var`` (21,) m^2 is the expected squared
    error of each triangulated joint (trace of its covariance; NaN where not triangulated), ``ray_sigma_rad`` the
    angular uncertainty of a viewing ray (the detector's pixel noise over the focal length)."""

    points: np.ndarray
    triangulated: np.ndarray
    ray_origins: np.ndarray
    ray_dirs: np.ndarray
    seen: np.ndarray
    noise_var: np.ndarray
    ray_sigma_rad: float


def observe_hand(
    left: HandKeypoints | None,
    right: HandKeypoints | None,
    rig: StereoRig,
    config: HandConfig | None = None,
    rectified: tuple[np.ndarray, np.ndarray] | None = None,
) -> HandObservation | None:
    """Triangulate a hand's joints seen by both cameras and keep the viewing rays of every joint seen.

    A hand is observed when at least ``min_triangulated`` joint pairs have both confidences at ``min_confidence``,
    rectified rows that agree within ``max_row_px`` and a positive disparity; of those, the pairs whose confidences
    also reach ``min_triangulation_confidence`` triangulate. ``rectified``: the frame's images in the rectified pair
    (``rig.rectification.rectify``); with them each pair's disparity is refined on the images (see
    ``HandConfig``): at arm's length a pixel of disparity is a centimetre of depth, and a heatmap detector's
    joints are good to about a pixel in each camera, independently. None when the hand is missing from a camera or
    fewer than ``min_triangulated`` joint pairs qualify (too little to place the palm).
    """
    config = config or HandConfig()
    if left is None or right is None:
        return None
    seen = np.stack([left.confidence >= config.min_confidence, right.confidence >= config.min_confidence])
    both = seen[0] & seen[1]
    if both.sum() < config.min_triangulated:
        return None
    rect = rig.rectification
    l_rect = rectify_points(rig.cam0, left.joints_px, rect.R0, rect.P0)
    r_rect = rectify_points(rig.cam1, right.joints_px, rect.R1, rect.P1)
    both &= np.abs(l_rect[:, 1] - r_rect[:, 1]) <= config.max_row_px
    both &= (l_rect[:, 0] - r_rect[:, 0]) > 0.5
    if both.sum() < config.min_triangulated:
        return None
    both &= (left.confidence >= config.min_triangulation_confidence) & (
        right.confidence >= config.min_triangulation_confidence
    )
    if rectified is not None:
        detected = r_rect[both, 0]
        refined = refine_disparity(rectified, l_rect[both], detected, config)
        behind = (refined != detected) & (np.flatnonzero(both) != WRIST)
        r_rect[both, 0] = _behind_surface(refined, l_rect[both, 0], behind, rect.focal_px * rig.baseline_m,
                                          config.surface_depth_m)  # fmt: skip
        both &= (l_rect[:, 0] - r_rect[:, 0]) > 0.5
    if both.any():
        X = cv2.triangulatePoints(rect.P0, rect.P1, l_rect[both].T, r_rect[both].T)
        points_rect = (X[:3] / X[3]).T
    else:  # every pair below the triangulation confidence: the rays alone (the model places the hand, if it can)
        points_rect = np.zeros((0, 3))
    points = np.full((21, 3), np.nan)
    points[both] = transform_points(rig.T_head_cam0, points_rect @ rect.R0)
    # depth error z^2 / (f b) per pixel of disparity error (the two cameras' keypoint noise); across, z / f each way
    focal, z = float(rect.P0[0, 0]), points_rect[:, 2]
    noise_var = np.full(21, np.nan)
    noise_var[both] = (z * z / (focal * rig.baseline_m)) ** 2 * 2 * config.keypoint_sigma_px**2
    noise_var[both] += 2 * (z / focal * config.keypoint_sigma_px) ** 2
    T_head_cams = (rig.T_head_cam0, rig.T_head_cam1)
    ray_dirs = np.zeros((2, 21, 3))
    for cam, (px, R_rect, P) in enumerate(((l_rect, rect.R0, rect.P0), (r_rect, rect.R1, rect.P1))):
        # rectified pixel -> ray in the rectified camera -> the camera (R_rect turns the camera into it) -> head
        rays = np.column_stack([(px - P[:2, 2]) / np.diag(P)[:2], np.ones(len(px))]) @ R_rect
        rays = rays @ T_head_cams[cam][:3, :3].T
        ray_dirs[cam] = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    origins = np.stack([T[:3, 3] for T in T_head_cams])
    return HandObservation(points, both, origins, ray_dirs, seen, noise_var, config.keypoint_sigma_px / focal)


def _behind_surface(right_x: np.ndarray, left_x: np.ndarray, behind: np.ndarray, focal_baseline: float,
                    depth_m: float) -> np.ndarray:  # fmt: skip
    """Right rectified columns (N,), those where ``behind`` (N,) bool moved so that their joints triangulate
    ``depth_m`` further away (``HandConfig.surface_depth_m``); ``focal_baseline`` is the rectified focal length
    (px) times the baseline (m)."""
    depth = focal_baseline / np.maximum(left_x - right_x, 1e-3) + depth_m
    return np.where(behind, left_x - focal_baseline / depth, right_x)


def refine_disparity(
    rectified: tuple[np.ndarray, np.ndarray], left_px: np.ndarray, right_x: np.ndarray, config: HandConfig
) -> np.ndarray:
    """The right camera's rectified column (N,) of each joint, refined on the images
    (``tracking.pose.stereo.refine_right_columns`` with the hand's patch, search and match floor)."""
    return refine_right_columns(rectified, left_px, right_x, config.patch_px, config.search_px, config.min_match)


def hand_joint_frames(side: str, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (26, 3) and orientations (26, 4) (x, y, z, w) of the OpenXR joints for 21 MediaPipe ``joints``
    (21, 3) of a ``side`` hand, in the joints' frame (world or head: the construction turns with the hand)."""
    index, pinky = joints[INDEX_MCP] - joints[WRIST], joints[PINKY_MCP] - joints[WRIST]
    back = np.cross(index, pinky) if side == "left" else np.cross(pinky, index)
    back = back / np.linalg.norm(back) if np.linalg.norm(back) > 1e-9 else np.array([0.0, 1.0, 0.0])
    palm_dir = joints[MIDDLE_MCP] - joints[WRIST]
    palm_dir = palm_dir if np.linalg.norm(palm_dir) > 1e-6 else np.array([0.0, 0.0, -1.0])
    tip_dirs = _OPENXR_BONES @ joints
    tip_dirs[0] = palm_dir  # the palm points along the middle metacarpal (or straight ahead when it has none)
    return _OPENXR_POSITIONS @ joints, _frame_quats(tip_dirs, back, palm_dir)


def hand_template(side: str) -> np.ndarray:
    """The template hand (21, 3) m of ``side`` (the left hand mirrors the right in X)."""
    return _TEMPLATE_RIGHT * (np.array([-1.0, 1.0, 1.0]) if side == "left" else 1.0)


def hand_radii(joints: np.ndarray) -> np.ndarray:
    """Joint radii (26,) m scaled by the measured palm width (index to little knuckle)."""
    width = float(np.linalg.norm(joints[INDEX_MCP] - joints[PINKY_MCP]))
    # MediaPipe's knuckles span about 3/4 of the full palm width
    scale = np.clip(width / (0.75 * REFERENCE_PALM_WIDTH_M), 0.5, 2.0)
    return _RADII_M * scale


def openxr_flags(valid21: np.ndarray, tracked21: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-OpenXR-joint valid and tracked flags (26,) from the 21 MediaPipe flags; derived joints need their
    sources (palm: wrist and middle knuckle; metacarpal bases: wrist and their knuckle)."""
    return ~(_OPENXR_SOURCES & ~valid21).any(axis=1), ~(_OPENXR_SOURCES & ~tracked21).any(axis=1)


def joints_in_head(T_world_head: np.ndarray, joints_world: np.ndarray) -> np.ndarray:
    """World joints (N, 3) expressed in the head frame."""
    return transform_points(invert(T_world_head), joints_world)


def _openxr_maps() -> tuple[np.ndarray, np.ndarray]:
    """The OpenXR joints' positions and bone directions as linear maps (26, 21) of the 21 MediaPipe joints: a
    joint sits on a MediaPipe joint (bone: to its child, a tip: from its parent), the palm midway between wrist
    and middle knuckle (bone: wrist to middle knuckle), a metacarpal base a quarter of the way from the wrist to
    its knuckle (bone: wrist to knuckle)."""
    positions, bones = np.zeros((26, 21)), np.zeros((26, 21))
    for k, src in enumerate(_OPENXR_FROM_MEDIAPIPE):
        if src >= 0:
            positions[k, src] = 1.0
            start, end = (src, _CHILD[src]) if src in _CHILD else (_PARENT_OF_TIP[src], src)
        else:
            base = MIDDLE_MCP if src == -1 else list(FINGER_BASES.values())[-src - 2]
            fraction = 0.5 if src == -1 else METACARPAL_FRACTION
            positions[k, WRIST], positions[k, base] = 1.0 - fraction, fraction
            start, end = WRIST, base
        bones[k, end] += 1.0
        bones[k, start] -= 1.0
    return positions, bones


_OPENXR_POSITIONS, _OPENXR_BONES = _openxr_maps()
_OPENXR_SOURCES = _OPENXR_POSITIONS != 0
"""(26, 21) bool: the MediaPipe joints each OpenXR joint is placed from."""


def _frame_quats(tip_dirs: np.ndarray, back: np.ndarray, fallback_dir: np.ndarray) -> np.ndarray:
    """Quaternions (N, 4) of frames with -Z along ``tip_dirs`` (N, 3) and +Y as close to ``back`` (3,) as
    orthogonality allows; coincident joints fall back to ``fallback_dir``, a bone along ``back`` to any
    perpendicular."""
    short = np.linalg.norm(tip_dirs, axis=1) < 1e-6
    tip_dirs = np.where(short[:, None], fallback_dir, tip_dirs)
    z = -tip_dirs / np.linalg.norm(tip_dirs, axis=1, keepdims=True)
    y = back - (z @ back)[:, None] * z
    flat = np.linalg.norm(y, axis=1) < 1e-6
    if flat.any():
        y[flat] = np.cross(z[flat], [1.0, 0.0, 0.0])
        y[flat & (np.linalg.norm(y, axis=1) < 1e-6)] = np.cross(z[flat], [0.0, 1.0, 0.0])[0]
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return Rotation.from_matrix(np.stack([np.cross(y, z), y, z], axis=2)).as_quat()


def _pair_strength(pair: tuple[str, HandKeypoints | None, HandKeypoints | None]) -> float:
    return sum(float(h.confidence.sum()) for h in pair[1:] if h is not None)


def _other(side: str) -> str:
    return HAND_SIDES[1 - HAND_SIDES.index(side)]
