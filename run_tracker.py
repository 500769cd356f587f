"""SkipTrack: track head and hands from a headset's cameras and publish the poses over ZeroMQ.

With no arguments it runs the built-in default: the synthetic `seated` scenario in real time, the skip-convolution
network with early exit, publishing on tcp://127.0.0.1:5556, with a live status line and a summary at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skiptrack_types import Frame, Gap, SkipTrackError, StereoRig

log = logging.getLogger("run_tracker")

DEFAULT_SOURCE = "synthetic:seated"
PACED_SCHEMES = ("synthetic", "video", "euroc")
"""Sources that would run as fast as the CPU allows unless paced to their timestamps (not live, not replay)."""


def build_parser() -> argparse.ArgumentParser:
    from bridge import DEFAULT_ENDPOINT

    p = argparse.ArgumentParser(prog="run_tracker.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=None, help=f"frame source URI (default {DEFAULT_SOURCE}); schemes: "
                   "synthetic:<scenario>, camera:<profile|index>, video:<file|folder>, euroc:<mav0 folder>, "
                   "mcap:<recording>")  # fmt: skip
    p.add_argument("--profile", help="devkit camera profile (name in hardware/profiles or a YAML path); "
                   "same as --source camera:PROFILE")  # fmt: skip
    p.add_argument("--calib", type=Path, help="calibration file (OpenCV YAML, Kalibr camchain, EuRoC sensor.yaml) "
                   "overriding the source's own")  # fmt: skip
    p.add_argument("--publish", default=DEFAULT_ENDPOINT, help=f"ZeroMQ endpoint to publish on ({DEFAULT_ENDPOINT})")
    p.add_argument("--no-publish", action="store_true", help="do not open a ZeroMQ socket")
    p.add_argument("--curve-keys", type=Path, help="key directory from `python -m bridge.keys create` (needed to "
                   "publish on a non-loopback address)")  # fmt: skip
    p.add_argument("--insecure-bind", action="store_true", help="publish unencrypted on a non-loopback address")
    p.add_argument("--record", type=Path, help="also record frames and poses to this MCAP file")
    p.add_argument("--seconds", type=float, help="stop after this many seconds of source time")
    p.add_argument("--fast", action="store_true", help="no real-time pacing: process frames as fast as possible")
    p.add_argument("--prerender", action=argparse.BooleanOptionalAction, default=None,
                   help="synthetic sources: render every frame before tracking starts (~160 kB a frame), so that the "
                        "tracker has the CPU to itself as with a real camera; the default for synthetic sources "
                        "that fit in memory (--no-prerender renders in the loop, on the tracker's cores)")  # fmt: skip
    p.add_argument("--dense", action="store_true", help="run the network densely (the baseline, same weights)")
    p.add_argument("--threshold", type=float,
                   help="skip-convolution gate threshold ε of the camera layer (default: tuned value; the layers "
                        "past it use it times their tuned multipliers)")  # fmt: skip
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="arithmetic of the network's whole-image dense passes: auto (default) is bf16 on a CPU with "
                        "bfloat16 instructions (about twice as fast), fp32 elsewhere")  # fmt: skip
    p.add_argument("--no-exit", action="store_true", help="always run the full refinement cascade")
    p.add_argument("--keypoints", choices=("network", "truth"), default="network",
                   help="network (default), or truth keypoints of a synthetic source (pose layer alone)")  # fmt: skip
    p.add_argument("--show", action="store_true", help="live OpenCV window with the overlay (needs a GUI build)")
    p.add_argument("--save-video", type=Path, help="write the overlay video to this file (.mp4 or .avi)")
    p.add_argument("--summary-json", type=Path, help="write the summary to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no live status line")
    p.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


# ------------------------------------------------------------------------------------------------ run state


@dataclass
class RunStats:
    """What the run measured, for the status line and the summary."""

    frames: int = 0
    gaps: int = 0
    dropped_late: int = 0
    problems: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # capture -> head pose published
    hand_latencies_ms: list[float] = field(default_factory=list)  # capture -> hand poses published
    active_fractions: list[float] = field(default_factory=list)
    mac_ratios: list[float] = field(default_factory=list)
    exit_stages: Counter = field(default_factory=Counter)
    tracked: int = 0
    est: list[np.ndarray] = field(default_factory=list)
    gt: list[np.ndarray] = field(default_factory=list)
    hand_est: list[np.ndarray] = field(default_factory=list)
    hand_gt: list[np.ndarray] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    heads_published: int = 0
    has_truth: bool = False

    def start(self) -> None:
        """The clock of ``fps`` starts here, once the source, network and tracker are ready: loading them (and
        --prerender) is not tracking time."""
        self.started = time.perf_counter()

    def fps(self) -> float:
        if self.started is None:
            return 0.0
        elapsed = (self.finished or time.perf_counter()) - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0

    def latency_p(self, q: float) -> float:
        """Percentile ``q`` of the camera -> head pose latency (ms)."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def status_line(self, state: str) -> dict[str, str]:
        mix = " ".join(f"{k}:{v}" for k, v in sorted(self.exit_stages.items()))
        return {
            "fps": f"{self.fps():.1f}",
            "head lat p50/p99": f"{self.latency_p(50):.1f}/{self.latency_p(99):.1f} ms",
            "active": f"{np.mean(self.active_fractions[-30:]) if self.active_fractions else 1:.1%}",
            "MACs saved": f"{1 - np.mean(self.mac_ratios[-30:]) if self.mac_ratios else 0:.0%}",
            "exit": mix,
            "state": state,
        }

    def summary(self) -> dict[str, object]:
        from tracking.evaluate import ate, mpjpe_mm

        out: dict[str, object] = {
            "frames": self.frames,
            "gaps": self.gaps,
            "frames_dropped_late": self.dropped_late,
            "frames_with_problems": self.problems,
            "fps": round(self.fps(), 2),
            "latency_ms_p50": round(self.latency_p(50), 3),
            "latency_ms_p99": round(self.latency_p(99), 3),
            "hand_latency_ms_p50": percentile_ms(self.hand_latencies_ms, 50),
            "hand_latency_ms_p99": percentile_ms(self.hand_latencies_ms, 99),
            "active_fraction": round(float(np.mean(self.active_fractions)), 4) if self.active_fractions else None,
            "mac_ratio": round(float(np.mean(self.mac_ratios)), 4) if self.mac_ratios else None,
            "exit_stage_hist": {str(k): v for k, v in sorted(self.exit_stages.items())},
            "tracked_fraction": round(self.tracked / self.frames, 4) if self.frames else 0.0,
            "head_poses_published": self.heads_published,
        }
        if self.has_truth:
            out.update(head_ate_m=None, head_ate_deg=None, hand_mpjpe_mm=None, hand_frames=len(self.hand_est))
        if len(self.est) >= 3:
            ate_m, ate_deg, alignment = ate(np.array(self.est), np.array(self.gt))
            out["head_ate_m"] = round(ate_m, 5)
            out["head_ate_deg"] = round(ate_deg, 4)
            if self.hand_est:
                hand = np.array(self.hand_est) @ alignment.T_gt_est[:3, :3].T + alignment.T_gt_est[:3, 3]
                out["hand_mpjpe_mm"] = round(mpjpe_mm(hand, np.array(self.hand_gt)), 3)
        return out


