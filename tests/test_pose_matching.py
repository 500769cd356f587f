"""Candidate-pair descriptor matching: search windows, epipolar bands, mutual best matches."""

import numpy as np

from tracking.pose.matching import _mutual_best_dense, mutual_best, pairs_on_rows, pairs_within


def _unit(rng, n, d=32):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_pairs_within_finds_exactly_the_close_pairs():
    rng = np.random.default_rng(0)
    a, b = rng.random((50, 2)) * 100, rng.random((70, 2)) * 100
    i, j = pairs_within(a, b, 12.0)
    expected = np.argwhere(np.linalg.norm(a[:, None] - b[None], axis=2) < 12.0)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == sorted(map(tuple, expected.tolist()))


def test_pairs_on_rows_finds_exactly_the_epipolar_band():
    rng = np.random.default_rng(1)
    a, b = rng.random(80) * 240, rng.random(90) * 240
    i, j = pairs_on_rows(a, b, 2.0)
    expected = np.argwhere(np.abs(a[:, None] - b[None]) <= 2.0)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == sorted(map(tuple, expected.tolist()))


def test_mutual_best_on_pairs_equals_the_dense_matrix_rule():
    rng = np.random.default_rng(2)
    desc_b = _unit(rng, 120)
    desc_a = desc_b[rng.permutation(120)[:90]] + 0.05 * _unit(rng, 90)
    desc_a /= np.linalg.norm(desc_a, axis=1, keepdims=True)
    pa, pb = pairs_within(rng.random((90, 2)) * 50, rng.random((120, 2)) * 50, 15.0)
    sparse = mutual_best(desc_a, desc_b, pa, pb, 0.8)
    dense = _mutual_best_dense(desc_a, desc_b, pa, pb, 0.8)
    assert len(sparse[0]) > 0
    np.testing.assert_array_equal(sparse[0], dense[0])
    np.testing.assert_array_equal(sparse[1], dense[1])


def test_mutual_best_uses_each_side_at_most_once_and_respects_the_floor():
    desc = np.eye(4, dtype=np.float32)
    pa = np.array([0, 1, 1, 2, 3])
    pb = np.array([0, 0, 1, 2, 2])
    a, b = mutual_best(desc, desc, pa, pb, 0.5)
    assert a.tolist() == [0, 1, 2] and b.tolist() == [0, 1, 2]
    assert len(np.unique(a)) == len(a) and len(np.unique(b)) == len(b)
