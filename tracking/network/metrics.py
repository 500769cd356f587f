"""Accuracy and agreement measures of the keypoint network. Pure computation: no files, no models.

- ``hand_pck``: share of visible joints predicted within a pixel tolerance (PCK, as in hand-pose benchmarks).
- ``landmark_ids``: which world landmark each detection is (the nearest visible projection within a tolerance).
- ``repeatability``: of the landmarks detected in one view and visible in another, the share detected in the
  other too (identity-based repeatability: the synthetic world tells which point is which, so no homography is
  needed; DeTone et al., SuperPoint, use the same idea with known warps).
- ``descriptor_precision``: of the mutual-nearest-neighbour descriptor matches between two views whose points are
  both landmarks, the share pairing the same landmark.
- ``point_repeatability``: for a static camera (real video), the share of points of one frame with a point of
  the other within a tolerance (both directions averaged): works for any detector, so it compares with OpenCV's.
- ``agreement``: the share of one model's keypoints that another model reproduces within a tolerance;
  ``hand_agreement`` the same over the hand joints alone.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from skiptrack_types import HAND_SIDES, Truth
from tracking.keypoints import Keypoints


def hand_pck(keypoints: Keypoints, truth: Truth, camera: int, tolerance_px: float = 3.0) -> tuple[int, int]:
    """(correct, total) over the visible joints of ``truth``'s hands in ``camera``; a hand the network did not
    report counts all its visible joints as wrong."""
    correct = total = 0
    for hand in truth.hands:
        visible = hand.visible[camera]
        total += int(visible.sum())
        found = keypoints.hand(hand.side)
        if found is None or not visible.any():
            continue
        error = np.linalg.norm(found.joints_px[visible] - hand.joints_px[camera][visible], axis=1)
        correct += int((error <= tolerance_px).sum())
    return correct, total


def landmark_ids(points_px: np.ndarray, truth: Truth, camera: int, tolerance_px: float = 3.0) -> np.ndarray:
    """(N,) landmark index of each detection (nearest visible landmark projection within ``tolerance_px``), or -1."""
    visible = np.flatnonzero(truth.landmarks_visible[camera])
    ids = np.full(len(points_px), -1)
    if len(visible) == 0 or len(points_px) == 0:
        return ids
    distance, nearest = cKDTree(truth.landmarks_px[camera][visible]).query(points_px)
    close = distance <= tolerance_px
    ids[close] = visible[nearest[close]]
    return ids


def repeatability(
    ids_a: np.ndarray, visible_b: np.ndarray, ids_b: np.ndarray, visible_a: np.ndarray
) -> tuple[int, int]:
    """(repeated, possible), both directions summed: landmarks detected in one view and visible in the other,
    and how many of them the other view detected too. ``visible_*`` (num_landmarks,) bool."""
    found_a, found_b = set(ids_a[ids_a >= 0].tolist()), set(ids_b[ids_b >= 0].tolist())
    possible_ab = {i for i in found_a if visible_b[i]}
    possible_ba = {i for i in found_b if visible_a[i]}
    repeated = len(possible_ab & found_b) + len(possible_ba & found_a)
    return repeated, len(possible_ab) + len(possible_ba)


def mutual_matches(desc_a: np.ndarray, desc_b: np.ndarray) -> np.ndarray:
    """(M, 2) index pairs (i in a, j in b) that are each other's nearest neighbour by descriptor similarity."""
    if len(desc_a) == 0 or len(desc_b) == 0:
        return np.zeros((0, 2), int)
    similarity = desc_a @ desc_b.T
    ab, ba = similarity.argmax(1), similarity.argmax(0)
    i = np.flatnonzero(ba[ab] == np.arange(len(desc_a)))
    return np.stack([i, ab[i]], 1)


def descriptor_precision(kp_a: Keypoints, ids_a: np.ndarray, kp_b: Keypoints, ids_b: np.ndarray) -> tuple[int, int]:
    """(correct, judged): mutual nearest-neighbour matches whose two points are both landmarks, and how many of
    those pair the same landmark."""
    matches = mutual_matches(kp_a.descriptors, kp_b.descriptors)
    if len(matches) == 0:
        return 0, 0
    a, b = ids_a[matches[:, 0]], ids_b[matches[:, 1]]
    judged = (a >= 0) & (b >= 0)
    return int((a[judged] == b[judged]).sum()), int(judged.sum())


def point_repeatability(points_a: np.ndarray, points_b: np.ndarray, tolerance_px: float = 3.0) -> float:
    """Share of points with a counterpart in the other set within ``tolerance_px``, averaged over both directions
    (a static camera: the same scene point stays at the same pixel)."""
    if len(points_a) == 0 or len(points_b) == 0:
        return 0.0
    ab = cKDTree(points_b).query(points_a)[0] <= tolerance_px
    ba = cKDTree(points_a).query(points_b)[0] <= tolerance_px
    return float(0.5 * (ab.mean() + ba.mean()))


def agreement(reference: Keypoints, other: Keypoints, tolerance_px: float = 1.0) -> tuple[int, int]:
    """(agreeing, total): scene points of either result with a counterpart in the other within ``tolerance_px``
    (both directions), plus the joints of each hand ``reference`` reports that ``other`` reports at the same
    place (a hand missing from ``other`` disagrees on all its joints; an extra hand in ``other`` on all of its)."""
    agreeing = total = 0
    for a, b in ((reference, other), (other, reference)):
        total += len(a)
        if len(a) and len(b):
            agreeing += int((cKDTree(b.points_px).query(a.points_px)[0] <= tolerance_px).sum())
    hands_agreeing, hands_total = hand_agreement(reference, other, tolerance_px)
    return agreeing + hands_agreeing, total + hands_total


def hand_agreement(reference: Keypoints, other: Keypoints, tolerance_px: float = 1.0) -> tuple[int, int]:
    """(agreeing, total) over the hand joints alone, as ``agreement`` counts them."""
    agreeing = total = 0
    for side in HAND_SIDES:
        ha, hb = reference.hand(side), other.hand(side)
        if ha is None and hb is None:
            continue
        total += len((ha or hb).joints_px)
        if ha is not None and hb is not None:
            agreeing += int((np.linalg.norm(ha.joints_px - hb.joints_px, axis=1) <= tolerance_px).sum())
    return agreeing, total
