"""One-Euro filtering and prediction to display time."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from skiptrack_types import InvalidInputError
from tracking.filter import OneEuroConfig, OneEuroFilter, PoseFilter, predict_pose

DT_NS = 16_666_667


def test_one_euro_reduces_jitter_of_a_still_point():
    rng = np.random.default_rng(0)
    f = OneEuroFilter()
    raw = rng.normal(0.0, 0.0005, (300, 3))  # half a millimetre of head jitter
    out = np.array([f(i * DT_NS, x) for i, x in enumerate(raw)])
    assert out[60:].std() < 0.5 * raw[60:].std()


def test_one_euro_lags_a_moving_head_by_at_most_one_frame():
    f = OneEuroFilter()
    speed = 0.3  # m/s, a head moving at a calm walking pace
    t = np.arange(120) * DT_NS
    out = np.array([f(int(ti), np.array([speed * ti * 1e-9, 0.0, 0.0])) for ti in t])
    lag_m = speed * t[-1] * 1e-9 - out[-1, 0]
    assert lag_m <= speed * DT_NS * 1e-9


def test_pose_filter_keeps_rotations_unit_and_follows_a_turn():
    f = PoseFilter()
    for i in range(90):
        R = Rotation.from_rotvec([0.0, 1.0 * i / 60.0, 0.0]).as_matrix()
        _, out = f(i * DT_NS, np.zeros(3), R)
    np.testing.assert_allclose(out @ out.T, np.eye(3), atol=1e-9)
    lag = (Rotation.from_matrix(out).inv() * Rotation.from_matrix(R)).magnitude()
    assert lag <= 1.0 / 60.0 + 1e-3  # at most one frame of a 1 rad/s turn


def test_prediction_extrapolates_constant_velocity_and_rotation():
    p, q = predict_pose(np.zeros(3), np.array([0, 0, 0, 1.0]), np.array([1.0, 0, 0]), np.array([0, 0.5, 0]), 0.02)
    np.testing.assert_allclose(p, [0.02, 0, 0])
    np.testing.assert_allclose(Rotation.from_quat(q).as_rotvec(), [0, 0.01, 0], atol=1e-12)


def test_filter_config_rejects_nonsense():
    with pytest.raises(InvalidInputError, match="cutoff"):
        OneEuroConfig(min_cutoff=0.0)
