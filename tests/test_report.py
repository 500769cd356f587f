"""benchmarks/report.py: the results report built from benchmark JSON files (small fixtures written here, not real
benchmark runs), and the runner's handling of a benchmark command that fails."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPORT_PY = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"
PLOT_LIMIT_BYTES = 150 * 1024


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("skiptrack_report", REPORT_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def skipconv_run(speedup: float, active: float, threshold: float = 0.0) -> dict:
    return {"threshold": threshold, "frames": 4, "mac_ratio": active, "mac_reduction": 1.0 - active,
            "active_fraction_median": active, "max_relative_range_error": 0.004, "max_abs_error": 1e-3,
            "dense_ms_median": 8.0, "skip_ms_median": 8.0 / speedup, "speedup_median_of_ratios": speedup,
            "overhead_share": {"bookkeeping": 0.4}}  # fmt: skip


def tum_rows(xyz: np.ndarray) -> str:
    return "".join(f"{i / 60:.6f} {x:.6f} {y:.6f} {z:.6f} 0 0 0 1\n" for i, (x, y, z) in enumerate(xyz))


def write_fixtures(folder: Path) -> None:
    """One benchmark of each kind, with numbers chosen on both sides of the targets; the bridge run failed (after
    writing a JSON file that must not be believed) and the network video run never happened."""
    cases = {
        "still_hand": {"exact": skipconv_run(0.8, 1.0), "within_tolerance": skipconv_run(6.0, 0.02, 0.03)},
        "unchanged": {"exact": skipconv_run(25.0, 0.0)},
        "fully_changed": {"exact": skipconv_run(0.8, 1.0)},
        "video": {"within_tolerance": skipconv_run(2.5, 0.1, 0.01)},
    }
    files = {
        "skipconv": {"network": "reference", "dense_gmac": 0.48, "threads": 2, "tolerance": 0.01, "cases": cases,
                     "break_even_active_fraction": {"stem_0": 0.8}},
        "network": {"results": [
            {"source": "synthetic:still_hand", "frames": 30, "dense_ms": 8.0, "skip_ms": 1.0, "speedup": 8.0,
             "speedup_cpu": 7.5, "mac_ratio": 0.05, "active_fraction": 0.04, "agreement_1px": 1.0},
            {"source": "synthetic:seated", "seed": 7, "frames": 30, "cameras": 2, "dense_ms": 8.0, "skip_ms": 9.0,
             "speedup": 0.89, "speedup_cpu": 0.9, "mac_ratio": 0.9, "active_fraction": 0.9, "agreement_1px": 0.95,
             "hand_pck2d_3px": 0.96, "scene_repeatability": 0.7, "desc_match_precision": 0.88}]},
        "pose_seated": {"seed": 1, "frames": 120, "head_ate_m": 0.004, "head_ate_deg": 0.2, "hand_mpjpe_mm": 12.0,
                        "hand_mpjpe_tracked_mm": 7.0, "refine_saving": 3.0, "exit_stage_hist": {"1": 100, "2": 20},
                        "no_exit": {"head_ate_m": 0.0039}},
        "pose_look_around": {"seed": 1, "frames": 120, "head_ate_m": 0.015, "head_ate_deg": 0.3,
                             "refine_saving": 2.0, "no_exit": {"head_ate_m": 0.015}},
        "end_to_end": {"threads": 2, "seconds": 1.0, "paced": False, "scenarios": {"seated": {
            "skip": {"fps": 70.0, "latency_ms_p50": 10.0, "latency_ms_p99": 20.0, "frames": 60},
            "dense": {"fps": 50.0, "latency_ms_p50": 15.0, "latency_ms_p99": 30.0, "frames": 60},
            "skip_over_dense_fps": 1.4}}},
        "bridge": {"medians": {"tcp": {"p50_us": 100.0, "p99_us": 200.0, "lost": 0}}},
        "early_exit_seeds_truth": {"seeds": [{"seed": 1, "ratio": 1.0}, {"seed": 2, "ratio": 1.06}],
                                   "pooled_ratio": 1.03},
        "early_exit_seeds_look_around_truth": {"seeds": [{"seed": 1, "ratio": 1.04}, {"seed": 2, "ratio": 0.98}],
                                               "pooled_ratio": 1.01},
        "early_exit_seeds": {"seeds": [{"seed": 1, "ratio": 1.05, "hand_mpjpe_mm": 9.0, "hand_frames": 100},
                                       {"seed": 2, "ratio": 0.97, "hand_mpjpe_mm": 11.0, "hand_frames": 300}],
                             "pooled_ratio": 1.01, "hand_mpjpe_mm": 10.5,
                             "median_ratio": 1.01, "worst_ratio": 1.05, "best_ratio": 0.97, "seeds_within_2pct": 1,
                             "min_refine_saving": 2.8, "mean_ate_mm": {"exit": 5.05, "full": 5.0}},
    }  # fmt: skip
    for name, data in files.items():
        (folder / f"{name}.json").write_text(json.dumps(data))
    t = np.linspace(0.0, 2 * np.pi, 120)
    truth = np.stack([0.1 * np.cos(t), 1.6 + 0.0 * t, 0.1 * np.sin(t)], axis=1)
    (folder / "pose_seated_tum").mkdir()
    (folder / "pose_seated_tum" / "gt.tum").write_text(tum_rows(truth))
    (folder / "pose_seated_tum" / "est.tum").write_text(tum_rows(truth + [0.5, 0.0, -0.2]))
    manifest = {"machine": {"cpu": "Test CPU", "cores": 2, "torch": "2.13.0", "torch_threads": 2},
                "commit": "abc1234", "jobs": {
                    "bridge": {"benchmark": "bridge", "status": "failed", "reason": "exit code 1",
                               "command": "python benchmarks/bridge.py --json out.json", "returncode": 1,
                               "stderr_tail": "Traceback (most recent call last):\nzmq.error.ZMQError: Address "
                                              "already in use"}}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def built(report, tmp_path_factory) -> Path:
    """RESULTS.md built --from-json from the fixtures; returns its path."""
    folder = tmp_path_factory.mktemp("bench")
    write_fixtures(folder)
    results_md = tmp_path_factory.mktemp("docs") / "RESULTS.md"
    assert report.main(["--from-json", str(folder), "--results", str(results_md)]) == 0
    return results_md


def headline_rows(results_md: Path) -> dict[str, list[str]]:
    """measure -> [benchmark, measure, target, measured, result, notes] of the Targets table."""
    text = results_md.read_text()
    table = text.split("## Targets", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| ")]
    return {row[1]: row for row in rows[1:]}


def test_report_says_what_generated_it_and_on_which_machine(built):
    text = built.read_text()
    assert text.startswith("Generated by `python benchmarks/report.py --from-json")
    assert "Test CPU, 2 cores, torch 2.13.0 (2 threads)" in text
    assert "abc1234" in text


def test_headline_table_has_a_row_per_target(report, built):
    rows = headline_rows(built)
    assert len(rows) == sum(len(checks) for checks in report.CHECKS.values())
    for measure in ("still_hand speedup within 1% of dense output (reference network)",
                    "unchanged frame cost, share of dense time", "fully changed frame cost, multiple of dense time",
                    "vtest.avi speedup within 1% of dense output",
                    "still_hand network speedup, skip vs dense", "seated head ATE", "look_around head ATE",
                    "seated refinement compute saved by early exit", "tcp publish→receive p99",
                    "tracker fps, skip network", "latency p99, dense network"):  # fmt: skip
        assert measure in rows


def test_pass_and_fail_follow_the_targets(built):
    rows = headline_rows(built)
    expected = {
        "still_hand speedup within 1% of dense output (reference network)": ("6.00×", "pass"),
        "unchanged frame cost, share of dense time": ("4.0%", "pass"),
        "fully changed frame cost, multiple of dense time": ("1.25×", "**fail**"),
        "vtest.avi speedup within 1% of dense output": ("2.50×", "pass"),
        "still_hand network MAC reduction": ("95.0%", "pass"),
        "seated keypoints, skip agrees with dense within 1 px": ("95.0%", "**fail**"),
        "seated hand PCK@3px (held-out seed)": ("96.0%", "pass"),
        "seated scene repeatability (held-out seed)": ("70.0%", "pass"),
        "seated descriptor match precision (held-out seed)": ("88.0%", "**fail**"),
        "seated head ATE": ("4.0 mm", "pass"),
        "seated hand MPJPE, all joints": ("12.0 mm", "**fail**"),
        "look_around head ATE": ("15.0 mm", "pass"),
        "seated ATE with early exit, multiple of always-full": ("1.026×", "(no target)"),
        "look_around ATE with early exit, multiple of always-full, pooled over held-out seeds": ("1.010×", "pass"),
        "seated ATE with early exit, multiple of always-full, pooled over held-out seeds": ("1.030×", "**fail**"),
        "seated (network keypoints) ATE with early exit, multiple of always-full, pooled over held-out seeds": (
            "1.010×",
            "pass",
        ),
        "seated hand MPJPE, network keypoints, pooled over held-out seeds": ("10.5 mm", "**fail**"),
        "tracker fps, skip network": ("70.0", "pass"),
        "tracker fps, dense network": ("50.0", "**fail**"),
        "latency p99, skip network": ("20.0 ms", "pass"),
        "latency p99, dense network": ("30.0 ms", "**fail**"),
        "latency p50, skip network": ("10.0 ms", "(no target)"),
    }
    assert {m: (rows[m][3], rows[m][4]) for m in expected} == expected
    assert rows["seated descriptor match precision (held-out seed)"][5] == "skip model, seed 7, 30 frames x 2 cameras"
    hands = rows["seated hand MPJPE, network keypoints, pooled over held-out seeds"][5]
    assert hands == "seeds 1-2, every hand frame; per seed 9.0-11.0 mm (1 of 2 within 10 mm)"


def test_failed_benchmark_is_reported_with_its_stderr_tail(built):
    rows = headline_rows(built)
    assert rows["tcp publish→receive p99"][3:5] == ["—", "benchmark failed"]
    text = built.read_text()
    assert "**bridge: failed** (exit code 1)" in text
    assert "zmq.error.ZMQError: Address already in use" in text


def test_benchmark_without_json_is_reported_as_not_run(built):
    rows = headline_rows(built)
    assert rows["vtest.avi network speedup, skip vs dense"][3:5] == ["—", "not run"]
    assert "**network_video: not run**" in built.read_text()


def test_the_video_agreement_row_says_how_steady_the_dense_keypoints_are(report, tmp_path):
    write_fixtures(tmp_path)
    video = {"source": "video:vtest.avi", "frames": 100, "cameras": 1, "dense_ms": 3.0, "skip_ms": 1.5,
             "speedup": 2.0, "mac_ratio": 0.3, "agreement_1px": 0.926, "dense_frame_agreement_1px": 0.831}  # fmt: skip
    (tmp_path / "network_video.json").write_text(json.dumps({"results": [video]}))
    results_md = tmp_path / "out" / "RESULTS.md"
    assert report.main(["--from-json", str(tmp_path), "--results", str(results_md)]) == 0
    row = headline_rows(results_md)["vtest.avi keypoints, skip agrees with dense within 1 px"]
    assert row[3:] == [
        "92.6%",
        "**fail**",
        "the dense network's keypoints agree with its own on the previous image 83.1%",
    ]
    assert "| 92.6% | 83.1% |" in results_md.read_text()  # the network table's two agreement columns


def test_plots_are_written_small_and_linked(built):
    text = built.read_text()
    for name in ("skipconv_speedup.png", "trajectory.png", "end_to_end_latency.png"):
        plot = built.parent / "results" / name
        assert plot.read_bytes().startswith(b"\x89PNG")
        assert plot.stat().st_size <= PLOT_LIMIT_BYTES
        assert f"](results/{name})" in text
    assert "only p50 and p99" in text  # the latency plot says it is percentiles, not a histogram


def test_only_limits_the_report_built_from_json(report, tmp_path):
    write_fixtures(tmp_path)
    results_md = tmp_path / "out" / "RESULTS.md"
    assert report.main(["--from-json", str(tmp_path), "--only", "pose", "--results", str(results_md)]) == 0
    rows = headline_rows(results_md)
    assert {row[0] for row in rows.values()} == {"pose (#5)"}


def test_unknown_benchmark_name_is_refused(report):
    with pytest.raises(SystemExit):
        report.parse_args(["--only", "skipconv,warp_drive"])


def test_runner_records_a_failing_benchmark_with_its_stderr(report, tmp_path):
    job = report.Job("bridge", "bridge", ("-c", "import sys; print('starting'); sys.exit('bridge: port taken')"))
    entry = report.run_job(job, tmp_path, timeout_s=60)
    assert (entry["status"], entry["returncode"]) == ("failed", 1)
    assert "bridge: port taken" in entry["stderr_tail"]
    assert (tmp_path / "logs" / "bridge.stdout").read_text() == "starting\n"


def test_runner_fails_a_benchmark_that_exits_0_without_its_json(report, tmp_path):
    entry = report.run_job(report.Job("bridge", "bridge", ("-c", "pass")), tmp_path, timeout_s=60)
    assert entry["status"] == "failed"
    assert "wrote no bridge.json" in entry["reason"]


def test_runner_accepts_a_benchmark_that_writes_its_json(report, tmp_path):
    code = "import sys; open(sys.argv[1], 'w').write('{}')"
    job = report.Job("bridge", "bridge", ("-c", code, str(tmp_path / "bridge.json")))
    assert report.run_job(job, tmp_path, timeout_s=60)["status"] == "ok"


def test_runner_stops_a_benchmark_that_runs_out_of_time(report, tmp_path):
    job = report.Job("bridge", "bridge", ("-c", "import time; time.sleep(60)"))
    entry = report.run_job(job, tmp_path, timeout_s=1)
    assert (entry["status"], entry["reason"], entry["returncode"]) == ("failed", "timed out after 1 s", None)
    assert entry["seconds"] < 30
