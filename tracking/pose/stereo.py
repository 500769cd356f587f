"""Stereo matching of keypoints along rectified epipolar lines, and triangulation into camera 0.

Both images' keypoints are mapped into the rectified pair (cv2.stereoRectify of the rig), where a point and its
match lie on the same row; candidates are those within ``max_row_px`` of the row and with a disparity in range
(found by sorting on the row, so only those pairs are ever scored), and the match is the mutual best descriptor
similarity above a floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from skiptrack_types import CameraModel, CameraModelKind, StereoRig
from tracking.keypoints import Keypoints
from tracking.pose.matching import mutual_best, pairs_on_rows


@dataclass(frozen=True)
class StereoConfig:
    """Matching tolerances: rectified row difference (px), disparity range (px), descriptor similarity floor."""

    max_row_px: float = 2.0
    min_disparity_px: float = 0.5
    max_disparity_px: float = 120.0
    min_similarity: float = 0.8
    refine_patch_px: int = 4
    refine_search_px: int = 3
    refine_min_match: float = 0.8


@dataclass(frozen=True, eq=False)
class StereoPoints:
    """Matched keypoints: ``points_cam0`` (M, 3) metres in camera 0, ``descriptors`` (M, D) (the left image's),
    ``left_index``/``right_index`` (M,) into the input keypoints, ``depth_sigma`` (M,) metres (1-sigma depth
    uncertainty from a 0.5 px disparity error), ``comparisons``: descriptor pairs that passed the epipolar gate."""

    points_cam0: np.ndarray
    descriptors: np.ndarray
    left_index: np.ndarray
    right_index: np.ndarray
    depth_sigma: np.ndarray
    comparisons: int = 0

    def __len__(self) -> int:
        return len(self.points_cam0)


def rectify_points(camera: CameraModel, pixels: np.ndarray, R: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Distorted ``pixels`` (N, 2) of ``camera`` -> pixels (N, 2) in its rectified image (rotation R, projection P)."""
    if len(pixels) == 0:
        return np.zeros((0, 2))
    px = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
    if camera.kind is CameraModelKind.FISHEYE:
        return cv2.fisheye.undistortPoints(px, camera.K, camera.dist, R=R, P=P).reshape(-1, 2)
    return cv2.undistortPoints(px, camera.K, camera.dist, R=R, P=P).reshape(-1, 2)


def match_stereo(
    left: Keypoints,
    right: Keypoints,
    rig: StereoRig,
    config: StereoConfig | None = None,
    images: tuple[np.ndarray, ...] | None = None,
) -> StereoPoints:
    """Match ``left`` (camera 0) to ``right`` (camera 1) keypoints and triangulate the matches in camera 0.

    ``images``: the frame's two camera images; each match's right column is then refined on their rectified pair
    (``refine_right_columns``), which takes the disparity error of the keypoint network's matches from 1.0 px to
    0.18 px (robust standard deviation, seated seed 1) — a detector places a corner a little differently in
    each view, a patch of one view matches the other's own pixels."""
    config = config or StereoConfig()
    rect = rig.rectification
    dim = left.descriptors.shape[1] if left.descriptors.ndim == 2 else 0
    if len(left) == 0 or len(right) == 0:
        return _empty(dim)
    l_px = rectify_points(rig.cam0, left.points_px, rect.R0, rect.P0)
    r_px = rectify_points(rig.cam1, right.points_px, rect.R1, rect.P1)
    pair_l, pair_r = pairs_on_rows(l_px[:, 1], r_px[:, 1], config.max_row_px)
    disparity = l_px[pair_l, 0] - r_px[pair_r, 0]
    ok = (disparity >= config.min_disparity_px) & (disparity <= config.max_disparity_px)
    pair_l, pair_r = pair_l[ok], pair_r[ok]
    comparisons = len(pair_l)
    li, ri = mutual_best(left.descriptors, right.descriptors, pair_l, pair_r, config.min_similarity)
    if len(li) == 0:
        return _empty(dim, comparisons)
    matched_r = r_px[ri]
    if images is not None:
        matched_r[:, 0] = refine_right_columns(rect.rectify((images[0], images[1])), l_px[li], matched_r[:, 0],
                                               config.refine_patch_px, config.refine_search_px,
                                               config.refine_min_match)  # fmt: skip
        keep = l_px[li, 0] - matched_r[:, 0] >= config.min_disparity_px
        li, ri, matched_r = li[keep], ri[keep], matched_r[keep]
        if len(li) == 0:
            return _empty(dim, comparisons)
    X = cv2.triangulatePoints(rect.P0, rect.P1, l_px[li].T, matched_r.T)
    points_rect = (X[:3] / X[3]).T
    points_cam0 = points_rect @ rect.R0  # R0 maps camera 0 to the rectified frame; its transpose maps back
    depth = points_rect[:, 2]
    sigma = depth**2 / (rect.focal_px * rect.baseline_m) * 0.5
    return StereoPoints(points_cam0, left.descriptors[li], li, ri, sigma, comparisons)


def refine_right_columns(
    rectified: tuple[np.ndarray, np.ndarray],
    left_px: np.ndarray,
    right_x: np.ndarray,
    patch_px: int,
    search_px: int,
    min_match: float,
) -> np.ndarray:
    """The right camera's rectified column (N,) of each match: where the left image's ``2 * patch_px + 1`` square
    around ``left_px`` (N, 2) matches the right image best along the same row within ``search_px`` of ``right_x``
    (N,) (normalised cross-correlation, OpenCV's TM_CCOEFF_NORMED, sub-pixel by a parabola through the best score
    and its neighbours); ``right_x`` itself where the best score is below ``min_match`` or at the end of the search
    (no peak inside it). ``rectified``: the frame's rectified pair.

    All matches at once, on whole pixels: each patch is centred on the pixel nearest its keypoint, and the
    keypoint's sub-pixel offset from it carries over to the match (a shift along the row is the same in both
    images; both are read on the same rows), so patches are plain array reads, not interpolations."""
    out = np.array(right_x, dtype=np.float64)
    n = len(out)
    if n == 0:
        return out
    k, s = patch_px, search_px
    side = 2 * k + 1
    h, w = rectified[0].shape
    centre_x = np.rint(left_px[:, 0]).astype(np.int64)
    offset_x = left_px[:, 0] - centre_x
    guess = np.rint(right_x - offset_x).astype(np.int64)  # where the patch's centre pixel should land
    rows = np.clip(np.rint(left_px[:, 1]).astype(np.int64)[:, None, None] + np.arange(-k, k + 1)[None, :, None], 0,
                   h - 1)  # fmt: skip
    patch_cols = np.clip(centre_x[:, None, None] + np.arange(-k, k + 1)[None, None, :], 0, w - 1)
    strip_cols = np.clip(guess[:, None, None] + np.arange(-k - s, k + s + 1)[None, None, :], 0, w - 1)
    patches = rectified[0][rows, patch_cols].astype(np.float64)  # (N, side, side)
    strips = rectified[1][rows, strip_cols].astype(np.float64)  # (N, side, side + 2 s)
    # TM_CCOEFF_NORMED of each window: the zero-mean patch makes the window's own mean drop out of the numerator;
    # the windows' sums and sums of squares come from running sums of the strip's columns
    p = patches - patches.mean(axis=(1, 2), keepdims=True)
    numerator = np.stack([(p * strips[:, :, t : t + side]).sum(axis=(1, 2)) for t in range(2 * s + 1)], axis=1)
    columns = np.concatenate([np.zeros((n, 1)), np.cumsum(strips.sum(axis=1), axis=1)], axis=1)
    columns_sq = np.concatenate([np.zeros((n, 1)), np.cumsum((strips * strips).sum(axis=1), axis=1)], axis=1)
    window_sum = columns[:, side:] - columns[:, :-side]
    window_var = columns_sq[:, side:] - columns_sq[:, :-side] - window_sum**2 / (side * side)
    denominator = np.sqrt(np.maximum((p * p).sum(axis=(1, 2))[:, None] * window_var, 0.0))
    flat = denominator < 1e-6  # a flat patch or window (no texture, or the running sums' rounding): never a match
    score = np.where(flat, -1.0, numerator / np.where(flat, 1.0, denominator))
    best = score.argmax(axis=1)
    rows_n = np.arange(n)
    peak = score[rows_n, best]
    before = score[rows_n, np.clip(best - 1, 0, 2 * s)]
    after = score[rows_n, np.clip(best + 1, 0, 2 * s)]
    curvature = before - 2 * peak + after
    use = (best > 0) & (best < 2 * s) & (peak >= min_match) & (curvature < 0)
    shift = 0.5 * (before[use] - after[use]) / curvature[use]
    out[use] = guess[use] - s + best[use] + shift + offset_x[use]
    return out


def _empty(dim: int, comparisons: int = 0) -> StereoPoints:
    z = np.zeros(0, dtype=np.int64)
    return StereoPoints(np.zeros((0, 3)), np.zeros((0, dim), np.float32), z, z, np.zeros(0), comparisons)
