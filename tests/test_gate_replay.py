"""benchmarks/gate_replay.py: one gated layer's calls recorded from the keypoint network and replayed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tracking.skipconv.kernels import load_cpp

GATE_REPLAY_PY = Path(__file__).resolve().parents[1] / "benchmarks" / "gate_replay.py"


@pytest.fixture(scope="module")
def gate_replay():
    spec = importlib.util.spec_from_file_location("skiptrack_gate_replay", GATE_REPLAY_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_camera_layers_calls_replay_from_their_recorded_state_to_the_same_results(gate_replay) -> None:
    """Each recorded call of the camera layer, replayed by two kernel objects, gives the same updates, outputs and
    state: a baseline build that differed would be reported, and one that agrees is timed on the same work."""
    calls = gate_replay.record("synthetic:still_hand", 6, 0.0, "stem_0")
    assert calls and all(tuple(c["X"].shape) == (240, 320, 1) and c["changes"].numel() > 0 for c in calls)
    kernels = load_cpp()
    times, differences = gate_replay.replay(calls[:3], {"a": kernels, "b": kernels}, repeats=1, flush_mb=1)
    assert differences == [] and len(times["a"]) == len(times["b"]) == min(3, len(calls))

    class OffByOne:  # a build whose held input comes out different
        def select_update(self, X, Xhat, *args):
            result = kernels.select_update(X, Xhat, *args)
            Xhat.view(-1)[0] += 1.0
            return result

    _, differences = gate_replay.replay(calls[:2], {"a": kernels, "b": OffByOne()}, repeats=1, flush_mb=1)
    assert len(differences) == min(2, len(calls))


def test_an_unknown_layer_names_the_convolutions_there_are(gate_replay) -> None:
    with pytest.raises(SystemExit, match="stem_0"):
        gate_replay.record("synthetic:still_hand", 1, 0.0, "no_such_layer")
