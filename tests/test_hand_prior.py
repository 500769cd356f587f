"""The hand model's pose prior: the shipped file, its mirror for a left hand, bad files, and its training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skiptrack_types import InvalidInputError
from tracking.pose.hand_prior import MIRROR_SIGNS, HandPosePrior, default_prior


def test_the_shipped_prior_fans_the_fingers_and_couples_their_bends() -> None:
    prior = default_prior()
    abduction = prior.mean[1:, 0]  # index .. little, right hand
    assert np.all(np.diff(abduction) > 0)  # straight fingers fan out from the palm
    std = np.sqrt(np.diag(prior.covariance)).reshape(5, 5)
    correlation = prior.covariance / np.outer(std.ravel(), std.ravel())
    middle_pip, ring_pip = 5 * 2 + 2, 5 * 3 + 2
    assert correlation[middle_pip, ring_pip] > 0.5  # a curling middle finger takes the ring finger with it


def test_a_left_hand_is_judged_as_the_mirror_image_of_a_right_one() -> None:
    prior = default_prior()
    rng = np.random.default_rng(0)
    right = prior.mean + np.radians(10.0) * rng.standard_normal((5, 5))
    left = right * MIRROR_SIGNS
    mean_r, white_r = prior.for_side("right")
    mean_l, white_l = prior.for_side("left")
    np.testing.assert_allclose(white_l @ (left.ravel() - mean_l), white_r @ (right.ravel() - mean_r), atol=1e-9)
    # whitened: unit covariance under the prior
    np.testing.assert_allclose(white_r @ prior.covariance @ white_r.T, np.eye(25), atol=1e-8)


def test_a_bad_prior_file_is_refused_with_the_command_that_makes_one(tmp_path) -> None:
    missing = tmp_path / "none.json"
    with pytest.raises(InvalidInputError, match="train_hand_prior"):
        HandPosePrior.load(missing)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    with pytest.raises(InvalidInputError, match="corrupt"):
        HandPosePrior.load(corrupt)
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"mean_rad": [[0.0] * 5] * 4, "covariance_rad2": np.eye(25).tolist()}))
    with pytest.raises(InvalidInputError, match=r"short\.json: a hand pose prior needs a \(5, 5\) mean"):
        HandPosePrior.load(short)
    singular = tmp_path / "singular.json"
    singular.write_text(json.dumps({"mean_rad": [[0.0] * 5] * 5, "covariance_rad2": np.zeros((25, 25)).tolist()}))
    with pytest.raises(InvalidInputError, match="positive definite"):
        HandPosePrior.load(singular)


def test_training_fits_the_models_angles_reproducibly_and_round_trips(tmp_path) -> None:
    from tracking import train_hand_prior

    first = train_hand_prior.train(120, noise_deg=8.0, floor_deg=2.0, seed=3, progress=False)
    again = train_hand_prior.train(120, noise_deg=8.0, floor_deg=2.0, seed=3, progress=False)
    np.testing.assert_array_equal(first.mean, again.mean)
    path = tmp_path / "prior.json"
    first.save(path, {"poses": 120})
    loaded = HandPosePrior.load(path)
    np.testing.assert_allclose(loaded.covariance, first.covariance)
    # the samples are the hand model's own angles: the synthetic open hand's straight fingers fit flexion ~0
    from hardware.synthetic import hands as synthetic_hands

    open_hand = train_hand_prior.model_angles(synthetic_hands.OPEN[None], progress=False)[0]
    assert np.abs(np.degrees(open_hand[1:, 1:4])).max() < 1.0


def test_the_command_writes_a_prior_the_model_reads(tmp_path) -> None:
    from tracking import train_hand_prior
    from tracking.pose.hand_model import HandModel

    out = tmp_path / "prior.json"
    assert train_hand_prior.main(["--poses", "150", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["about"]["poses"] == 150
    HandModel("left", prior=HandPosePrior.load(out))  # a usable prior for either hand
    assert train_hand_prior.main(["--poses", "10", "--out", str(out)]) == 2


def test_a_tracker_with_a_corrupt_prior_file_fails_when_made_not_at_the_first_hand(tmp_path, monkeypatch) -> None:
    from pose_scene import make_rig

    import tracking.hand_tracker as hand_tracker
    from tracking.tracker import Tracker, TrackerConfig

    corrupt = tmp_path / "hand_prior.json"
    corrupt.write_text('{"mean_rad": [1, 2]}')
    monkeypatch.setattr(hand_tracker, "default_prior", lambda: HandPosePrior.load(corrupt))
    with pytest.raises(InvalidInputError, match="train_hand_prior"):
        Tracker(make_rig(), TrackerConfig(hand_process=False))
