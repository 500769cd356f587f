"""The early-exit cascade and its gates: exits save compute, gates load and save, hard rules hold."""

import numpy as np
import pytest
from pose_scene import PoseScene

from skiptrack_types import InvalidInputError
from tracking.keypoints import Keypoints, landmark_descriptors, truth_keypoints
from tracking.refine.cascade import CascadeConfig, ExitStage, RefinementCascade
from tracking.refine.gates import DEFAULT_GATES_PATH, GATE_FEATURES, Gate, GateSet


def _always_exit_gates(after_predict: bool = True) -> GateSet:
    n = len(GATE_FEATURES)
    gate = Gate(np.zeros(n), 10.0, np.zeros(n), np.ones(n))
    never = Gate(np.zeros(n), -10.0, np.zeros(n), np.ones(n))
    return GateSet({0: gate if after_predict else never, 1: gate}, threshold=0.5)


def _with_clutter(kp: Keypoints, rng: np.random.Generator, count: int) -> Keypoints:
    """``kp`` plus ``count`` keypoints a detector never repeats (random places and descriptors), as a network's
    top-k keypoints include."""
    points = np.vstack([kp.points_px, rng.uniform((0, 0), (320, 240), (count, 2)).astype(np.float32)])
    noise = rng.standard_normal((count, kp.descriptors.shape[1])).astype(np.float32)
    descriptors = np.vstack([kp.descriptors, noise / np.linalg.norm(noise, axis=1, keepdims=True)])
    return Keypoints(points, np.ones(len(points), np.float32), descriptors)


def _run(config: CascadeConfig, seconds: float = 1.5, clutter: int = 0):
    scene = PoseScene(seconds=seconds)
    desc = landmark_descriptors(len(scene.landmarks_world))
    rng = np.random.default_rng(0)
    cascade = RefinementCascade(scene.rig, desc.shape[1], config)
    outcomes = []
    for f in scene:
        keypoints = tuple(_with_clutter(truth_keypoints(f, c, desc, 0.5, rng), rng, clutter) for c in range(2))
        outcomes.append(cascade.step(f.seq, f.t_ns, keypoints, f.imu))
    return outcomes, cascade


def test_gates_that_always_exit_spend_less_but_still_run_full_stages_periodically():
    full, _ = _run(CascadeConfig())
    gated, _ = _run(CascadeConfig(gates=_always_exit_gates(), max_since_full_s=0.25))
    stages = [o.exit_stage for o in gated]
    assert stages.count(ExitStage.PREDICT) > len(stages) / 2
    assert stages.count(ExitStage.FULL) >= 1.5 / 0.25 - 1
    assert sum(o.spent_cost for o in full) > 3 * sum(o.spent_cost for o in gated)


def test_keypoints_the_map_never_explains_do_not_force_the_full_stage():
    # 300 unrepeatable keypoints per image: tracking explains under half of them, yet as many as right after the
    # last full stage, so the frame may exit (an absolute "85 % explained" rule ran the full stage every frame)
    gates = _always_exit_gates(after_predict=False)
    outcomes, _ = _run(CascadeConfig(gates=gates, max_since_full_s=10.0), clutter=300)
    stages = [o.exit_stage for o in outcomes[1:]]
    assert stages.count(ExitStage.TRACK) > 0.75 * len(stages)
    assert all(o.flags.position_tracked for o in outcomes)


def test_compute_units_are_deterministic():
    a = [o.spent_cost for o in _run(CascadeConfig(), seconds=0.5)[0]]
    b = [o.spent_cost for o in _run(CascadeConfig(), seconds=0.5)[0]]
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
