"""Runs the benchmarks and writes docs/RESULTS.md: the issues' targets against what was measured, a section per
benchmark, and plots (skip-conv speedup against active fraction, end-to-end latency, head trajectory against truth).

    python benchmarks/report.py                       # full settings: about 40 minutes on a quiet 2-core machine
    python benchmarks/report.py --quick               # tiny settings (about 3 minutes), for checking a setup;
                                                      #   writes out/report-quick/RESULTS.md, not docs/
    python benchmarks/report.py --only bridge,pose    # run these, then rebuild the report from the whole folder
    python benchmarks/report.py --from-json out/report  # rebuild the report from JSON already there, run nothing

Each benchmark runs as a subprocess of this interpreter and writes its JSON into the output folder (default
out/report/), with its stdout and stderr in logs/. ``manifest.json`` there records the machine, the git commit, and
per benchmark the command, exit status, duration and, for a failed one, the tail of its stderr; a failed benchmark
is reported as failed and the report is still written. Timing numbers mean something only on a quiet machine.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import operator
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("report")

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "video" / "vtest.avi"  # OpenCV sample video beside the checkout
BENCHMARKS = ("skipconv", "network", "pose", "bridge", "end_to_end")
MANIFEST = "manifest.json"
STDERR_TAIL_LINES = 25
PLOT_DPI = 90
PLOT_COLOURS = 256


# ------------------------------------------------------------------------------------------------ what runs


def shown(path: Path) -> str:
    """A path as the reader of the report would type it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


@dataclass(frozen=True)
class Job:
    """One benchmark command; it writes ``<name>.json`` into the output folder."""

    benchmark: str
    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    """How long each benchmark measures. Full settings are the ones the numbers in the docs were taken with."""

    skipconv: tuple[str, ...]
    network_seconds: float
    video_seconds: float
    pose_seconds: float
    early_exit_seeds: tuple[str, ...]
    bridge: tuple[str, ...]
    end_to_end: tuple[str, ...]
    default_run: tuple[str, ...]
    timeout_s: float


FULL = Settings(
    skipconv=("--frames", "40", "--repeats", "3"),
    network_seconds=2.0,
    video_seconds=10.0,
    pose_seconds=20.0,
    early_exit_seeds=("--seeds", "1-10", "--seconds", "20"),
    bridge=("--seconds", "10", "--repeats", "3"),
    end_to_end=("--seconds", "5", "--scenarios", "seated,still_hand,look_around"),
    default_run=("--repeats", "3"),
    timeout_s=1800.0,
)
QUICK = Settings(
    skipconv=("--frames", "4", "--repeats", "1", "--cases", "still_hand,unchanged,fully_changed,video"),
    network_seconds=0.25,
    video_seconds=1.0,
    pose_seconds=3.0,
    early_exit_seeds=("--seeds", "1-2", "--seconds", "3"),
    bridge=("--seconds", "1", "--repeats", "1"),
    end_to_end=("--seconds", "1", "--scenarios", "seated", "--repeats", "1"),
    default_run=("--repeats", "1"),
    timeout_s=240.0,
)
POSE_SCENARIOS = ("seated", "look_around")
NETWORK_POSE_JOB = "pose_network_seated"  # the same evaluation on the keypoint network's keypoints, skip vs dense
# ... in fp32, where the skip and the dense network differ only by the skip engine's approximation; the bf16 job
# is the tracker's default on a CPU with bfloat16 instructions (whole-image dense passes in bfloat16)
NETWORK_POSE_BF16_JOB = "pose_network_seated_bf16"
EARLY_EXIT_SEEDS_JOBS = {  # early exit over many held-out seeds: job name -> (scenario, keypoints)
    "early_exit_seeds_truth": ("seated", "truth"),
    "early_exit_seeds_look_around_truth": ("look_around", "truth"),
    "early_exit_seeds": ("seated", "network"),
}
E2E_SCENARIO = "seated"  # the end-to-end scenario the headline rows read
DEFAULT_RUN_JOB = "default_run"  # `python run_tracker.py` as a user runs it, with a subscriber beside it
VIDEO_START_S = 48.0  # the part of vtest.avi the network never saw in training (tracking/weights/README.md)


def jobs_for(out_dir: Path, settings: Settings, video: Path) -> list[Job]:
    """Every benchmark command, in the order they run (paths relative to the repository, where they run)."""

    def out(name: str) -> str:
        return shown(out_dir / f"{name}.json")

    def pose(scenario: str, name: str, *options: str) -> Job:
        return Job("pose", name, ("-m", "tracking.evaluate", "--source", f"synthetic:{scenario}", "--seed", "1",
                                  "--seconds", str(settings.pose_seconds), "--json", out(name),
                                  "--tum-dir", shown(out_dir / f"{name}_tum"), *options))  # fmt: skip

    return [
        Job("skipconv", "skipconv", ("benchmarks/skipconv.py", "--json", out("skipconv"), "--video", shown(video),
                                     *settings.skipconv)),
        Job("network", "network", ("benchmarks/network.py", "--json", out("network"), "--scenario", "still_hand",
                                   "--scenario", "seated", "--seconds", str(settings.network_seconds))),
        Job("network", "network_video", ("benchmarks/network.py", "--json", out("network_video"), "--video",
                                         shown(video), "--start", str(VIDEO_START_S),
                                         "--seconds", str(settings.video_seconds))),
        *(pose(scenario, f"pose_{scenario}") for scenario in POSE_SCENARIOS),
        pose("seated", NETWORK_POSE_JOB, "--keypoints", "network", "--vs-dense", "--precision", "fp32"),
        pose("seated", NETWORK_POSE_BF16_JOB, "--keypoints", "network", "--vs-dense", "--precision", "bf16"),
        *(Job("pose", name, ("benchmarks/early_exit_seeds.py", "--json", out(name), "--scenario", scenario,
                             "--keypoints", keypoints, *settings.early_exit_seeds))
          for name, (scenario, keypoints) in EARLY_EXIT_SEEDS_JOBS.items()),
        Job("bridge", "bridge", ("benchmarks/bridge.py", "--json", out("bridge"), *settings.bridge)),
        Job("end_to_end", "end_to_end", ("benchmarks/end_to_end.py", "--json", out("end_to_end"),
                                         *settings.end_to_end)),
        Job("end_to_end", DEFAULT_RUN_JOB, ("benchmarks/default_run.py", "--json", out(DEFAULT_RUN_JOB),
                                            *settings.default_run)),
    ]  # fmt: skip


JOB_BENCHMARK = {job.name: job.benchmark for job in jobs_for(Path("."), FULL, DEFAULT_VIDEO)}
JOB_NAMES = tuple(JOB_BENCHMARK)


