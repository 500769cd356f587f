"""Evaluation metrics: ATE with SE(3) Umeyama alignment, RPE, MPJPE, TUM files, and a cross-check against evo."""

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from skiptrack_types import InvalidInputError
from tracking.evaluate import ate, mpjpe_mm, rpe, umeyama_alignment, write_tum


def _trajectory(n=100, seed=0):
    rng = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.from_rotvec(np.cumsum(rng.normal(0, 0.02, (n, 3)), axis=0)).as_matrix()
    T[:, :3, 3] = np.cumsum(rng.normal(0, 0.02, (n, 3)), axis=0)
    return T


def test_umeyama_recovers_a_rigid_transform():
    gt = _trajectory()
    offset = np.eye(4)
    offset[:3, :3] = Rotation.from_rotvec([0.1, -0.4, 0.3]).as_matrix()
    offset[:3, 3] = (1.0, -2.0, 0.5)
    est = np.linalg.inv(offset) @ gt
    np.testing.assert_allclose(umeyama_alignment(est[:, :3, 3], gt[:, :3, 3]).T_gt_est, offset, atol=1e-9)
    ate_m, ate_deg, _ = ate(est, gt)
    assert ate_m < 1e-9 and ate_deg < 1e-6


def test_ate_and_rpe_measure_a_known_offset():
    gt = _trajectory()
    est = gt.copy()
    est[::2, 0, 3] += 0.01
    est[1::2, 0, 3] -= 0.01
    ate_m, _, _ = ate(est, gt)
    assert ate_m == pytest.approx(0.01, rel=0.05)
    assert rpe(gt, gt, 1) == pytest.approx(0.0, abs=1e-12)  # float rounding of T⁻¹T: 2.5e-18 on some hosts
    assert rpe(est, gt, 1) > 0.01


def test_mpjpe_is_mean_joint_distance_in_mm():
    gt = np.zeros((2, 21, 3))
    est = gt.copy()
    est[..., 2] = 0.005
    assert mpjpe_mm(est, gt) == pytest.approx(5.0)


def test_mismatched_trajectories_are_rejected():
    with pytest.raises(InvalidInputError, match="same shape"):
        ate(_trajectory(10), _trajectory(11))


def test_tum_files_round_trip(tmp_path):
    T = _trajectory(5)
    write_tum(tmp_path / "x.tum", np.arange(5) * 1_000_000_000, T)
    rows = np.loadtxt(tmp_path / "x.tum")
    assert rows.shape == (5, 8)
    np.testing.assert_allclose(rows[:, 1:4], T[:, :3, 3], atol=1e-9)
    np.testing.assert_allclose(np.abs(rows[:, 4:] @ Rotation.from_matrix(T[:, :3, :3]).as_quat().T).diagonal(), 1.0)


def test_ate_agrees_with_evo(tmp_path):
    evo_file = pytest.importorskip("evo.tools.file_interface", reason="evo is a test-only dependency; pip install evo")
    from evo.core import metrics, sync

    gt = _trajectory(200, seed=1)
    est = _trajectory(200, seed=2) @ np.linalg.inv(gt[0]) @ gt
    t = np.arange(200) * 16_666_667
    write_tum(tmp_path / "gt.tum", t, gt)
    write_tum(tmp_path / "est.tum", t, est)
    traj_gt = evo_file.read_tum_trajectory_file(str(tmp_path / "gt.tum"))
    traj_est = evo_file.read_tum_trajectory_file(str(tmp_path / "est.tum"))
    traj_gt, traj_est = sync.associate_trajectories(traj_gt, traj_est)
    traj_est.align(traj_gt, correct_scale=False)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((traj_gt, traj_est))
    ours, _, _ = ate(est, gt)
    assert ours == pytest.approx(ape.get_statistic(metrics.StatisticsType.rmse), rel=1e-6)


def test_cli_writes_metrics_and_tum(tmp_path):
    from tracking.evaluate import main

    out = tmp_path / "m.json"
    assert main(["--source", "synthetic:seated", "--seconds", "1.5", "--seed", "7", "--json", str(out),
                 "--tum-dir", str(tmp_path)]) == 0  # fmt: skip
    m = json.loads(out.read_text())
    assert {
        "head_ate_m",
        "head_ate_deg",
        "head_rpe_m",
        "hand_mpjpe_mm",
        "exit_stage_hist",
        "refine_saving",
        "relocalization_s",
    } <= set(m)
    assert m["head_ate_m"] < 0.02
    assert (tmp_path / "gt.tum").is_file() and (tmp_path / "est.tum").is_file()