MAX_AGE_PERIODS = 0.25
"""A paced frame is tracked only if the tracker is ready for it within this many frame periods of its capture; a
live camera's frame older than that is dropped when a newer one is already waiting (``live_capture_ns``)."""


class Pacer:
    """Plays a file or synthetic source at its own rate, as a camera would deliver it, and says when each frame
    was 'captured' on this machine's monotonic clock (the start of its latency).

    A camera does not wait for a slow tracker. When the tracker comes back for a frame more than
    ``MAX_AGE_PERIODS`` of a period after its capture, ``capture_ns`` returns None for it (the caller drops it,
    counts it, and hands its IMU samples on to the next frame) and the tracker takes the next capture instead.
    This keeps the newest published pose as fresh as it can be: working through stale frames would publish
    more poses, each older (simulated for a tracker 5 % slower than the camera: 56 poses/s at p50 latency
    P + 7.4 ms with frames up to a period old, 49 poses/s at P + 1 ms here, and the newest pose 34 against
    30 ms old on average at any instant: benchmarks/frame_policy.py). A tracker faster than the camera never drops
    a frame."""

    def __init__(self, enabled: bool, rate_hz: float | None) -> None:
        self.enabled = enabled
        self.period_ns = int(1e9 / rate_hz) if rate_hz else None
        self._origin: tuple[int, int] | None = None  # (source t_ns, monotonic ns)

    def capture_ns(self, frame: Frame, may_drop: bool = True) -> int | None:
        now = time.monotonic_ns()
        if not self.enabled:
            return now
        if self._origin is None:
            self._origin = (frame.t_ns, now)
        due = self._origin[1] + (frame.t_ns - self._origin[0])
        if due > now:
            time.sleep((due - now) * 1e-9)
            return due
        if may_drop and self.period_ns is not None and now - due > MAX_AGE_PERIODS * self.period_ns:
            return None
        return due

    def next_capture(self, source, seq: int, lead_ns: int = 0) -> int:
        """The first frame from ``seq`` on that is due ``lead_ns`` from now or later, for a source that renders any
        frame on demand: the frames before it were superseded while the tracker was busy."""
        if not self.enabled or self._origin is None:
            return seq
        source_now = self._origin[0] + (time.monotonic_ns() - self._origin[1]) + lead_ns
        while seq + 1 < len(source) and source.t_ns(seq) < source_now:
            seq += 1
        return seq