def run_job(job: Job, out_dir: Path, timeout_s: float) -> dict:
    """Runs one benchmark to completion and returns its manifest entry; never raises for a failing benchmark."""
    json_path = out_dir / f"{job.name}.json"
    json_path.unlink(missing_ok=True)
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = logs / f"{job.name}.stdout", logs / f"{job.name}.stderr"
    started = time.monotonic()
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        returncode = wait_for([sys.executable, *job.argv], stdout, stderr, timeout_s)
    entry = {
        "benchmark": job.benchmark,
        "command": shlex.join(["python", *job.argv]),
        "returncode": returncode,
        "seconds": round(time.monotonic() - started, 1),
        "finished_utc": utc_now(),
    }
    if returncode == 0 and json_path.exists():
        return entry | {"status": Status.OK.value}
    reason = f"timed out after {timeout_s:.0f} s" if returncode is None else f"exit code {returncode}"
    if returncode == 0:
        reason = f"exited 0 but wrote no {json_path.name}"
    return entry | {"status": Status.FAILED.value, "reason": reason, "stderr_tail": tail(stderr_path)}


def wait_for(command: list[str], stdout: IO[str], stderr: IO[str], timeout_s: float) -> int | None:
    """Runs ``command`` in its own process group and returns its exit code, or None when it ran out of time. On a
    timeout or an interrupt the whole group is killed: some benchmarks start helper processes (subscribers)."""
    process = subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_all(jobs: list[Job], out_dir: Path, timeout_s: float, mode: str) -> None:
    """Runs ``jobs`` one after another, updating the manifest after each so an interrupted run keeps what it did."""
    manifest = read_manifest(out_dir)
    manifest |= {"machine": machine_info(), "commit": git_commit()}
    manifest.setdefault("jobs", {})
    for i, job in enumerate(jobs, 1):
        log.info("[%d/%d] %s: python %s", i, len(jobs), job.name, shlex.join(job.argv))
        entry = run_job(job, out_dir, timeout_s) | {"mode": mode}
        manifest["jobs"][job.name] = entry
        write_json(out_dir / MANIFEST, manifest)
        if entry["status"] == Status.OK.value:
            log.info("[%d/%d] %s: done in %.0f s", i, len(jobs), job.name, entry["seconds"])
        else:
            log.warning(
                "[%d/%d] %s: FAILED (%s) after %.0f s", i, len(jobs), job.name, entry["reason"], entry["seconds"]
            )


# ------------------------------------------------------------------------------------------------ provenance


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": package_version("torch"),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def git_commit() -> str:
    """The short commit, marked when the working tree has uncommitted changes to tracked files."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit} (with uncommitted changes)" if dirty else commit


def read_manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------ loading


class Status(Enum):
    OK = "ok"
    FAILED = "failed"
    NOT_RUN = "not run"


@dataclass
class Results:
    """The benchmark JSON files of one folder, with how each came to be (from the manifest when there is one)."""

    folder: Path
    data: dict[str, dict]
    runs: dict[str, dict]
    machine: dict
    commit: str

    def status(self, job: str) -> Status:
        if job in self.data:
            return Status.OK
        return Status.FAILED if self.runs.get(job, {}).get("status") == Status.FAILED.value else Status.NOT_RUN


def load_results(folder: Path, names: tuple[str, ...]) -> Results:
    """Reads ``<name>.json`` for each job name; a file that is not valid JSON counts as a failed run, and a run the
    manifest says failed stays failed even if it wrote its JSON before failing."""
    manifest = read_manifest(folder)
    runs = dict(manifest.get("jobs", {}))
    data = {}
    for name in names:
        path = folder / f"{name}.json"
        if not path.exists() or runs.get(name, {}).get("status") == Status.FAILED.value:
            continue
        try:
            data[name] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            runs[name] = {
                "status": Status.FAILED.value,
                "reason": f"{path.name} is not valid JSON ({exc})",
                "stderr_tail": "",
            }
    machine = manifest.get("machine") or machine_info() | {"note": "no manifest: the machine that built the report"}
    commit = manifest.get("commit") or f"{git_commit()} (no manifest: the commit that built the report)"
    return Results(folder, data, {k: v for k, v in runs.items() if k in names}, machine, commit)


def dig(data: dict | list | None, *keys: str | int) -> object:
    """``data[k0][k1]...``, or None where any level is missing (benchmarks run with --cases or fewer scenarios)."""
    for key in keys:
        try:
            data = data[key]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def network_row(data: dict | None, source: str) -> dict | None:
    """The result of one source (``synthetic:still_hand``) in a benchmarks/network.py JSON."""
    return next((r for r in dig(data, "results") or [] if r.get("source") == source), None)


def is_number(value: object) -> bool:
    """A finite int or float (JSON null, strings and booleans are not measurements)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))


def reduction(mac_ratio: object) -> float | None:
    return 1.0 - mac_ratio if is_number(mac_ratio) else None


def ratio(numerator: object, denominator: object) -> float | None:
    return numerator / denominator if is_number(numerator) and is_number(denominator) and denominator else None


# ------------------------------------------------------------------------------------------------ targets


OPERATORS: dict[str, Callable[[float, float], bool]] = {"≥": operator.ge, "≤": operator.le, "=": operator.eq}


class Verdict(Enum):
    PASS = "pass"
    FAIL = "**fail**"
    INFO = "(no target)"
    NOT_MEASURED = "not measured"
    FAILED = "benchmark failed"
    NOT_RUN = "not run"


@dataclass(frozen=True)
class Check:
    """One headline row: a number read from one benchmark JSON, and the issue's target for it (None: shown only)."""

    job: str
    measure: str
    value: Callable[[dict], object]
    fmt: str
    target: tuple[str, float] | None = None
    note: Callable[[dict], str] | None = None


@dataclass(frozen=True)
class Row:
    benchmark: str
    measure: str
    target: str
    measured: str
    verdict: Verdict
    note: str


def skipconv_note(case: str, run: str) -> Callable[[dict], str]:
    """Where a skip-conv number comes from: threshold, active fraction, both times, output error."""

    def note(data: dict) -> str:
        r = dig(data, "cases", case, run) or {}
        return (
            f"threshold {fmt(r.get('threshold'), '{:g}')}, active {fmt(r.get('active_fraction_median'), '{:.1%}')}, "
            f"dense {fmt(r.get('dense_ms_median'), '{:.1f}')} ms, skip {fmt(r.get('skip_ms_median'), '{:.1f}')} ms, "
            f"output error {fmt(r.get('max_relative_range_error'), '{:.2%}')} of range"
        )

    return note


def seated_note(data: dict) -> str:
    """Where a seated accuracy figure comes from: the skip model's keypoints on a world seed training never saw."""
    r = network_row(data, "synthetic:seated") or {}
    return f"skip model, seed {r.get('seed', '?')}, {r.get('frames', '?')} frames x {r.get('cameras', '?')} cameras"


def network_note(source: str | None) -> Callable[[dict], str]:
    """Both network times behind a speedup; ``source`` None: the JSON's only source (a video run)."""

    def note(data: dict) -> str:
        r = (network_row(data, source) if source else dig(data, "results", 0)) or {}
        return (
            f"dense {fmt(r.get('dense_ms'), '{:.1f}')} ms, skip {fmt(r.get('skip_ms'), '{:.1f}')} ms per image "
            f"(CPU-time speedup {fmt(r.get('speedup_cpu'), '{:.2f}×')}), {r.get('frames', '?')} frames"
        )

    return note