def test_cli_covering_both_cameras_reports_loss_and_relocalization(tmp_path):
    from tracking.evaluate import main

    out = tmp_path / "m.json"
    assert main(["--source", "synthetic:occlusion", "--seconds", "2", "--seed", "3", "--cover", "both",
                 "--no-exit", "--json", str(out)]) == 0  # fmt: skip
    m = json.loads(out.read_text())
    assert m["covered_s"] == pytest.approx(0.5, abs=0.05)
    assert m["relocalization_s"] >= 0.45, "a blacked-out headset must not claim to be tracked"
    assert m["uncover_to_tracked_s"] < 1.0
    assert m["head_ate_m"] < 0.02


def test_cli_compares_the_skip_network_with_the_dense_one(tmp_path):
    from tracking.evaluate import main

    out = tmp_path / "m.json"
    assert main(["--source", "synthetic:still_hand", "--seconds", "0.5", "--seed", "7", "--keypoints", "network",
                 "--vs-dense", "--no-exit", "--json", str(out)]) == 0  # fmt: skip
    m = json.loads(out.read_text())
    assert m["network"] == "skip"
    assert m["skip_vs_dense_mm"] == m["skip_vs_dense_no_exit_mm"]  # --no-exit: the same comparison
    difference = m["skip_vs_dense_mm"]
    assert difference["frames"] > 0
    assert 0.0 <= difference["median"] <= difference["p95"] <= difference["max"]
    assert np.isfinite(m["dense_head_ate_m"])


def test_pose_difference_counts_only_frames_both_runs_tracked():
    from tracking.evaluate import Run, pose_difference_mm

    def run(offsets_m, tracked):
        est = [np.eye(4) for _ in offsets_m]
        for T, x in zip(est, offsets_m, strict=True):
            T[0, 3] = x
        n = len(offsets_m)
        return Run(list(range(n)), est, est, list(tracked), [False] * n, [2] * n, 0, [], [], [])

    a = run([0.0, 0.0, 0.0, 0.0], [True, True, True, False])
    b = run([0.001, 0.003, 1.0, 0.0], [True, True, False, True])
    d = pose_difference_mm(a, b)
    assert d["frames"] == 2
    assert d["median"] == pytest.approx(2.0) and d["max"] == pytest.approx(3.0)


def test_aligned_pose_difference_takes_out_a_constant_offset_only():
    from tracking.evaluate import Run, pose_difference_mm

    def run(xs, ys):
        est = [np.eye(4) for _ in xs]
        for T, x, y in zip(est, xs, ys, strict=True):
            T[0, 3], T[1, 3] = x, y
        n = len(xs)
        return Run(list(range(n)), est, est, [True] * n, [False] * n, [2] * n, 0, [], [], [])

    xs = np.linspace(0.0, 0.1, 21)
    shifted = pose_difference_mm(run(xs, np.zeros(21)), run(xs + 0.004, np.zeros(21)))
    assert shifted["median"] == pytest.approx(4.0) and shifted["median_aligned"] == pytest.approx(0.0, abs=1e-6)
    wobble = 0.002 * (-1.0) ** np.arange(21)  # ±2 mm from frame to frame: no rigid motion takes it out
    jitter = pose_difference_mm(run(xs, np.zeros(21)), run(xs, wobble))
    assert jitter["median_aligned"] == pytest.approx(2.0, abs=0.2)


def test_seeds_are_read_as_a_range_or_a_list():
    from tracking.evaluate import seeds_from

    assert seeds_from("1-4") == [1, 2, 3, 4]
    assert seeds_from("1,3,5") == [1, 3, 5]
    assert seeds_from("7") == [7]
    for bad in ("5-1", "one", "1-"):
        with pytest.raises(InvalidInputError, match="seeds|first-last"):
            seeds_from(bad)


def test_early_exit_over_seeds_pools_the_seeds_ates(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "early_exit_seeds.py"
    spec = importlib.util.spec_from_file_location("early_exit_seeds", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "ee.json"
    assert bench.main(["--seeds", "1,2", "--seconds", "2", "--keypoints", "truth", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert [r["seed"] for r in d["seeds"]] == [1, 2]
    for r in d["seeds"]:
        assert r["ate_mm"]["exit"] > 0 and r["ate_mm"]["full"] > 0
        assert r["ratio"] == pytest.approx(r["ate_mm"]["exit"] / r["ate_mm"]["full"], rel=1e-3)
        assert r["refine_saving"] > 1.0, "early exit runs fewer full stages than always-full"
    exits, fulls = ([r["ate_mm"][k] for r in d["seeds"]] for k in ("exit", "full"))
    assert d["pooled_ratio"] == pytest.approx(sum(exits) / sum(fulls), rel=1e-3)
    assert d["best_ratio"] <= d["median_ratio"] <= d["worst_ratio"]
    # the early-exit run is the shipped tracker, hands included: their MPJPE pooled over every hand frame
    frames = [r["hand_frames"] for r in d["seeds"]]
    assert min(frames) > 0
    pooled = sum(r["hand_mpjpe_mm"] * r["hand_frames"] for r in d["seeds"]) / sum(frames)
    assert d["hand_mpjpe_mm"] == pytest.approx(pooled, abs=1e-3)
