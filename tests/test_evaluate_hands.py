"""tracking.evaluate_hands: the hand pipeline alone against the truth in the head frame, and its keypoint cache."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from skiptrack_types import InvalidInputError
from tracking import evaluate_hands as eh

SOURCE = "synthetic:still_hand"


@pytest.fixture(scope="module")
def truth_frames():
    return eh.hand_frames(SOURCE, seed=1, seconds=0.5, keypoints="truth")


def test_truth_keypoints_give_millimetre_hands_and_every_field(truth_frames) -> None:
    rig, frames = truth_frames
    assert len(frames) == 30
    result = eh.evaluate_hands(rig, frames)
    assert result["hand_frames"] == 30  # the one hand of still_hand, every frame
    # truth keypoints with 0.5 px of noise: within a centimetre (8.6 mm), the joints a camera sees better than the
    # ones the model fills in (6.0 and 11.3 mm)
    assert 0 < result["mpjpe_mm"] < 12
    assert result["seen_mm"] < result["mpjpe_mm"] < result["hidden_mm"]
    assert abs(result["depth_bias_seen_mm"]) < 3
    assert len(result["per_joint_mm"]) == 21
    for lengths in result["bone_lengths_mm"].values():
        assert np.array(lengths["learned"]).shape == np.array(lengths["truth"]).shape == (5, 3)


def test_a_worse_hand_setting_measures_worse(truth_frames) -> None:
    from tracking.pose.hands import HandConfig

    rig, frames = truth_frames
    shipped = eh.evaluate_hands(rig, frames)["mpjpe_mm"]
    # no stereo refinement, and triangulated joints trusted as if their keypoints were 10x noisier
    worse = eh.evaluate_hands(rig, frames, HandConfig(min_match=2.0, keypoint_sigma_px=5.0))["mpjpe_mm"]
    assert worse > shipped


def test_the_cache_is_reused_and_a_corrupt_one_is_recomputed(tmp_path, monkeypatch, caplog) -> None:
    rig, frames = eh.hand_frames(SOURCE, seed=2, seconds=0.1, keypoints="truth", cache=tmp_path)
    (cached,) = tmp_path.glob("*.pkl")

    def no_compute(*args):
        raise AssertionError("recomputed although the cache holds the frames")

    with monkeypatch.context() as m:
        m.setattr(eh, "_compute", no_compute)
        _, again = eh.hand_frames(SOURCE, seed=2, seconds=0.1, keypoints="truth", cache=tmp_path)
    assert [f.job.t_ns for f in again] == [f.job.t_ns for f in frames]
    cached.write_bytes(cached.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        _, recomputed = eh.hand_frames(SOURCE, seed=2, seconds=0.1, keypoints="truth", cache=tmp_path)
    assert "cannot read the cached keypoints" in caplog.text
    assert len(recomputed) == len(frames)
    assert not list(tmp_path.glob("*.partial"))


def test_a_source_without_truth_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="synthetic"):
        eh.hand_frames("video:whatever.avi", seed=1, seconds=1.0)


def test_the_command_writes_pooled_and_per_seed_figures(tmp_path) -> None:
    out = tmp_path / "hands.json"
    code = eh.main(["--source", SOURCE, "--seed", "1", "--seed", "2", "--seconds", "0.2", "--keypoints", "truth",
                    "--json", str(out)])  # fmt: skip
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data["per_seed"]) == {"1", "2"}
    frames = sum(r["hand_frames"] for r in data["per_seed"].values())
    assert data["pooled"]["hand_frames"] == frames
    assert "_errors" not in data["pooled"]


def test_a_cache_written_by_the_command_loads_in_another_program(tmp_path) -> None:
    import subprocess
    import sys

    out = tmp_path / "hands.json"
    subprocess.run([sys.executable, "-m", "tracking.evaluate_hands", "--source", SOURCE, "--seconds", "0.1",
                    "--keypoints", "truth", "--cache", str(tmp_path), "--json", str(out)], check=True)  # fmt: skip
    with pytest.MonkeyPatch.context() as m:
        m.setattr(eh, "_compute", lambda *args: pytest.fail("the command's cache did not load here"))
        _, frames = eh.hand_frames(SOURCE, seed=1, seconds=0.1, keypoints="truth", cache=tmp_path)
    assert len(frames) == 6


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path, caplog) -> None:
    not_a_folder = tmp_path / "taken"
    not_a_folder.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        _, frames = eh.hand_frames(SOURCE, seed=1, seconds=0.1, keypoints="truth", cache=not_a_folder)
    assert len(frames) == 6
    assert "cannot write the keypoint cache" in caplog.text