def dense_steadiness_note(data: dict) -> str:
    """How steady the dense keypoints themselves are on the video: what the agreement target is up against."""
    steady = dig(data, "results", 0, "dense_frame_agreement_1px")
    if steady is None:
        return ""
    return f"the dense network's keypoints agree with its own on the previous image {fmt(steady, '{:.1%}')}"


def end_to_end_note(data: dict) -> str:
    paced = "paced (real time)" if data.get("paced") else "as fast as possible"
    frames = "frames rendered before the run" if data.get("prerendered") else "frames rendered in the loop"
    precision = f", whole-image network passes in {data['precision']}" if data.get("precision") else ""
    return f"{E2E_SCENARIO}, {data.get('seconds')} s per run, {paced}, {frames}, {e2e_threads(data)}{precision}"


def e2e_threads(data: dict) -> str:
    """How the end-to-end run used the cores: the network's camera threads (since stop 6) and torch's threads."""
    if data.get("network_threads"):
        return f"network on a thread per camera with {data.get('threads')} torch thread(s) each, hands in a 2nd process"
    return f"{data.get('threads')} threads"


def default_run(key: str) -> Callable[[dict], object]:
    return lambda data: dig(data, "medians", key)


def default_run_note(data: dict) -> str:
    runs = data.get("runs") or []
    fps = " / ".join(fmt(r.get("fps"), "{:.1f}") for r in runs)
    return f"seated 10 s paced at 60 Hz, publishing; median of {len(runs)} runs ({fps})"


def default_run_rate_note(data: dict) -> str:
    runs = data.get("runs") or []
    dropped = " / ".join(text(r.get("frames_dropped_late")) for r in runs)
    lost = sum(sum((r.get("subscriber_lost") or {}).values()) for r in runs)
    return (
        f"the camera delivers 60; frames the tracker was late for (not tracked, no pose): {dropped} of 600; "
        f"messages lost: {lost}"
    )


def e2e(mode: str, key: str) -> Callable[[dict], object]:
    return lambda data: dig(data, "scenarios", E2E_SCENARIO, mode, key)


def early_exit_checks(scenario: str, job: str | None = None) -> tuple[Check, Check]:
    """Issue 5: early exit saves ≥ 2.5× refinement compute with ATE no more than 2% worse than always-full. The ATE
    target is judged on the scenario's row pooled over held-out seeds (``early_exit_seeds_check``); this one seed's
    ratio is shown beside it (one seed's ratio is mostly chance, docs/pose.md, stop 14)."""
    job = job or f"pose_{scenario}"
    return (
        Check(job, f"{scenario} refinement compute saved by early exit", lambda d: dig(d, "refine_saving"), "{:.2f}×",
              ("≥", 2.5), lambda d: f"exit stages {stage_mix(dig(d, 'exit_stage_hist'))}"),
        Check(job, f"{scenario} ATE with early exit, multiple of always-full",
              lambda d: ratio(dig(d, "head_ate_m"), dig(d, "no_exit", "head_ate_m")), "{:.3f}×", None,
              lambda d: "one seed: the target is on its row pooled over held-out seeds"),
    )  # fmt: skip


def early_exit_seeds_check(job: str) -> Check:
    """Issue 5's early-exit ATE target over many held-out seeds (benchmarks/early_exit_seeds.py): one seed's ratio is
    mostly chance (docs/pose.md, stop 14), so the pooled one is the measure; ``job`` a key of EARLY_EXIT_SEEDS_JOBS."""
    scenario, keypoints = EARLY_EXIT_SEEDS_JOBS[job]
    scenario = scenario if keypoints == "truth" else f"{scenario} (network keypoints)"
    return Check(job, f"{scenario} ATE with early exit, multiple of always-full, pooled "
                 "over held-out seeds", lambda d: dig(d, "pooled_ratio"), "{:.3f}×", ("≤", 1.02),
                 early_exit_seeds_note)  # fmt: skip


def early_exit_seeds_note(data: dict) -> str:
    """Which seeds, and how far their single ratios scatter (benchmarks/early_exit_seeds.py)."""
    seeds = [r.get("seed") for r in dig(data, "seeds") or []]
    if not seeds:
        return "—"
    mean_exit, mean_full = (fmt(dig(data, "mean_ate_mm", k), "{:.2f}") for k in ("exit", "full"))
    best, worst, median = (fmt(dig(data, k), "{:.3f}") for k in ("best_ratio", "worst_ratio", "median_ratio"))
    return (f"seeds {min(seeds)}-{max(seeds)}, mean ATE {mean_exit} / {mean_full} mm; per seed {best}-{worst} "
            f"(median {median}, {dig(data, 'seeds_within_2pct')} of {len(seeds)} within 2 %); saving ≥ "
            f"{fmt(dig(data, 'min_refine_saving'), '{:.2f}')}×")  # fmt: skip


def hand_seeds_note(data: dict) -> str:
    """The seeds' own hand MPJPEs (benchmarks/early_exit_seeds.py's early-exit runs: the shipped tracker)."""
    per_seed = [r.get("hand_mpjpe_mm") for r in dig(data, "seeds") or [] if is_number(r.get("hand_mpjpe_mm"))]
    if not per_seed:
        return "—"
    seeds = [r.get("seed") for r in dig(data, "seeds")]
    return (f"seeds {min(seeds)}-{max(seeds)}, every hand frame; per seed {min(per_seed):.1f}-{max(per_seed):.1f} mm "
            f"({sum(v <= 10.0 for v in per_seed)} of {len(per_seed)} within 10 mm)")  # fmt: skip


def stage_mix(hist: object) -> str:
    """``{"1": 1158, "2": 42}`` as ``1: 1158, 2: 42``."""
    return ", ".join(f"{k}: {v}" for k, v in hist.items()) if isinstance(hist, dict) else "—"


def bridge_lost(data: dict) -> object:
    """Lost messages summed over every run (the medians could hide a run that lost some)."""
    runs = [r for repeats in (dig(data, "runs") or {}).values() for r in repeats]
    if runs:
        return sum(r.get("lost", 0) for r in runs)
    medians = (dig(data, "medians") or {}).values()
    return sum(m.get("lost", 0) for m in medians) if medians else None


def bridge_p99_note(data: dict) -> str:
    floor = dig(data, "medians", "tcp_raw_zeromq", "p99_us")
    note = f"ipc {fmt(dig(data, 'medians', 'ipc', 'p99_us'), '{:.0f}')} µs"
    if floor is None:
        return note
    return f"{note}; this machine's floor (plain pyzmq, same frames) {fmt(floor, '{:.0f}')} µs"


