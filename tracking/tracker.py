"""The Tracker: keypoints -> head pose (early-exit cascade) -> hands -> filtering -> poses, one call per frame.

```python
with Tracker(source.rig) as tracker:
    for frame in source:
        result = tracker.process(frame)   # never raises on a bad frame; result.problems says what was wrong
```
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from skiptrack_types import Frame, Gap, HandPose, HeadPose, InvalidInputError, SkipTrackError, StereoRig, TrackingFlags
from tracking.filter import OneEuroConfig, PoseFilter, predict_pose
from tracking.hand_tracker import HandJob, HandTracker, HeadFrameHand
from tracking.hand_worker import HandWorker, HandWorkerError
from tracking.heap import keep_freed_memory
from tracking.keypoints import HandKeypoints, Keypoints, landmark_descriptors, truth_keypoints
from tracking.pose.geometry import transform_points
from tracking.pose.hands import HandConfig, openxr_flags
from tracking.refine.cascade import CascadeConfig, ExitStage, RefinementCascade
from tracking.refine.gates import DEFAULT_GATES_PATH, GateSet

log = logging.getLogger(__name__)

KeypointProvider = Callable[..., tuple[Keypoints, ...]]
"""``provider(frame)`` -> one ``Keypoints`` per camera; a provider whose signature has ``on_hands`` is called as
``provider(frame, on_hands=callback)`` and calls it with each camera's hands as soon as it has them (see
``tracking.providers.NetworkKeypointProvider``)."""


class TruthKeypointProvider:
    """Stand-in for the keypoint network: the synthetic frame's truth landmarks and hand joints with
    ``pixel_noise`` px of detector noise. Like a detector, it finds nothing in a flat image patch (a covered or
    black camera), judged by the grey-level standard deviation of a 5x5 patch around each point: at least
    ``min_patch_std`` (4 grey levels: above the sensor noise of a covered lens, below the texture of the dark
    scenario's landmarks)."""

    def __init__(self, pixel_noise: float = 0.5, seed: int = 0, min_patch_std: float = 4.0) -> None:
        self.pixel_noise = pixel_noise
        self.min_patch_std = min_patch_std
        self._rng = np.random.default_rng(seed)
        self._descriptors: np.ndarray | None = None

    def __call__(self, frame: Frame) -> tuple[Keypoints, ...]:
        if frame.truth is None or not frame.truth.landmarks_px:
            raise InvalidInputError("the truth keypoint provider needs synthetic frames with landmark truth")
        n = len(frame.truth.landmarks_px[0])
        if self._descriptors is None or len(self._descriptors) != n:
            self._descriptors = landmark_descriptors(n)
        out = []
        for cam, image in enumerate(frame.images):
            kp = truth_keypoints(frame, cam, self._descriptors, self.pixel_noise, self._rng)
            out.append(self._drop_flat(kp, image))
        return tuple(out)

    def _drop_flat(self, kp: Keypoints, image: np.ndarray) -> Keypoints:
        if image.std() >= 4 * self.min_patch_std or len(kp) == 0:
            return kp
        h, w = image.shape
        xy = np.clip(np.round(kp.points_px).astype(int), 2, (w - 3, h - 3))
        offsets = np.arange(-2, 3)
        patches = image[xy[:, 1, None, None] + offsets[None, :, None], xy[:, 0, None, None] + offsets[None, None, :]]
        keep = patches.reshape(len(kp), -1).std(axis=1) >= self.min_patch_std
        hands = tuple(h for h in kp.hands if image.std() >= self.min_patch_std)
        return Keypoints(kp.points_px[keep], kp.scores[keep], kp.descriptors[keep], hands)


@dataclass(frozen=True)
class TrackerConfig:
    """``gates_path`` None = always run the full cascade (no early exit); ``keypoint_provider`` None = truth
    keypoints of synthetic frames; ``stale_s``: a pose predicted further than this is no longer "tracked";
    ``hand_process``: fit the hands in a second process while this one tracks the head (same results, one core
    more; None = when the machine has at least two CPUs). ``hand_filter``: the hand joints' One-Euro filter in the
    head frame; β 40 (the cutoff rises fast with speed: a reaching hand is not dragged) was chosen on hand MPJPE,
    seated training seeds 100 and 101, network keypoints, head frame: β 20 8.22 mm, 40 8.08, 80 8.04 (held-out
    seeds 1 and 2: 8.63 -> 8.48 at 40); at rest the cutoff, and so the jitter, is the same."""

    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    gates_path: Path | None = DEFAULT_GATES_PATH
    exit_threshold: float | None = None
    keypoint_provider: KeypointProvider | None = None
    head_filter: OneEuroConfig = field(default_factory=OneEuroConfig)
    hand_filter: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=1.0, beta=40.0, d_cutoff=1.0))
    hand: HandConfig = field(default_factory=HandConfig)
    stale_s: float = 0.05
    hand_process: bool | None = None


