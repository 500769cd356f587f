"""run_tracker.py as a user runs it: a real subprocess, a real ZeroMQ subscriber, real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import hardware
from bridge import Subscriber
from skiptrack_types import HeadPose, SkipTrackError

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_tracker.py"), "--no-progress", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture
def ipc_endpoint():
    directory = tempfile.mkdtemp(prefix="skrt")
    yield f"ipc://{directory}/poses.sock"
    shutil.rmtree(directory, ignore_errors=True)


def test_summary_reports_rates_latency_network_and_accuracy(tmp_path):
    summary_path = tmp_path / "summary.json"
    done = _run("--source", "synthetic:seated?seed=3", "--seconds", "1", "--fast", "--no-publish",
                "--summary-json", str(summary_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_path.read_text())
    for key in ("frames", "fps", "latency_ms_p50", "latency_ms_p99", "hand_latency_ms_p50", "hand_latency_ms_p99",
                "active_fraction", "mac_ratio", "exit_stage_hist", "head_ate_m", "hand_mpjpe_mm"):  # fmt: skip
        assert key in summary, key
    assert 0 < summary["latency_ms_p50"] < summary["hand_latency_ms_p50"]  # the head goes out first
    assert summary["frames"] == 60
    assert summary["keypoints"] == "network"
    assert 0.0 < summary["mac_ratio"] <= 1.0
    assert sum(summary["exit_stage_hist"].values()) == 60
    assert summary["head_ate_m"] < 0.05
    from tracking.network.api import resolve_precision

    assert summary["precision"] == resolve_precision("auto")  # the default: bf16 where the CPU has it


def test_precision_option_reaches_the_network():
    import run_tracker

    for precision in ("fp32", "bf16"):
        args = run_tracker.build_parser().parse_args(["--precision", precision])
        provider = run_tracker.make_provider(args)
        assert provider.precision == precision
        assert all(model.engine.precision == precision for model in provider.models)


def test_truth_keypoints_give_hand_accuracy(tmp_path):
    summary_path = tmp_path / "summary.json"
    done = _run("--keypoints", "truth", "--source", "synthetic:seated", "--seconds", "1", "--fast", "--no-publish",
                "--summary-json", str(summary_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["hand_frames"] > 0
    assert 0 < summary["hand_mpjpe_mm"] < 50


def test_an_independent_subscriber_receives_head_poses(ipc_endpoint):
    with Subscriber(ipc_endpoint, topics=["head"], conflate=False) as sub:
        # --fast: every frame is tracked and published however busy the machine is (paced runs drop late frames).
        proc = subprocess.Popen([sys.executable, str(REPO / "run_tracker.py"), "--no-progress", "--keypoints",
                                 "truth", "--source", "synthetic:seated", "--seconds", "2", "--fast", "--publish",
                                 ipc_endpoint], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        poses = []
        try:
            for _ in range(400):
                pose = sub.recv(timeout_ms=100)
                if isinstance(pose, HeadPose):
                    poses.append(pose)
                if proc.poll() is not None and pose is None:
                    break
        finally:
            proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr.read().decode()
    assert len(poses) >= 30
    seqs = [p.seq for p in poses]
    assert seqs == sorted(seqs)


def test_record_then_replay_gives_the_same_poses(tmp_path):
    recording = tmp_path / "session.mcap"
    live = _run("--keypoints", "truth", "--source", "synthetic:seated", "--seconds", "0.5", "--fast",
                "--no-publish", "--record", str(recording), "--summary-json", str(tmp_path / "live.json"))  # fmt: skip
    assert live.returncode == 0, live.stderr
    replay = _run("--keypoints", "truth", "--source", f"mcap:{recording}", "--fast", "--no-publish",
                  "--summary-json", str(tmp_path / "replay.json"))  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    live_summary = json.loads((tmp_path / "live.json").read_text())
    replay_summary = json.loads((tmp_path / "replay.json").read_text())
    assert replay_summary["frames"] == live_summary["frames"] == 30
    assert replay_summary["head_ate_m"] == pytest.approx(live_summary["head_ate_m"], abs=1e-9)
    recorded = [p for p in hardware.open_source(f"mcap:{recording}", realtime=False).reader.poses()
                if isinstance(p, HeadPose)]  # fmt: skip
    assert len(recorded) == 30


def test_save_video_writes_the_overlay(tmp_path):
    video = tmp_path / "view.avi"
    done = _run("--keypoints", "truth", "--source", "synthetic:still_hand", "--seconds", "0.25", "--fast",
                "--no-publish", "--save-video", str(video))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert video.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nosuch:thing"], "unknown source scheme"),
        (["--source", "synthetic:nosuch"], "scenario"),
        (["--source", "synthetic:seated", "--profile", "x"], "either --source or --profile"),
        (["--publish", "tcp://0.0.0.0:5599", "--seconds", "0.1"], "--curve-keys"),
        (["--calib", "/nonexistent/calib.yaml"], "calib"),
    ],
)
def test_bad_options_give_one_clear_line_and_a_nonzero_exit(args, message):
    done = _run(*args, timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr


def test_prerender_is_refused_for_a_source_that_is_not_rendered(tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240), False)
    for i in range(3):
        writer.write(np.full((240, 320), 40 * i, np.uint8))
    writer.release()
    done = _run("--source", f"video:{path}", "--prerender", "--no-publish", timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "synthetic sources only" in lines[0], done.stderr


def test_prerender_refuses_more_frames_than_memory_allows(monkeypatch):
    import run_tracker

    monkeypatch.setattr(run_tracker, "PRERENDER_MAX_BYTES", 1_000_000)
    args = run_tracker.build_parser().parse_args(["--prerender", "--no-progress"])
    source = hardware.open_source("synthetic:still_hand", seconds=1.0)
    with pytest.raises(SkipTrackError, match="--seconds"):
        run_tracker.prerender(args, source)


def test_synthetic_sources_are_rendered_beforehand_by_default(monkeypatch, caplog):
    """The default run renders the synthetic cameras before tracking starts, unless told not to or unless the
    frames would not fit in memory (then it says so and renders in the loop); other sources are not rendered."""
    import run_tracker

    parse = run_tracker.build_parser().parse_args
    source = hardware.open_source("synthetic:still_hand", seconds=1.0)
    assert run_tracker.wants_prerender(parse([]), source)
    assert not run_tracker.wants_prerender(parse(["--no-prerender"]), source)
    assert not run_tracker.wants_prerender(parse([]), object())  # not a synthetic source
    monkeypatch.setattr(run_tracker, "PRERENDER_MAX_BYTES", 1_000_000)
    assert not run_tracker.wants_prerender(parse([]), source)
    assert "too many to render beforehand" in caplog.text
    with pytest.raises(SkipTrackError, match="--no-prerender"):
        run_tracker.prerender(parse(["--prerender"]), source)


def test_a_prerendered_source_is_paced_like_a_camera_and_dropped_frames_keep_their_imu(monkeypatch):
    """Rendered beforehand, a synthetic source delivers its frames as a camera does. A tracker that takes 1.1 frame
    periods a frame tracks a frame captured at most a quarter period before it is ready, else the next capture:
    about 3 frames of 4 (rendering on demand it would wait for every next capture and track every other frame; with
    frames up to a period old it would track 9 of 10). The IMU samples of the frames it drops reach the next frame
    it tracks: none is lost."""
    import time

    import numpy as np

    import run_tracker
    from tracking.tracker import Tracker

    rate = 10.0
    process = Tracker.process
    imu_seen = []

    def slow_process(self, frame, *args, **kwargs):
        started = time.perf_counter()
        imu_seen.append(frame.imu[:, 0])
        result = process(self, frame, *args, **kwargs)
        time.sleep(max(0.0, 1.1 / rate - (time.perf_counter() - started)))
        return result

    monkeypatch.setattr(Tracker, "process", slow_process)
    uri = f"synthetic:still_hand?rate={rate:g}&seconds=2"
    argv = ["--source", uri, "--keypoints", "truth", "--no-publish", "--no-progress"]
    summary = run_tracker.run(run_tracker.build_parser().parse_args(argv))
    assert summary["frames"] + summary["frames_dropped_late"] == 20
    assert 12 <= summary["frames"] <= 17, summary
    source = hardware.open_source(uri)
    seen = np.concatenate(imu_seen)
    everything = np.concatenate([source.imu(seq) for seq in range(len(source))])[:, 0]
    assert np.array_equal(seen, everything[: len(seen)]) and len(seen) > 0.9 * len(everything)


def test_a_slow_tracker_gets_the_next_captured_frame_and_superseded_frames_are_not_rendered(monkeypatch):
    """Paced synthetic source, a reader that takes 3 frame periods per frame: it is handed only frames due after it
    asks (none rendered for nothing), the frames skipped meanwhile are counted, and every frame is accounted for."""
    import time

    import numpy as np

    import run_tracker

    source = hardware.open_source("synthetic:still_hand", seconds=0.5)
    rendered = []
    frame = source.frame

    def counting_frame(seq):
        rendered.append(seq)
        return frame(seq)

    monkeypatch.setattr(source, "frame", counting_frame)
    pacer = run_tracker.Pacer(True, source.rate_hz)
    skipped = []
    delivered = []
    imu_seen = []
    for item in run_tracker.camera_frames(source, pacer, skipped.append):
        assert pacer.capture_ns(item, may_drop=False) is not None
        delivered.append(item.seq)
        imu_seen.append(item.imu[:, 0])
        time.sleep(3 / source.rate_hz)
    assert rendered == delivered  # nothing rendered only to be dropped
    assert delivered == sorted(set(delivered)) and len(delivered) < len(source) / 2
    assert len(delivered) + sum(skipped) == len(source)
    everything = np.concatenate([source.imu(seq) for seq in range(delivered[-1] + 1)])[:, 0]
    assert np.array_equal(np.concatenate(imu_seen), everything)  # the skipped frames' IMU samples are not lost


def test_frame_rate_counts_tracking_time_only(monkeypatch):
    """fps is frames over the time from the first frame to the last: loading the network, building the tracker
    and --prerender happen before its clock starts."""
    import time

    import run_tracker

    prerender = run_tracker.prerender
    prerendered_at = []

    def timed_prerender(args, source):
        prerender(args, source)
        time.sleep(0.5)  # a slow start-up must not lower the frame rate
        prerendered_at.append(time.perf_counter())

    monkeypatch.setattr(run_tracker, "prerender", timed_prerender)
    argv = "--source synthetic:still_hand --keypoints truth --seconds 0.5 --fast --prerender --no-publish"
    args = run_tracker.build_parser().parse_args([*argv.split(), "--no-progress"])
    stats = run_tracker.RunStats()
    assert stats.fps() == 0.0  # not started
    summary = run_tracker.run(args, stats)
    assert prerendered_at and stats.started > prerendered_at[0]
    assert stats.finished > stats.started
    assert summary["fps"] == round(stats.frames / (stats.finished - stats.started), 2)