def bridge_send_max(data: dict) -> object:
    """The slowest send not preempted by the OS, over the configurations with the slow subscriber attached:
    the issue's "send never blocks > 100 µs" (a preempted send waited for the scheduler, not for the library)."""
    values = [dig(data, "medians", name, "send_us_max_not_preempted") for name in ("tcp", "ipc")]
    values = [v for v in values if is_number(v)]
    return max(values) if values else None


def bridge_send_note(data: dict) -> str:
    raw = max((dig(data, "medians", name, "send_us_max") or 0.0) for name in ("tcp", "ipc"))
    waited = dig(data, "sends_that_waited_in_all_runs")
    return f"max including preempted sends {raw:.0f} µs; sends that waited for a lock or the GIL: {waited}"


# fmt: off
CHECKS: dict[str, tuple[Check, ...]] = {
    "skipconv": (
        Check("skipconv", "still_hand speedup within 1% of dense output (reference network)",
              lambda d: dig(d, "cases", "still_hand", "within_tolerance", "speedup_median_of_ratios"), "{:.2f}×",
              ("≥", 5.0), skipconv_note("still_hand", "within_tolerance")),
        Check("skipconv", "still_hand MAC reduction",
              lambda d: dig(d, "cases", "still_hand", "within_tolerance", "mac_reduction"), "{:.1%}", ("≥", 0.90)),
        Check("skipconv", "unchanged frame cost, share of dense time",
              lambda d: ratio(1.0, dig(d, "cases", "unchanged", "exact", "speedup_median_of_ratios")), "{:.1%}",
              ("≤", 0.05), skipconv_note("unchanged", "exact")),
        Check("skipconv", "fully changed frame cost, multiple of dense time",
              lambda d: ratio(1.0, dig(d, "cases", "fully_changed", "exact", "speedup_median_of_ratios")), "{:.2f}×",
              ("≤", 1.1), skipconv_note("fully_changed", "exact")),
        Check("skipconv", "vtest.avi speedup within 1% of dense output",
              lambda d: dig(d, "cases", "video", "within_tolerance", "speedup_median_of_ratios"), "{:.2f}×",
              ("≥", 2.0), skipconv_note("video", "within_tolerance")),
    ),
    "network": (
        Check("network", "still_hand network speedup, skip vs dense",
              lambda d: dig(network_row(d, "synthetic:still_hand"), "speedup"), "{:.2f}×", ("≥", 5.0),
              network_note("synthetic:still_hand")),
        Check("network", "still_hand network MAC reduction",
              lambda d: reduction(dig(network_row(d, "synthetic:still_hand"), "mac_ratio")), "{:.1%}", ("≥", 0.90)),
        Check("network", "seated keypoints, skip agrees with dense within 1 px",
              lambda d: dig(network_row(d, "synthetic:seated"), "agreement_1px"), "{:.1%}", ("≥", 0.99),
              network_note("synthetic:seated")),
        Check("network", "seated hand PCK@3px (held-out seed)",
              lambda d: dig(network_row(d, "synthetic:seated"), "hand_pck2d_3px"), "{:.1%}", ("≥", 0.95),
              seated_note),
        Check("network", "seated scene repeatability (held-out seed)",
              lambda d: dig(network_row(d, "synthetic:seated"), "scene_repeatability"), "{:.1%}", ("≥", 0.60),
              seated_note),
        Check("network", "seated descriptor match precision (held-out seed)",
              lambda d: dig(network_row(d, "synthetic:seated"), "desc_match_precision"), "{:.1%}", ("≥", 0.90),
              seated_note),
        Check("network_video", "vtest.avi network speedup, skip vs dense",
              lambda d: dig(d, "results", 0, "speedup"), "{:.2f}×", ("≥", 2.0), network_note(None)),
        Check("network_video", "vtest.avi keypoints, skip agrees with dense within 1 px",
              lambda d: dig(d, "results", 0, "agreement_1px"), "{:.1%}", ("≥", 0.98), dense_steadiness_note),
    ),
    "pose": (
        Check("pose_seated", "seated head ATE", lambda d: ratio(dig(d, "head_ate_m"), 1e-3), "{:.1f} mm",
              ("≤", 10.0)),
        Check("pose_seated", "seated head ATE, rotation", lambda d: dig(d, "head_ate_deg"), "{:.2f}°", ("≤", 0.5)),
        Check("pose_seated", "seated hand MPJPE, all joints", lambda d: dig(d, "hand_mpjpe_mm"), "{:.1f} mm",
              ("≤", 10.0), lambda d: f"joints both cameras see: {fmt(dig(d, 'hand_mpjpe_tracked_mm'), '{:.1f}')} mm"),
        Check("pose_look_around", "look_around head ATE", lambda d: ratio(dig(d, "head_ate_m"), 1e-3), "{:.1f} mm",
              ("≤", 20.0)),
        *(check for scenario in POSE_SCENARIOS for check in early_exit_checks(scenario)),
        early_exit_seeds_check("early_exit_seeds_truth"),
        early_exit_seeds_check("early_exit_seeds_look_around_truth"),
        Check(NETWORK_POSE_JOB, "seated head ATE, network keypoints", lambda d: ratio(dig(d, "head_ate_m"), 1e-3),
              "{:.1f} mm", ("≤", 10.0), lambda d: f"{fmt(dig(d, 'head_ate_deg'), '{:.2f}')}°"),
        Check(NETWORK_POSE_JOB, "seated hand MPJPE, network keypoints", lambda d: dig(d, "hand_mpjpe_mm"),
              "{:.1f} mm", ("≤", 10.0),
              lambda d: f"joints a camera saw: {fmt(dig(d, 'hand_mpjpe_tracked_mm'), '{:.1f}')} mm"),
        Check(NETWORK_POSE_JOB, "seated head position, skip vs dense network (median)",
              lambda d: dig(d, "skip_vs_dense_mm", "median"), "{:.2f} mm", ("≤", 2.0),
              lambda d: f"p95 {fmt(dig(d, 'skip_vs_dense_mm', 'p95'), '{:.2f}')} mm; more seeds: "
                        "benchmarks/skip_vs_dense.py"),
        Check(NETWORK_POSE_JOB, "seated head position, skip vs dense network, always-full cascade (median)",
              lambda d: dig(d, "skip_vs_dense_no_exit_mm", "median"), "{:.2f} mm", None,
              lambda d: "the cascade's response to keypoint changes of 0.001-0.01 px: benchmarks/pose_sensitivity.py"),
        *early_exit_checks("seated (network keypoints)", NETWORK_POSE_JOB),
        early_exit_seeds_check("early_exit_seeds"),
        Check("early_exit_seeds", "seated hand MPJPE, network keypoints, pooled over held-out seeds",
              lambda d: dig(d, "hand_mpjpe_mm"), "{:.1f} mm", ("≤", 10.0), hand_seeds_note),
        Check(NETWORK_POSE_BF16_JOB, "seated head ATE, network keypoints, bf16 dense passes",
              lambda d: ratio(dig(d, "head_ate_m"), 1e-3), "{:.1f} mm", None,
              lambda d: f"hand MPJPE {fmt(dig(d, 'hand_mpjpe_mm'), '{:.1f}')} mm; the rows above are fp32"),
        Check(NETWORK_POSE_BF16_JOB, "seated head position, skip vs dense network, bf16 dense passes (median)",
              lambda d: dig(d, "skip_vs_dense_mm", "median"), "{:.2f} mm", None,
              lambda d: "the skip model's sparse frames stay fp32, the dense network's are all bf16"),
    ),
    "bridge": (
        Check("bridge", "tcp publish→receive p50", lambda d: dig(d, "medians", "tcp", "p50_us"), "{:.0f} µs", None,
              lambda d: f"ipc {fmt(dig(d, 'medians', 'ipc', 'p50_us'), '{:.0f}')} µs"),
        Check("bridge", "tcp publish→receive p99", lambda d: dig(d, "medians", "tcp", "p99_us"), "{:.0f} µs",
              ("≤", 500.0), bridge_p99_note),
        Check("bridge", "messages lost (all runs)", bridge_lost, "{:.0f}", ("=", 0.0)),
        Check("bridge", "send max with a slow subscriber, not preempted", bridge_send_max, "{:.0f} µs", ("≤", 100.0),
              bridge_send_note),
    ),
    "end_to_end": (
        Check("end_to_end", "tracker fps, skip network", e2e("skip", "fps"), "{:.1f}", ("≥", 60.0), end_to_end_note),
        Check("end_to_end", "tracker fps, dense network", e2e("dense", "fps"), "{:.1f}", ("≥", 60.0)),
        Check("end_to_end", "skip fps / dense fps", lambda d: dig(d, "scenarios", E2E_SCENARIO, "skip_over_dense_fps"),
              "{:.2f}×"),
        Check("end_to_end", "latency p50, skip network", e2e("skip", "latency_ms_p50"), "{:.1f} ms"),
        Check("end_to_end", "latency p50, dense network", e2e("dense", "latency_ms_p50"), "{:.1f} ms"),
        Check("end_to_end", "latency p99, skip network", e2e("skip", "latency_ms_p99"), "{:.1f} ms", ("≤", 25.0)),
        Check("end_to_end", "latency p99, dense network", e2e("dense", "latency_ms_p99"), "{:.1f} ms", ("≤", 25.0)),
        Check(DEFAULT_RUN_JOB, "default run (`python run_tracker.py`) fps", default_run("fps"), "{:.1f}",
              ("≥", 30.0), default_run_note),
        Check(DEFAULT_RUN_JOB, "default run latency p50", default_run("latency_ms_p50"), "{:.1f} ms", ("≤", 20.0),
              lambda d: f"p99 {fmt(dig(d, 'medians', 'latency_ms_p99'), '{:.1f}')} ms"),
        Check(DEFAULT_RUN_JOB, "default run: head poses a subscriber received per second",
              default_run("subscriber_head_rate_hz"), "{:.1f}", None, default_run_rate_note),
    ),
}
# fmt: on


