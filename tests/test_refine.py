"""The early-exit cascade and its gates: exits save compute, gates load and save, hard rules hold."""

import numpy as np
import pytest
from pose_scene import PoseScene

from skiptrack_types import InvalidInputError
from tracking.keypoints import landmark_descriptors, truth_keypoints
from tracking.refine.cascade import CascadeConfig, ExitStage, RefinementCascade
from tracking.refine.gates import DEFAULT_GATES_PATH, GATE_FEATURES, Gate, GateSet


def _always_exit_gates() -> GateSet:
    n = len(GATE_FEATURES)
    gate = Gate(np.zeros(n), 10.0, np.zeros(n), np.ones(n))
    return GateSet({0: gate, 1: gate}, threshold=0.5)


def _run(config: CascadeConfig, seconds: float = 1.5):
    scene = PoseScene(seconds=seconds)
    desc = landmark_descriptors(len(scene.landmarks_world))
    rng = np.random.default_rng(0)
    cascade = RefinementCascade(scene.rig, desc.shape[1], config)
    return [
        cascade.step(f.seq, f.t_ns, tuple(truth_keypoints(f, c, desc, 0.5, rng) for c in range(2)), f.imu)
        for f in scene
    ]


def test_gates_that_always_exit_spend_less_but_still_run_full_stages_periodically():
    full = _run(CascadeConfig())
    gated = _run(CascadeConfig(gates=_always_exit_gates(), max_since_full_s=0.25))
    stages = [o.exit_stage for o in gated]
    assert stages.count(ExitStage.PREDICT) > len(stages) / 2
    assert stages.count(ExitStage.FULL) >= 1.5 / 0.25 - 1
    assert sum(o.spent_cost for o in full) > 3 * sum(o.spent_cost for o in gated)


def test_compute_units_are_deterministic():
    a = [o.spent_cost for o in _run(CascadeConfig(), seconds=0.5)]
    b = [o.spent_cost for o in _run(CascadeConfig(), seconds=0.5)]
    assert a == b


def test_gate_fit_separates_a_learnable_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(GATE_FEATURES)))
    y = x[:, 2] < 0.0
    gate = Gate.fit(x, y)
    p = np.array([gate.probability(v) for v in x])
    assert ((p > 0.5) == y).mean() > 0.95


def test_gates_round_trip_through_json(tmp_path):
    gates = _always_exit_gates()
    gates.save(tmp_path / "g.json")
    loaded = GateSet.load(tmp_path / "g.json")
    assert loaded.threshold == gates.threshold
    np.testing.assert_array_equal(loaded.gates[1].weights, gates.gates[1].weights)


def test_missing_gate_file_says_how_to_make_one(tmp_path):
    with pytest.raises(InvalidInputError, match="train_gates"):
        GateSet.load(tmp_path / "none.json")


def test_shipped_gates_load():
    gates = GateSet.load(DEFAULT_GATES_PATH)
    assert set(gates.gates) == {0, 1}
