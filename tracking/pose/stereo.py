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


def match_stereo(left: Keypoints, right: Keypoints, rig: StereoRig, config: StereoConfig | None = None) -> StereoPoints:
    """Match ``left`` (camera 0) to ``right`` (camera 1) keypoints and triangulate the matches in camera 0."""
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
    X = cv2.triangulatePoints(rect.P0, rect.P1, l_px[li].T, r_px[ri].T)
    points_rect = (X[:3] / X[3]).T
    points_cam0 = points_rect @ rect.R0  # R0 maps camera 0 to the rectified frame; its transpose maps back
    depth = points_rect[:, 2]
    sigma = depth**2 / (rect.focal_px * rect.baseline_m) * 0.5
    return StereoPoints(points_cam0, left.descriptors[li], li, ri, sigma, comparisons)


def _empty(dim: int, comparisons: int = 0) -> StereoPoints:
    z = np.zeros(0, dtype=np.int64)
    return StereoPoints(np.zeros((0, 3)), np.zeros((0, dim), np.float32), z, z, np.zeros(0), comparisons)