def load_average(values: object) -> str:
    """``[5.94, 4.57, 3.2]`` (1, 5, 15 minutes) as ``5.9, 4.6, 3.2``."""
    return ", ".join(fmt(v, "{:.1f}") for v in values) if isinstance(values, list) and values else "—"


def text(value: object) -> str:
    return "—" if value is None else str(value)


def fmt(value: object, spec: str) -> str:
    return spec.format(value) if is_number(value) else "—"


def evaluate(check: Check, results: Results, benchmark: str) -> Row:
    """The headline row of ``check``: pass/fail against its target, or why there is no number."""
    target = f"{check.target[0]} {check.fmt.format(check.target[1])}" if check.target else "—"
    status = results.status(check.job)
    if status is not Status.OK:
        verdict = Verdict.FAILED if status is Status.FAILED else Verdict.NOT_RUN
        return Row(benchmark, check.measure, target, "—", verdict, "")
    data = results.data[check.job]
    value = check.value(data)
    note = check.note(data) if check.note else ""
    if not is_number(value):
        return Row(benchmark, check.measure, target, "—", Verdict.NOT_MEASURED, note)
    if check.target is None:
        verdict = Verdict.INFO
    else:
        op, bound = check.target
        verdict = Verdict.PASS if OPERATORS[op](float(value), bound) else Verdict.FAIL
    return Row(benchmark, check.measure, target, check.fmt.format(value), verdict, note)


ISSUES = {"skipconv": 3, "network": 4, "pose": 5, "bridge": 6, "end_to_end": 9}


def headline(results: Results, benchmarks: tuple[str, ...]) -> list[Row]:
    return [evaluate(check, results, f"{b} (#{ISSUES[b]})") for b in benchmarks for check in CHECKS[b]]


# ------------------------------------------------------------------------------------------------ plots