def live_capture_ns(frame: Frame, source, period_ns: int | None) -> int | None:
    """A live camera's frame (``source.live_clock``): its grab time, where its latency starts; None (drop it, as
    ``Pacer.capture_ns`` does) when it is more than ``MAX_AGE_PERIODS`` periods old and a newer frame is already
    waiting. A tracker slower than the camera then tracks the newest frame instead of working through the queue's
    stale ones, each published pose older than the last, until the queue overflows into gaps that break the
    motion prior. The newest frame is never dropped."""
    now = time.monotonic_ns()
    stale = period_ns is not None and now - frame.t_ns > MAX_AGE_PERIODS * period_ns
    if stale and source.newer_frame_waiting():
        return None
    return min(frame.t_ns, now)


def report_gap(gap: Gap) -> None:
    """Tell the user about a camera that is lost (the tracker waits for it to come back) or back after a while;
    shorter gaps are logged by the capture thread."""
    from hardware.capture import AWAY, LOST

    if gap.reason.startswith(LOST):
        log.warning("%s; waiting for it (Ctrl-C stops; `python -m hardware.list` lists the cameras)", gap.reason)
    elif gap.reason == AWAY:
        log.warning("camera back: %d frame(s) missed while it was away", gap.count)


def camera_frames(source, pacer: Pacer, skipped: Callable[[int], None]):
    """A random-access source's frames (the synthetic world) as a camera delivers them: when the tracker comes back
    late, it gets the next frame the camera captures, and the frames captured meanwhile are counted as dropped
    without being rendered (a camera does not make its reader pay for the frames it superseded). The frame is
    picked far enough ahead that rendering it finishes before it is due, as a camera's frame is ready at its
    capture time: rendering is the camera's work, not latency the tracker adds. ``skipped(n)`` is told of each
    run of superseded frames."""
    seq, render_ns = 0, 0.0
    while seq < len(source):
        due_seq = pacer.next_capture(source, seq, int(render_ns))
        if due_seq > seq:
            skipped(due_seq - seq)
        t0 = time.monotonic_ns()
        frame = source.frame(due_seq)
        render_ns = 0.8 * render_ns + 0.2 * (time.monotonic_ns() - t0) if render_ns else time.monotonic_ns() - t0
        yield with_earlier_imu(frame, [source.imu(s) for s in range(seq, due_seq)])
        seq = due_seq + 1


def with_earlier_imu(frame: Frame, earlier: list[np.ndarray | None]) -> Frame:
    """``frame`` with the IMU samples of the frames dropped before it in front of its own: the gyro is integrated
    from the last tracked frame, and a dropped frame's samples are the only record of that stretch."""
    parts = [imu for imu in (*earlier, frame.imu) if imu is not None and len(imu)]
    if len(parts) < 2:
        return frame
    return dataclasses.replace(frame, imu=np.concatenate(parts))


# ------------------------------------------------------------------------------------------------ setup


