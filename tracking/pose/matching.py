"""Descriptor matching on candidate pairs: the geometry (a search window, an epipolar band) proposes pairs, one
row-wise product scores only those pairs, and mutual best matches above a similarity floor are kept.

Scoring only the proposed pairs instead of the full (queries × candidates) similarity matrix is what keeps the head
stage cheap with a few hundred keypoints per image and a map of a few thousand landmarks.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

DENSE_PAIR_FRACTION = 0.2
"""Above this fraction of all (a, b) pairs (a wide search after a long loss), one full similarity matrix is cheaper
than scoring pairs one by one."""


def pairs_within(queries: np.ndarray, points: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Every (query index, point index) pair of ``queries`` (Q, 2) and ``points`` (P, 2) closer than ``radius``;
    found in C by scipy's k-d tree."""
    if len(queries) == 0 or len(points) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    found = cKDTree(queries).sparse_distance_matrix(cKDTree(points), radius, output_type="ndarray")
    return found["i"].astype(np.int64), found["j"].astype(np.int64)


def pairs_on_rows(rows_a: np.ndarray, rows_b: np.ndarray, max_row_diff: float) -> tuple[np.ndarray, np.ndarray]:
    """Every (index into ``rows_a`` (A,), index into ``rows_b`` (B,)) pair whose rows differ by at most
    ``max_row_diff``: the epipolar band of a rectified stereo pair, by sorting and binary search."""
    if len(rows_a) == 0 or len(rows_b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(rows_b, kind="stable")
    sorted_b = rows_b[order]
    lo = np.searchsorted(sorted_b, rows_a - max_row_diff, side="left")
    hi = np.searchsorted(sorted_b, rows_a + max_row_diff, side="right")
    counts = hi - lo
    a = np.repeat(np.arange(len(rows_a)), counts)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return a, order[starts + np.arange(len(a))]


def mutual_best(
    descriptors_a: np.ndarray,
    descriptors_b: np.ndarray,
    pairs_a: np.ndarray,
    pairs_b: np.ndarray,
    min_similarity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Mutual best matches among candidate pairs (``pairs_a``, ``pairs_b``) (K,) of unit ``descriptors_a`` (A, D)
    and ``descriptors_b`` (B, D): a pair is kept when each side is the other's most similar candidate and their
    similarity (dot product) reaches ``min_similarity``. Returns (indices into a, indices into b), each side at
    most once, ordered by the index into a."""
    if len(pairs_a) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(pairs_a) > DENSE_PAIR_FRACTION * len(descriptors_a) * len(descriptors_b):
        return _mutual_best_dense(descriptors_a, descriptors_b, pairs_a, pairs_b, min_similarity)
    similarity = np.einsum("kd,kd->k", descriptors_a[pairs_a], descriptors_b[pairs_b])
    best_of_a = np.full(len(descriptors_a), -np.inf, similarity.dtype)
    best_of_b = np.full(len(descriptors_b), -np.inf, similarity.dtype)
    np.maximum.at(best_of_a, pairs_a, similarity)
    np.maximum.at(best_of_b, pairs_b, similarity)
    keep = np.flatnonzero(
        (similarity == best_of_a[pairs_a]) & (similarity == best_of_b[pairs_b]) & (similarity >= min_similarity)
    )
    keep = keep[np.argsort(pairs_a[keep], kind="stable")]
    # an exact tie could pair one side twice: keep the first of each a and of each b
    keep = keep[np.unique(pairs_a[keep], return_index=True)[1]]
    keep = np.sort(keep[np.unique(pairs_b[keep], return_index=True)[1]])
    keep = keep[np.argsort(pairs_a[keep], kind="stable")]
    return pairs_a[keep], pairs_b[keep]


def _mutual_best_dense(
    descriptors_a: np.ndarray,
    descriptors_b: np.ndarray,
    pairs_a: np.ndarray,
    pairs_b: np.ndarray,
    min_similarity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``mutual_best`` through the full (A, B) similarity matrix, pairs outside the candidates masked out."""
    similarity = np.full((len(descriptors_a), len(descriptors_b)), -np.inf, np.float32)
    similarity[pairs_a, pairs_b] = (descriptors_a @ descriptors_b.T)[pairs_a, pairs_b]
    best_b = np.argmax(similarity, axis=1)
    best_a = np.argmax(similarity, axis=0)
    a = np.arange(len(descriptors_a))
    keep = (best_a[best_b] == a) & (similarity[a, best_b] >= min_similarity)
    return a[keep], best_b[keep]