def save(fig: plt.Figure, path: Path) -> Path:
    """Writes ``fig`` as a palette PNG: a plot has few colours, and the palette keeps the files small in git."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PLOT_DPI)
    plt.close(fig)
    Image.open(buffer).convert("RGB").quantize(colors=PLOT_COLOURS).save(path, optimize=True)
    return path


SKIPCONV_RUNS = {
    "exact": ("o", "threshold 0 (exact)"),
    "thresholded": ("^", "operating threshold"),
    "within_tolerance": ("s", "largest threshold within 1%"),
}


def plot_speedup(skipconv: dict, path: Path) -> Path | None:
    """Speedup against active fraction: a colour per case, a marker per threshold."""
    cases = {case: runs for case, runs in skipconv.get("cases", {}).items() if any(r in runs for r in SKIPCONV_RUNS)}
    if not cases:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours = dict(zip(cases, plt.get_cmap("tab10").colors, strict=False))
    for case, runs in cases.items():
        for run, (marker, _) in SKIPCONV_RUNS.items():
            r = runs.get(run)
            if r is not None and "speedup_median_of_ratios" in r:
                ax.scatter(r["active_fraction_median"], r["speedup_median_of_ratios"], marker=marker, s=45,
                           color=colours[case])  # fmt: skip
    ax.axhline(1.0, color="grey", linewidth=1, linestyle="--")
    ax.set_yscale("log")
    ax.set_xlabel("active fraction (median over frames)")
    ax.set_ylabel("speedup over dense")
    ax.set_title("Skip-convolution engine vs dense (reference network, 320×240)")
    case_handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=k) for k, c in colours.items()]
    run_handles = [plt.Line2D([], [], marker=m, linestyle="", color="grey", label=t) for m, t in SKIPCONV_RUNS.values()]
    ax.add_artist(ax.legend(handles=case_handles, fontsize=7, loc="upper right"))
    ax.legend(handles=run_handles, fontsize=7, loc="lower left")
    return save(fig, path)


def plot_latency(end_to_end: dict, path: Path) -> tuple[Path | None, str]:
    """A histogram when the JSON has per-frame latencies, else the percentiles as bars; the caption says which."""
    scenarios = end_to_end.get("scenarios", {})
    if not scenarios:
        return None, ""
    per_frame = {
        (s, m): row[m]["latencies_ms"]
        for s, row in scenarios.items()
        for m in ("skip", "dense")
        if isinstance(row.get(m), dict) and row[m].get("latencies_ms")
    }
    fig, ax = plt.subplots(figsize=(7, 4))
    if per_frame:
        bins = np.linspace(0.0, max(max(v) for v in per_frame.values()), 60)
        for (scenario, mode), latencies in per_frame.items():
            ax.hist(latencies, bins=bins, histtype="step", label=f"{scenario} {mode}")
        ax.set_xlabel("latency, capture to head pose sent (ms)")
        ax.set_ylabel("frames")
        caption = "Per-frame end-to-end latency (capture to head pose sent), skip vs dense network."
    else:
        labels = [f"{s}\n{m}" for s, row in scenarios.items() for m in ("skip", "dense") if row.get(m)]
        p50 = [row[m]["latency_ms_p50"] for row in scenarios.values() for m in ("skip", "dense") if row.get(m)]
        p99 = [row[m]["latency_ms_p99"] for row in scenarios.values() for m in ("skip", "dense") if row.get(m)]
        x = np.arange(len(labels))
        ax.bar(x - 0.2, p50, width=0.4, label="p50")
        ax.bar(x + 0.2, p99, width=0.4, label="p99")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("latency (ms)")
        caption = (
            "End-to-end latency percentiles (the benchmark JSON has only p50 and p99, no per-frame latencies, "
            "so this is a bar chart, not a histogram)."
        )
    target_line = ax.axvline if per_frame else ax.axhline
    target_line(25.0, color="red", linewidth=1, linestyle="--", label="p99 target 25 ms")
    ax.set_title("End-to-end tracker latency")
    ax.legend(fontsize=8)
    return save(fig, path), caption


def read_tum_xyz(path: Path) -> np.ndarray:
    """Positions (N, 3) m of a TUM file (t tx ty tz qx qy qz qw per row)."""
    return np.loadtxt(path, ndmin=2)[:, 1:4]


def plot_trajectories(folder: Path, scenarios: list[str], path: Path) -> Path | None:
    """Head trajectory against truth on the floor plane (OpenXR x-z, seen from above), the estimate aligned to the
    truth with the same SE(3) alignment the ATE uses."""
    from tracking.evaluate import umeyama_alignment
    from tracking.pose.geometry import transform_points

    pairs = [(s, folder / f"pose_{s}_tum") for s in scenarios]
    pairs = [(s, d) for s, d in pairs if (d / "gt.tum").exists() and (d / "est.tum").exists()]
    if not pairs:
        return None
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4.2), squeeze=False)
    for ax, (scenario, tum_dir) in zip(axes[0], pairs, strict=True):
        gt, est = read_tum_xyz(tum_dir / "gt.tum"), read_tum_xyz(tum_dir / "est.tum")
        aligned = transform_points(umeyama_alignment(est, gt).T_gt_est, est)
        ax.plot(aligned[:, 0], aligned[:, 2], color="tab:red", linewidth=0.6, label="estimate (aligned)")
        ax.plot(gt[:, 0], gt[:, 2], color="black", linewidth=1.2, label="truth")
        ax.plot(gt[0, 0], gt[0, 2], "o", color="black", markersize=4)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("z (m)")
        ax.tick_params(labelsize=8)
        title = "seated, network keypoints" if scenario == NETWORK_POSE_JOB.removeprefix("pose_") else scenario
        ax.set_title(f"{title} ({len(gt)} poses)", fontsize=10)
        ax.legend(fontsize=8)
    return save(fig, path)


# ------------------------------------------------------------------------------------------------ markdown


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def link(path: Path, relative_to: Path) -> str:
    return os.path.relpath(path, relative_to).replace(os.sep, "/")


def run_status_lines(results: Results, names: list[str]) -> list[str]:
    """What happened to the benchmark's commands, with the stderr tail of any that failed."""
    lines = []
    for name in names:
        status, run = results.status(name), results.runs.get(name, {})
        if status is Status.OK:
            continue
        if status is Status.NOT_RUN:
            lines += [f"**{name}: not run** (no `{name}.json` in `{shown(results.folder)}`).", ""]
            continue
        lines += [
            f"**{name}: failed** ({run.get('reason', 'no reason recorded')}) running `{run.get('command', '?')}`;"
            " the end of its stderr:",
            "",
            "```",
            run.get("stderr_tail") or "(empty)",
            "```",
            "",
        ]
    return lines


@dataclass(frozen=True)
class Column:
    """One column of a per-benchmark table: its header, how to read the value from a result, its format."""

    header: str
    value: Callable[[dict], object]
    spec: str | None = None  # None: the value as text


def key(*path: str, scale: float = 1.0) -> Callable[[dict], object]:
    """Reads ``path`` from a result, multiplied by ``scale`` (1e3: metres shown as millimetres)."""

    def value(r: dict) -> object:
        v = dig(r, *path)
        return v * scale if scale != 1.0 and is_number(v) else v

    return value


def table(labelled: list[tuple[list[str], dict]], label_headers: list[str], columns: tuple[Column, ...]) -> list[str]:
    """A Markdown table with a row per (labels, result)."""
    rows = [
        [*labels, *(text(c.value(r)) if c.spec is None else fmt(c.value(r), c.spec) for c in columns)]
        for labels, r in labelled
    ]
    return md_table([*label_headers, *(c.header for c in columns)], rows)