def open_input(args: argparse.Namespace):
    """The frame source named by --source/--profile, with --seconds and --fast passed where they apply."""
    from hardware import open_source, parse_uri

    if args.source and args.profile:
        raise SkipTrackError("give either --source or --profile, not both")
    uri = f"camera:{args.profile}" if args.profile else (args.source or DEFAULT_SOURCE)
    scheme, _, _ = parse_uri(uri)
    options: dict[str, object] = {}
    if scheme == "synthetic" and args.seconds is not None:
        options["seconds"] = args.seconds
    if scheme == "mcap":
        options["realtime"] = not args.fast
    source = open_source(uri, **options)
    return uri, scheme, source


def load_rig(args: argparse.Namespace, source) -> StereoRig:
    if args.calib is not None:
        from calibration.files import load_calibration

        rig = load_calibration(args.calib)
        if not isinstance(rig, StereoRig):
            raise SkipTrackError(f"{args.calib} holds a single camera; the tracker needs a stereo calibration")
        return rig
    rig = getattr(source, "rig", None)
    if rig is None:
        raise SkipTrackError("this source has no calibration; pass --calib FILE (see `python -m calibration solve`)")
    return rig


def make_provider(args: argparse.Namespace):
    from tracking.providers import NetworkKeypointProvider

    if args.keypoints == "truth":
        from tracking.tracker import TruthKeypointProvider

        return TruthKeypointProvider()
    return NetworkKeypointProvider(skip=not args.dense, threshold=args.threshold, precision=args.precision)