@dataclass(frozen=True, eq=False)
class TrackResult:
    """One frame's output. ``head`` is None until the tracker has ever localized; ``problems`` lists what was wrong
    with the input (empty for a good frame). ``refine_cost`` is the refinement compute spent (units, see
    tracking.pose.head), ``stage_costs`` per stage run, ``timings_ms`` wall time per pipeline step."""

    seq: int
    t_ns: int
    head: HeadPose | None
    hands: list[HandPose]
    exit_stage: int
    stage_costs: dict[int, int]
    refine_cost: int
    timings_ms: dict[str, float]
    network_stats: dict[str, float | str]
    problems: list[str] = field(default_factory=list)
    relocalized: bool = False
    raw_T_world_head: np.ndarray | None = None


class Tracker:
    """Head and hand tracking for one stereo rig; a context manager, one ``process`` call per frame."""

    def __init__(self, rig: StereoRig, config: TrackerConfig | None = None) -> None:
        if not isinstance(rig, StereoRig):
            raise InvalidInputError(f"Tracker needs a StereoRig (e.g. source.rig), got {type(rig).__name__}")
        self.rig = rig
        self.config = config or TrackerConfig()
        keep_freed_memory()  # each frame allocates the same arrays: keep them mapped (tracking.heap)
        gates = GateSet.load(self.config.gates_path) if self.config.gates_path is not None else None
        self._cascade_config = replace(self.config.cascade, gates=gates, threshold=self.config.exit_threshold)
        self._provider = self.config.keypoint_provider or TruthKeypointProvider()
        self._early_hands = _takes_hands_callback(self._provider)
        self._cascade: RefinementCascade | None = None
        self._head_filter = PoseFilter(self.config.head_filter)
        self._hand_tracker = HandTracker(rig, self.config.hand, self.config.hand_filter)
        hand_process = self.config.hand_process
        if hand_process is None:
            hand_process = (os.cpu_count() or 1) >= 2
        self._hand_worker: HandWorker | None = None
        if hand_process:
            try:
                self._hand_worker = HandWorker(rig, self.config.hand, self.config.hand_filter)
            except HandWorkerError as exc:
                log.warning("hands: %s; fitting them in this process", exc)
        self._hand_prev: dict[str, tuple[int, np.ndarray]] = {}
        self._last_t_ns: int | None = None
        self._last_head: HeadPose | None = None
        self._last_hands: list[HandPose] = []

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the hand worker process, if any."""
        if self._hand_worker is not None:
            self._hand_worker.close()
            self._hand_worker = None

    # ------------------------------------------------------------------------------------------- public

    def process(
        self,
        frame: Frame | Gap,
        keypoints: tuple[Keypoints, ...] | None = None,
        on_head: Callable[[HeadPose], None] | None = None,
    ) -> TrackResult:
        """Track one frame (or note a Gap). ``keypoints``: one Keypoints per camera, or None to ask the provider.

        ``on_head`` is called with the frame's head pose as soon as it is ready, before the hands are collected
        from the hand worker: an XR runtime needs the head first (it renders from it), and publishing it then
        saves it the hands' wait (p50 3.6 ms, p99 12 ms on 2 cores). Not called when there is no head pose."""
        if isinstance(frame, Gap):
            self._break(reset_filters=True)
            return self._failed(frame.first_seq, frame.t_ns, [f"gap: {frame.count} frames lost ({frame.reason})"])
        problem = self._check(frame)
        if problem:
            seq = getattr(frame, "seq", -1)
            t_ns = getattr(frame, "t_ns", self._last_t_ns or 0)
            return self._failed(seq if isinstance(seq, int) else -1, t_ns if isinstance(t_ns, int) else 0, [problem])
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        hand_jobs: list[HandJob] = []

        def start_hands(hands: list[tuple[HandKeypoints, ...]]) -> None:
            if not hand_jobs:  # once per frame, whatever the provider does
                hand_jobs.append(HandJob.of_hands(frame.t_ns, hands, frame.images))
                self._start_hands(hand_jobs[0])  # fitted meanwhile by the hand worker, when there is one

        if keypoints is None:
            try:
                keypoints = self._provider(frame, on_hands=start_hands) if self._early_hands else self._provider(frame)
            except SkipTrackError as exc:
                return self._failed(frame.seq, frame.t_ns, [f"keypoints: {exc}"])
        if len(keypoints) != 2:
            return self._failed(frame.seq, frame.t_ns, [f"need keypoints for 2 cameras, got {len(keypoints)}"])
        t1 = time.perf_counter()
        timings["keypoints_ms"] = (t1 - t0) * 1e3
        if not hand_jobs:
            start_hands([kp.hands for kp in keypoints])
        hand_job = hand_jobs[0]
        if self._cascade is None:
            self._cascade = RefinementCascade(self.rig, keypoints[0].descriptors.shape[1], self._cascade_config)
        outcome = self._cascade.step(frame.seq, frame.t_ns, keypoints, frame.imu, frame.images)
        t2 = time.perf_counter()
        timings["head_ms"] = (t2 - t1) * 1e3
        self._last_t_ns = frame.t_ns
        head = None
        network_stats = self._network_stats()
        if self._cascade.initialized:
            p, R = self._head_filter(frame.t_ns, outcome.T_world_head[:3, 3], outcome.T_world_head[:3, :3])
            q = Rotation.from_matrix(R).as_quat()
            if not outcome.flags.position_valid:
                p = self._last_head.position if self._last_head is not None else p
            head = HeadPose(
                frame.seq,
                frame.t_ns,
                p,
                q,
                outcome.linear_velocity,
                outcome.angular_velocity,
                outcome.flags,
                exit_stage=int(outcome.exit_stage),
                active_fraction=float(network_stats.get("active_fraction", 1.0)),
            )
        t3 = time.perf_counter()
        timings["filter_ms"] = (t3 - t2) * 1e3
        if on_head is not None and head is not None:
            on_head(head)
            t3 = time.perf_counter()
        hands_head, timings["hands_fit_ms"] = self._finish_hands(hand_job)
        hands = self._world_hands(frame, hands_head, head) if head is not None else []
        timings["hands_ms"] = (time.perf_counter() - t3) * 1e3
        self._last_head, self._last_hands = head, hands
        return TrackResult(
            frame.seq,
            frame.t_ns,
            head,
            hands,
            int(outcome.exit_stage),
            outcome.stage_costs,
            outcome.spent_cost,
            timings,
            network_stats,
            [],
            outcome.relocalized,
            outcome.T_world_head,
        )

    def predict(self, display_t_ns: int) -> tuple[HeadPose | None, list[HandPose]]:
        """The latest head and hands extrapolated to ``display_t_ns`` (constant velocity + angular velocity);
        flagged predicted (valid, not tracked) when the horizon exceeds ``stale_s``."""
        head = self._last_head
        if head is None:
            return None, []
        horizon = (display_t_ns - head.t_ns) * 1e-9
        stale = horizon > self.config.stale_s
        p, q = predict_pose(head.position, head.orientation, head.linear_velocity, head.angular_velocity, horizon)
        flags = _demote(head.flags) if stale else head.flags
        new_head = HeadPose(
            head.seq,
            head.t_ns,
            p,
            q,
            head.linear_velocity,
            head.angular_velocity,
            flags,
            display_t_ns,
            head.exit_stage,
            head.active_fraction,
        )
        hands = []
        for hand in self._last_hands:
            shift = hand.linear_velocity * horizon
            hands.append(
                HandPose(
                    hand.seq,
                    hand.t_ns,
                    hand.side,
                    hand.joint_positions + shift,
                    hand.joint_orientations,
                    hand.joint_radii,
                    hand.joint_valid,
                    hand.joint_tracked & np.bool_(not stale),
                    hand.linear_velocity,
                    hand.angular_velocity,
                    _demote(hand.flags) if stale else hand.flags,
                    display_t_ns,
                    hand.exit_stage,
                )
            )
        return new_head, hands

    # ------------------------------------------------------------------------------------------- internals

    def _check(self, frame: object) -> str | None:
        if not isinstance(frame, Frame):
            return f"not a Frame or Gap: {type(frame).__name__}"
        if len(frame.images) != 2:
            return f"need 2 camera images, got {len(frame.images)}"
        if frame.size != self.rig.cam0.size:
            return f"image size {frame.size} does not match the rig's {self.rig.cam0.size}"
        for i, image in enumerate(frame.images):
            if image.dtype != np.uint8:
                return f"image {i} has dtype {image.dtype}, need uint8"
        if self._last_t_ns is not None and frame.t_ns <= self._last_t_ns:
            return f"time went backwards: frame at {frame.t_ns} ns after {self._last_t_ns} ns; frame skipped"
        if frame.imu is not None and not np.isfinite(frame.imu).all():
            return "IMU rows contain NaN or infinite values"
        return None

    def _network_stats(self) -> dict[str, float | str]:
        """The keypoint provider's counts for this frame (a network reports MACs and active fraction)."""
        stats = getattr(self._provider, "stats", None)
        return dict(stats()) if callable(stats) else {"source": "truth", "active_fraction": 1.0}

    def _break(self, reset_filters: bool) -> None:
        if self._cascade is not None:
            self._cascade.break_motion()
        reset = getattr(self._provider, "reset", None)
        if callable(reset):
            reset()  # a discontinuity: the network's next frame is a key frame
        if reset_filters:
            self._head_filter.reset()
            self._hand_prev.clear()
            self._hand_tracker.reset()
            if self._hand_worker is not None:
                try:
                    self._hand_worker.reset()
                except HandWorkerError as exc:
                    self._lose_hand_worker(exc)

    def _failed(self, seq: int, t_ns: int, problems: list[str]) -> TrackResult:
        log.warning("frame %s: %s", seq, "; ".join(problems))
        head = self._last_head
        if head is not None:
            head = HeadPose(
                head.seq,
                head.t_ns,
                head.position,
                head.orientation,
                np.zeros(3),
                np.zeros(3),
                _demote(head.flags),
                head.display_t_ns,
                head.exit_stage,
            )
        return TrackResult(seq, t_ns, head, [], int(ExitStage.PREDICT), {}, 0, {}, {}, problems)

    def _start_hands(self, job: HandJob) -> None:
        if self._hand_worker is not None:
            try:
                self._hand_worker.submit(job)
            except HandWorkerError as exc:
                self._lose_hand_worker(exc)

    def _finish_hands(self, job: HandJob) -> tuple[list[HeadFrameHand], float]:
        """The job's fitted hands (from the worker, or fitted here now) and the fit's compute time (ms)."""
        if self._hand_worker is not None:
            try:
                return self._hand_worker.result()
            except HandWorkerError as exc:
                self._lose_hand_worker(exc)
        t0 = time.perf_counter()
        hands = self._hand_tracker.process(job)
        return hands, (time.perf_counter() - t0) * 1e3

    def _lose_hand_worker(self, exc: HandWorkerError) -> None:
        log.warning("hands: %s; fitting them in this process from now on (the hands start afresh)", exc)
        self._hand_worker.close()
        self._hand_worker = None

    def _world_hands(self, frame: Frame, fitted: list[HeadFrameHand], head: HeadPose) -> list[HandPose]:
        """The head-frame hands as world ``HandPose``s, with velocity and flags."""
        T_world_head = head.T_world_head
        R_world_head = Rotation.from_matrix(T_world_head[:3, :3])
        out = []
        for hand in fitted:
            positions = transform_points(T_world_head, hand.positions)
            orientations = (R_world_head * Rotation.from_quat(hand.orientations)).as_quat()
            valid, tracked = openxr_flags(np.ones(21, bool), hand.observed)
            velocity = np.zeros(3)
            prev = self._hand_prev.get(hand.side)
            if prev is not None and frame.t_ns > prev[0]:
                velocity = (positions[1] - prev[1]) / ((frame.t_ns - prev[0]) * 1e-9)
            self._hand_prev[hand.side] = (frame.t_ns, positions[1].copy())
            flags = TrackingFlags.tracked() if tracked[1] else TrackingFlags.predicted()
            if not head.flags.position_tracked:
                flags = _demote(flags)
                tracked = np.zeros(26, bool)
            out.append(
                HandPose(
                    frame.seq,
                    frame.t_ns,
                    hand.side,
                    positions,
                    orientations,
                    hand.radii,
                    valid,
                    tracked,
                    velocity,
                    flags=flags,
                    exit_stage=int(ExitStage.FULL),
                )
            )
        seen = {hand.side for hand in fitted}
        for side in [s for s in self._hand_prev if s not in seen]:
            self._hand_prev.pop(side)
        return out


def _takes_hands_callback(provider: KeypointProvider) -> bool:
    """Whether ``provider(frame, on_hands=...)`` is accepted: a provider that calls ``on_hands`` with each camera's
    hands before it decodes the scene points lets the hand worker start that much earlier."""
    try:
        return "on_hands" in inspect.signature(provider).parameters
    except (TypeError, ValueError):  # a callable without a signature (a builtin): frame only
        return False


def _demote(flags: TrackingFlags) -> TrackingFlags:
    """The flags of a pose whose data went stale: valid stays valid, nothing is tracked."""
    return TrackingFlags(flags.orientation_valid, False, flags.position_valid, False)