SKIPCONV_COLUMNS = (
    Column("threshold", key("threshold"), "{:g}"),
    Column("active", key("active_fraction_median"), "{:.1%}"),
    Column("MAC ratio", key("mac_ratio"), "{:.3f}"),
    Column("dense ms", key("dense_ms_median"), "{:.2f}"),
    Column("skip ms", key("skip_ms_median"), "{:.2f}"),
    Column("speedup", key("speedup_median_of_ratios"), "{:.2f}×"),
    Column("error (of range)", key("max_relative_range_error"), "{:.2%}"),
    Column("max abs error", key("max_abs_error"), "{:.1e}"),
    Column("bookkeeping share", key("overhead_share", "bookkeeping"), "{:.0%}"),
)
NETWORK_COLUMNS = (
    Column("source", key("source")),
    Column("frames", key("frames")),
    Column("cameras", key("cameras")),
    Column("threshold", key("threshold"), "{:g}"),
    Column("dense ms", key("dense_ms"), "{:.2f}"),
    Column("skip ms", key("skip_ms"), "{:.2f}"),
    Column("speedup", key("speedup"), "{:.2f}×"),
    Column("CPU-time speedup", key("speedup_cpu"), "{:.2f}×"),
    Column("MAC ratio", key("mac_ratio"), "{:.3f}"),
    Column("active", key("active_fraction"), "{:.1%}"),
    Column("agreement 1 px", key("agreement_1px"), "{:.1%}"),
    Column("dense frame to frame 1 px", key("dense_frame_agreement_1px"), "{:.1%}"),
)
POSE_COLUMNS = (
    Column("seed", key("seed")),
    Column("frames", key("frames")),
    Column("ATE mm", key("head_ate_m", scale=1e3), "{:.2f}"),
    Column("ATE °", key("head_ate_deg"), "{:.3f}"),
    Column("ATE mm, no exit", key("no_exit", "head_ate_m", scale=1e3), "{:.2f}"),
    Column("RPE mm", key("head_rpe_m", scale=1e3), "{:.2f}"),
    Column("hand MPJPE mm", key("hand_mpjpe_mm"), "{:.1f}"),
    Column("hand MPJPE mm, both cameras", key("hand_mpjpe_tracked_mm"), "{:.1f}"),
    Column("refine saving", key("refine_saving"), "{:.2f}×"),
    Column("exit stages", lambda r: stage_mix(r.get("exit_stage_hist"))),
    Column("tracked", key("tracked_fraction"), "{:.1%}"),
    Column("relocalization s", key("relocalization_s"), "{:.2f}"),
    Column("skip vs dense mm", key("skip_vs_dense_mm", "median"), "{:.2f}"),
)
BRIDGE_COLUMNS = tuple(
    Column(name.replace("_us", " µs").replace("_", " "), key(name), "{:g}")
    for name in ("p50_us", "p99_us", "p999_us", "max_us", "lost", "send_us_p50", "send_us_p99", "send_us_max",
                 "send_us_max_not_preempted")
)  # fmt: skip
END_TO_END_COLUMNS = (
    Column("frames", key("frames")),
    Column("fps", key("fps"), "{:.1f}"),
    Column("latency p50 ms", key("latency_ms_p50"), "{:.1f}"),
    Column("latency p99 ms", key("latency_ms_p99"), "{:.1f}"),
    Column("hands p50 ms", key("hand_latency_ms_p50"), "{:.1f}"),
    Column("hands p99 ms", key("hand_latency_ms_p99"), "{:.1f}"),
    Column("MAC ratio", key("mac_ratio"), "{:.3f}"),
    Column("active", key("active_fraction"), "{:.1%}"),
    Column("head ATE mm", key("head_ate_m", scale=1e3), "{:.2f}"),
)


def skipconv_section(data: dict, plot: Path | None, md_dir: Path) -> list[str]:
    lines = [
        f"{data.get('network', '')}: {fmt(data.get('dense_gmac'), '{:.3f}')} GMAC dense per 320×240 frame, "
        f"{data.get('threads')} threads; output error budget {fmt(data.get('tolerance'), '{:.0%}')} of the output "
        f"range; cache memory {fmt(data.get('cache_memory_multiple_of_activations'), '{:.2f}')}× the "
        "activations. Speedup is the median of per-frame dense/skip time ratios, dense and skip interleaved "
        "frame by frame in one process.",
        "",
    ]
    labelled = [
        ([case, run], runs[run]) for case, runs in data.get("cases", {}).items() for run in SKIPCONV_RUNS if run in runs
    ]
    lines += table(labelled, ["case", "run"], SKIPCONV_COLUMNS)
    break_even = ", ".join(f"{k} {v:g}" for k, v in (data.get("break_even_active_fraction") or {}).items())
    if break_even:
        lines += ["", f"Measured break-even active fraction per layer (above it a layer runs dense): {break_even}."]
    if plot is not None:
        lines += ["", f"![Speedup against active fraction]({link(plot, md_dir)})"]
    return lines


def network_section(results: Results) -> list[str]:
    labelled = [([], r) for name in ("network", "network_video") for r in dig(results.data.get(name), "results") or []]
    if not labelled:
        return []
    intro = (
        "The shipped keypoint network (its weights and gate threshold), dense vs skip-convolution, per image; "
        "the CPU-time speedup uses process CPU time, less disturbed by other processes; dense frame to frame: the "
        "dense network's keypoints against its own on the camera's previous image (on a still camera, the most a "
        "skip model that holds back small changes can agree with them)."
    )
    return [intro, "", *table(labelled, [], NETWORK_COLUMNS)]


def pose_section(results: Results, plot: Path | None, md_dir: Path) -> list[str]:
    labelled = [([s, "truth"], results.data[f"pose_{s}"]) for s in POSE_SCENARIOS if f"pose_{s}" in results.data]
    if NETWORK_POSE_JOB in results.data:
        labelled.append((["seated", "network (skip), fp32"], results.data[NETWORK_POSE_JOB]))
    if NETWORK_POSE_BF16_JOB in results.data:
        labelled.append((["seated", "network (skip), bf16 dense passes"], results.data[NETWORK_POSE_BF16_JOB]))
    if not labelled:
        return []
    intro = (
        "`python -m tracking.evaluate` on held-out seeds, with truth keypoints (0.5 px noise) and with the keypoint "
        "network's (skip-convolution; the dense network's run alongside gives the skip-vs-dense head difference; "
        "fp32, and with the whole-image dense passes in bfloat16 as the tracker runs them on a CPU with bfloat16 "
        "instructions): ATE after SE(3) alignment, RPE over 1 s, early exit against always running the full cascade."
    )
    lines = [intro, "", *table(labelled, ["scenario", "keypoints"], POSE_COLUMNS)]
    if plot is not None:
        lines += ["", f"![Head trajectory against truth]({link(plot, md_dir)})"]
    return lines


def bridge_section(data: dict) -> list[str]:
    lines = [
        f"{data.get('rate_hz')} Hz head + hand messages for {data.get('seconds')} s, {data.get('repeats')} "
        f"repeats (medians); slow subscriber: {data.get('slow_subscriber', '—')}.",
        "",
    ]
    lines += table([([name], m) for name, m in data.get("medians", {}).items()], ["configuration"], BRIDGE_COLUMNS)
    if data.get("targets"):
        lines += ["", "The benchmark's own verdicts: " + ", ".join(f"`{k}` {v}" for k, v in data["targets"].items())]
    return lines


def end_to_end_section(data: dict, plot: Path | None, caption: str, md_dir: Path) -> list[str]:
    paced = "paced at the source's real-time rate" if data.get("paced") else "frames as fast as the tracker takes them"
    load = load_average(data.get("load_avg_start"))
    lines = [
        f"The whole tracker (`run_tracker.py`: network, head and hand pose, filtering) on synthetic stereo "
        f"320×240, {data.get('seconds')} s per run, {data.get('repeats', 1)} run(s) per mode alternating skip and "
        f"dense (fps: their median; latency: all their frames), {paced}, {e2e_threads(data)}, load average "
        f"{load} at the start. Latency is from the camera's capture to the head pose published (it goes out "
        'before the hands are collected); "hands" to the hand poses published.',
        "",
    ]
    labelled = [
        ([scenario, mode], row[mode])
        for scenario, row in data.get("scenarios", {}).items()
        for mode in ("skip", "dense")
        if isinstance(row.get(mode), dict)
    ]
    lines += table(labelled, ["scenario", "network"], END_TO_END_COLUMNS)
    if plot is not None:
        lines += ["", f"![End-to-end latency]({link(plot, md_dir)})", "", caption]
    return lines