def check_show_available() -> None:
    """--show needs OpenCV built with a GUI backend and a display; explain how to get one."""
    import cv2

    gui = next((line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")), "")
    if "NONE" in gui.upper() or not gui:
        raise SkipTrackError(
            "--show needs OpenCV with a GUI: `pip uninstall -y opencv-python-headless && pip install "
            "'opencv-python>=4.10,<5'` (it needs the system's libGL: `apt-get install libgl1`), or use "
            "--save-video FILE instead"
        )
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise SkipTrackError("--show needs a display (DISPLAY is not set); use --save-video FILE instead")


# ------------------------------------------------------------------------------------------------ main loop


def run(args: argparse.Namespace, stats: RunStats | None = None) -> dict[str, object]:
    """Track the source in ``args`` and return the summary; ``stats`` (optional) receives the per-frame record."""
    from tracking.tracker import Tracker, TrackerConfig

    if args.show:
        check_show_available()
    uri, scheme, source = open_input(args)
    stats = stats if stats is not None else RunStats()
    with source:
        if wants_prerender(args, source):
            prerender(args, source)
        rig = load_rig(args, source)
        provider = make_provider(args)
        config = TrackerConfig(keypoint_provider=provider, **({"gates_path": None} if args.no_exit else {}))
        pacer = Pacer(scheme in PACED_SCHEMES and not args.fast, getattr(source, "rate_hz", None))
        with Tracker(rig, config) as tracker, _Outputs(args, source, rig) as outputs:
            progress = _progress(args, source)
            stop_t_ns = None
            from hardware.synthetic import SyntheticSource

            # a synthetic source that renders in the loop gives any frame on demand; prerendered, it is a camera
            on_demand = pacer.enabled and isinstance(source, SyntheticSource) and not source.prerendered

            def skipped(n: int) -> None:
                stats.dropped_late += n
                if progress is not None:
                    progress.update(n)

            head_sent_ns: list[int] = []
            dropped_imu: list[np.ndarray | None] = []  # of the frames dropped since the last tracked one

            def head_ready(head) -> None:
                outputs.send_head(head)  # before the hands are collected: the runtime renders from the head
                head_sent_ns.append(time.monotonic_ns())

            stats.start()
            try:
                for item in camera_frames(source, pacer, skipped) if on_demand else source:
                    if isinstance(item, Gap):
                        stats.gaps += 1
                        report_gap(item)
                        tracker.process(item)
                        outputs.gap(item)
                        continue
                    if stop_t_ns is None and args.seconds is not None:
                        stop_t_ns = item.t_ns + int(args.seconds * 1e9)
                    if stop_t_ns is not None and item.t_ns >= stop_t_ns:
                        break
                    if source.live_clock and not pacer.enabled:
                        capture_ns = live_capture_ns(item, source, pacer.period_ns)
                    else:
                        capture_ns = pacer.capture_ns(item, may_drop=not on_demand)
                    if capture_ns is None:
                        stats.dropped_late += 1
                        dropped_imu.append(item.imu)
                        if progress is not None:
                            progress.update(1)
                        continue
                    item = with_earlier_imu(item, dropped_imu)
                    dropped_imu.clear()
                    head_sent_ns.clear()
                    result = tracker.process(item, on_head=head_ready)
                    outputs.send(item, result)
                    done_ns = time.monotonic_ns()
                    stats.latencies_ms.append(((head_sent_ns or [done_ns])[0] - capture_ns) * 1e-6)
                    if result.hands:
                        stats.hand_latencies_ms.append((done_ns - capture_ns) * 1e-6)
                    _account(stats, item, result)
                    outputs.draw(item, result, provider)
                    if progress is not None:
                        progress.update(1)
                        if stats.frames % 10 == 0:
                            progress.set_postfix(stats.status_line(_state(result)), refresh=False)
            except KeyboardInterrupt:
                log.warning("interrupted: stopping cleanly")
            finally:
                stats.finished = time.perf_counter()
                if progress is not None:
                    progress.close()
            stats.heads_published = outputs.heads_published
    summary = {"source": uri, "network": "dense" if args.dense else "skip", "early_exit": not args.no_exit,
               "keypoints": args.keypoints, "precision": getattr(provider, "precision", None),
               **stats.summary()}  # fmt: skip
    return summary


def percentile_ms(values: list[float], q: float) -> float | None:
    """Percentile ``q`` of latencies (ms), rounded to the microsecond; None when there are none."""
    return round(float(np.percentile(values, q)), 3) if values else None


def _state(result) -> str:
    if result.problems:
        return "problem"
    if result.head is None:
        return "initializing"
    return "tracked" if result.head.flags.position_tracked else "predicted"


def _account(stats: RunStats, frame: Frame, result) -> None:
    from tracking.evaluate import OPENXR_TO_MEDIAPIPE

    stats.frames += 1
    if result.problems:
        stats.problems += 1
        return
    stats.exit_stages[result.exit_stage] += 1
    net = result.network_stats
    if "mac_ratio" in net:
        stats.active_fractions.append(float(net["active_fraction"]))
        stats.mac_ratios.append(float(net["mac_ratio"]))
    head = result.head
    if head is None:
        return
    stats.tracked += int(head.flags.position_tracked)
    stats.has_truth = stats.has_truth or frame.truth is not None
    if frame.truth is not None and head.flags.position_tracked:
        stats.est.append(head.T_world_head)
        stats.gt.append(frame.truth.T_world_head)
        for hand in result.hands:
            truth = frame.truth.hand(hand.side)
            if truth is not None and hand.flags.position_tracked:
                stats.hand_est.append(hand.joint_positions[OPENXR_TO_MEDIAPIPE])
                stats.hand_gt.append(truth.joints_world)


PRERENDER_MAX_BYTES = 4_000_000_000
"""The most image memory --prerender may hold (a 60 Hz stereo 320x240 source: about 7 minutes)."""


def wants_prerender(args: argparse.Namespace, source) -> bool:
    """--prerender as given, or by default: a synthetic source whose frames fit in ``PRERENDER_MAX_BYTES``.

    Rendering in the loop takes ~6 ms of the tracker's two cores a frame, which a headset camera does not: the
    default run would then track fewer frames than the camera delivers."""
    from hardware.synthetic import SyntheticSource

    if args.prerender is not None:
        return args.prerender
    if not isinstance(source, SyntheticSource):
        return False
    if _frame_bytes(source) > PRERENDER_MAX_BYTES:
        log.warning(
            "%d frames are too many to render beforehand (%.1f GB): rendering them in the loop, on the tracker's "
            "cores (fewer frames/s than a camera gives; --seconds shortens the run)",
            len(source),
            _frame_bytes(source) / 1e9,
        )
        return False
    return True


def _frame_bytes(source) -> int:
    """The uint8 image memory of all of a synthetic source's frames."""
    return len(source) * sum(camera.width * camera.height for camera in source.rig.cameras)


def prerender(args: argparse.Namespace, source) -> None:
    """--prerender: render a synthetic source's frames before the clock starts."""
    from hardware.synthetic import SyntheticSource

    if not isinstance(source, SyntheticSource):
        raise SkipTrackError("--prerender applies to synthetic sources only (other sources are not rendered)")
    needed = _frame_bytes(source)
    if needed > PRERENDER_MAX_BYTES:
        raise SkipTrackError(
            f"--prerender would hold {needed / 1e9:.1f} GB of frames ({len(source)} frames); give --seconds to "
            f"render at most {PRERENDER_MAX_BYTES / 1e9:.0f} GB, or use --no-prerender"
        )
    if args.no_progress:
        source.prerender()
        return
    from tqdm import tqdm

    with tqdm(total=len(source), unit="frame", desc="rendering", file=sys.stderr) as bar:
        source.prerender(bar.update)


def _progress(args: argparse.Namespace, source):
    if args.no_progress:
        return None
    from tqdm import tqdm

    total = getattr(source, "num_frames", None)
    return tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr)


class _Outputs:
    """Where results go: the ZeroMQ publisher, the recording, the window and the overlay video."""

    def __init__(self, args: argparse.Namespace, source, rig: StereoRig) -> None:
        self.args = args
        self.source = source
        self.rig = rig
        self.publisher = None
        self.recorder = None
        self.writer = None
        self.heads_published = 0
        self._state = None

    def __enter__(self) -> _Outputs:
        if not self.args.no_publish:
            from bridge import Publisher

            self.publisher = Publisher(self.args.publish, curve_keys=self.args.curve_keys,
                                       allow_insecure=self.args.insecure_bind)  # fmt: skip
        if self.args.record is not None:
            from hardware.recording import Recorder

            self.recorder = Recorder(self.args.record, rig=self.rig,
                                     landmarks_world=getattr(self.source, "landmarks_world", None),
                                     rate_hz=getattr(self.source, "rate_hz", None),
                                     source=self.args.source or DEFAULT_SOURCE)  # fmt: skip
        return self

    def send_head(self, head) -> None:
        """Publish the head pose the moment the tracker has it (``Tracker.process``'s ``on_head``)."""
        if self.publisher is not None:
            self.publisher.publish_head(head)
            self.heads_published += 1

    def send(self, frame: Frame, result) -> None:
        """Publish the hands and the tracking state (the head went out with ``send_head``) and record it all."""
        if self.recorder is not None:
            self.recorder.write_frame(frame)
        poses = ([result.head] if result.head is not None else []) + list(result.hands)
        if self.publisher is not None:
            from bridge import TrackerState

            for hand in result.hands:
                self.publisher.publish_hand(hand)
            tracked = result.head is not None and result.head.flags.position_tracked
            state = TrackerState.TRACKING if tracked else TrackerState.LOST
            if state != self._state:
                self.publisher.publish_status(state)
                self._state = state
        if self.recorder is not None:
            for pose in poses:
                self.recorder.write_pose(pose)

    def gap(self, gap: Gap) -> None:
        if self.recorder is not None:
            self.recorder.write_gap(gap)

    def draw(self, frame: Frame, result, provider) -> None:
        if not (self.args.show or self.args.save_video):
            return
        import cv2

        from tracking.overlay import draw_overlay

        image = draw_overlay(frame, result, provider, self.rig)
        if self.args.save_video is not None:
            if self.writer is None:
                fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.args.save_video.suffix == ".mp4" else "MJPG"))
                rate = getattr(self.source, "rate_hz", None) or 30.0
                self.writer = cv2.VideoWriter(str(self.args.save_video), fourcc, rate, image.shape[1::-1])
                if not self.writer.isOpened():
                    raise SkipTrackError(f"cannot write video {self.args.save_video}: check the folder and suffix")
            self.writer.write(image)
        if self.args.show:
            cv2.imshow("SkipTrack", image)
            if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self.publisher is not None:
            self.publisher.close()
        if self.recorder is not None:
            self.recorder.close()
        if self.writer is not None:
            self.writer.release()


def print_summary(summary: dict[str, object]) -> None:
    width = max(len(k) for k in summary)
    print("\nSkipTrack summary")
    for key, value in summary.items():
        print(f"  {key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    try:
        summary = run(args)
    except SkipTrackError as exc:
        print(f"run_tracker.py: error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