SECTION_TITLES = {
    "skipconv": "Skip-convolution engine (`benchmarks/skipconv.py`)",
    "network": "Keypoint network, dense vs skip (`benchmarks/network.py`)",
    "pose": "Head and hand pose accuracy (`python -m tracking.evaluate`)",
    "bridge": "ZeroMQ bridge latency (`benchmarks/bridge.py`)",
    "end_to_end": "End to end (`benchmarks/end_to_end.py`)",
}


def section(benchmark: str, results: Results, plots_dir: Path, md_dir: Path) -> list[str]:
    """One benchmark's section: what happened to its runs, its tables, its plot."""
    names = [name for name, of in JOB_BENCHMARK.items() if of == benchmark]
    lines = [f"## {SECTION_TITLES[benchmark]}", "", *run_status_lines(results, names)]
    data = {n: results.data[n] for n in names if n in results.data}
    if benchmark == "skipconv" and data:
        lines += skipconv_section(
            data["skipconv"], plot_speedup(data["skipconv"], plots_dir / "skipconv_speedup.png"), md_dir
        )
    elif benchmark == "network":
        lines += network_section(results)
    elif benchmark == "pose" and data:
        scenarios = [n.removeprefix("pose_") for n in data]
        lines += pose_section(
            results, plot_trajectories(results.folder, scenarios, plots_dir / "trajectory.png"), md_dir
        )
    elif benchmark == "bridge" and data:
        lines += bridge_section(data["bridge"])
    elif benchmark == "end_to_end" and data:
        plot, caption = plot_latency(data["end_to_end"], plots_dir / "end_to_end_latency.png")
        lines += end_to_end_section(data["end_to_end"], plot, caption, md_dir)
    return [*lines, ""]


def header_lines(results: Results, command: str) -> list[str]:
    m = results.machine
    machine = (
        f"{m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')} ({m.get('torch_threads')} threads), "
        f"Python {m.get('python')}, {m.get('platform')}; load average "
        f"{load_average(m.get('load_average'))} at the start"
    )
    if m.get("note"):
        machine += f" ({m['note']})"
    modes = sorted({run.get("mode", "?") for run in results.runs.values()})
    lines = [
        f"Generated by `{command}` on {utc_now()}.",
        "",
        "# SkipTrack results",
        "",
        f"- Machine: {machine}.",
        f"- Commit: {results.commit}.",
        f"- Data: `{shown(results.folder)}`" + (f" (settings: {', '.join(modes)})" if modes else "") + ".",
    ]
    if "quick" in modes:
        lines.append(
            "- **Quick settings**: a few frames per benchmark, for checking a setup; the numbers are not "
            "representative."
        )
    return [*lines, ""]


def headline_lines(rows: list[Row]) -> list[str]:
    passed = sum(r.verdict is Verdict.PASS for r in rows)
    judged = sum(r.verdict in (Verdict.PASS, Verdict.FAIL) for r in rows)
    table = md_table(
        ["benchmark", "measure", "target", "measured", "result", "notes"],
        [[r.benchmark, r.measure, r.target, r.measured, r.verdict.value, r.note] for r in rows],
    )
    intro = (
        f'{passed} of {judged} targets met. Targets are the issues\' "done when" figures (issue numbers in the first '
        "column; end to end: the whole tracker at ≥ 60 Hz with p99 latency ≤ 25 ms)."
    )
    return ["## Targets", "", intro, "", *table, ""]


def provenance_lines(results: Results) -> list[str]:
    """Per job: the command that made its JSON, how it ended, how long it took (the manifest's record)."""
    rows = []
    for name in JOB_NAMES:
        run = results.runs.get(name)
        if run is None and name not in results.data:
            continue
        run = run or {"status": "ok (JSON without a record of its run)"}
        command = f"`{run['command']}`" if "command" in run else "—"
        rows.append([name, command, run.get("status", "?"), fmt(run.get("seconds"), "{:.0f} s"),
                     run.get("finished_utc", "—")])  # fmt: skip
    if not rows:
        return []
    return ["## How these numbers were made", "", *md_table(["job", "command", "status", "took", "finished"], rows), ""]


def write_report(results: Results, benchmarks: tuple[str, ...], results_md: Path, command: str) -> None:
    """Writes RESULTS.md and its plots (into ``results/`` next to it)."""
    plots_dir = results_md.parent / "results"
    lines = header_lines(results, command) + headline_lines(headline(results, benchmarks))
    for benchmark in benchmarks:
        lines += section(benchmark, results, plots_dir, results_md.parent)
    lines += provenance_lines(results)
    results_md.parent.mkdir(parents=True, exist_ok=True)
    results_md.write_text("\n".join(lines).rstrip() + "\n")


# ------------------------------------------------------------------------------------------------ command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings (about 3 minutes), to check a setup")
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated benchmarks to run (with --from-json: to report); of {', '.join(BENCHMARKS)}",
    )
    p.add_argument("--from-json", type=Path, help="build the report from the JSON files in this folder, run nothing")
    p.add_argument(
        "--out-dir", type=Path, help="where the benchmarks write (default out/report, quick: out/report-quick)"
    )
    p.add_argument(
        "--results",
        type=Path,
        help="the report to write; plots go to results/ next to it (default "
        "docs/RESULTS.md, quick: out/report-quick/RESULTS.md)",
    )
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="real video for skipconv and network")
    args = p.parse_args(argv)
    only = tuple(b for b in args.only.split(",") if b)
    unknown = [b for b in only if b not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    args.only = only or BENCHMARKS
    default_out = REPO / ("out/report-quick" if args.quick else "out/report")
    args.out_dir = args.from_json or args.out_dir or default_out
    args.results = args.results or (default_out / "RESULTS.md" if args.quick else REPO / "docs/RESULTS.md")
    return args


def exit_on_sigterm(signum: int, frame: object) -> None:
    """A terminated report unwinds like an interrupted one, so ``wait_for`` kills the benchmark it is waiting on."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/report.py", *(sys.argv[1:] if argv is None else argv)])
    if args.from_json is None:
        settings = QUICK if args.quick else FULL
        jobs = [job for job in jobs_for(args.out_dir, settings, args.video) if job.benchmark in args.only]
        signal.signal(signal.SIGTERM, exit_on_sigterm)
        run_all(jobs, args.out_dir, settings.timeout_s, "quick" if args.quick else "full")
        reported = BENCHMARKS
    else:
        if not args.from_json.is_dir():
            log.error("--from-json %s: no such folder (it should hold the benchmarks' JSON files)", args.from_json)
            return 2
        reported = args.only
    results = load_results(args.out_dir, JOB_NAMES)
    write_report(results, reported, args.results, command)
    log.info("wrote %s", args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
