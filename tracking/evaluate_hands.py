"""Hand accuracy on its own: the hand pipeline on a synthetic source's frames, measured in the head frame.

    python -m tracking.evaluate_hands --source synthetic:seated --seed 1 --seed 2 --seconds 20 --json OUT
                                      [--keypoints network|truth] [--cache DIR]

``python -m tracking.evaluate`` reports hand MPJPE in the world, after the head's alignment: it carries the head's
error and runs the whole tracker twice (about 100 s a seed). This runs only what decides the hands, as the
Tracker's hand worker does (pairing the cameras' hands, stereo, the hand model, its filter), on the keypoints of
each frame, and compares with the truth in the head frame: the hands' own error. With ``--cache`` the keypoints
are kept between runs (about 150 MB per 20 s seed: the images travel with the hands for the stereo refinement),
so a sweep over hand settings costs about 12 s a seed instead of 40-70.

Reported per seed and pooled over them: ``mpjpe_mm`` (all 21 joints of every hand the pipeline gives that the
truth has), ``seen_mm`` and ``hidden_mm`` (joints that a camera sees in the truth, and joints that neither does),
``per_joint_mm`` (MediaPipe order), ``depth_bias_seen_mm`` (mean error of the seen joints along the line of sight
from the head, + = too far), ``hand_frames``; per seed and side the learned ``bone_lengths_mm`` and the truth's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skiptrack_types import Frame, InvalidInputError, SkipTrackError, StereoRig
from tracking.evaluate import OPENXR_TO_MEDIAPIPE
from tracking.filter import OneEuroConfig
from tracking.hand_tracker import HandJob, HandTracker
from tracking.pose.hand_model import CHAINS
from tracking.pose.hands import HandConfig, joints_in_head

log = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bumped whenever what a cache file holds changes; older files are recomputed."""


@dataclass(frozen=True, eq=False)
class HandFrame:
    """One frame's input to the hands and its truth: per side in the truth, the joints (21, 3) m in the head frame
    and which of them a camera sees (21,) bool."""

    job: HandJob
    truth: dict[str, tuple[np.ndarray, np.ndarray]]


def hand_frames(
    source_uri: str, seed: int, seconds: float, keypoints: str = "network", cache: Path | None = None
) -> tuple[StereoRig, list[HandFrame]]:
    """The rig and every frame's ``HandFrame`` of a synthetic source, from the cache when it holds them."""
    if not source_uri.startswith("synthetic:"):
        raise InvalidInputError(f"hand accuracy needs the truth of a synthetic: source, got {source_uri!r}")
    path = cache / _cache_name(source_uri, seed, seconds, keypoints) if cache is not None else None
    if path is not None and path.is_file():
        try:
            with path.open("rb") as f:
                version, rig, frames = pickle.load(f)
            if version == CACHE_VERSION:
                return rig, frames
            log.warning("%s is from an older version of this tool: computing the keypoints again", path)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
            log.warning("cannot read the cached keypoints %s (%s): computing them again", path, exc)
    rig, frames = _compute(source_uri, seed, seconds, keypoints)
    if path is not None:
        partial = path.with_suffix(".partial")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("wb") as f:
                pickle.dump((CACHE_VERSION, rig, frames), f, protocol=pickle.HIGHEST_PROTOCOL)
            partial.replace(path)  # never a half-written cache file under the real name
        except OSError as exc:
            if partial.is_file():
                partial.unlink()
            log.warning("cannot write the keypoint cache %s (%s): going on without it", path, exc)
    return rig, frames


def _cache_name(source_uri: str, seed: int, seconds: float, keypoints: str) -> str:
    """A file name that changes with the source, seed, duration, kind of keypoints and, for the network's, its
    weights, gate settings and precision (a change to the renderer or to the decoding needs a fresh cache folder)."""
    from tracking.network.api import GATE_FILE, WEIGHTS_FILE, resolve_precision

    network = b"".join(f.read_bytes() for f in (WEIGHTS_FILE, GATE_FILE)) if keypoints == "network" else b""
    weights = hashlib.sha256(network).hexdigest()[:12]
    precision = resolve_precision("auto") if keypoints == "network" else ""  # what _compute's provider runs
    key = hashlib.sha256(f"{source_uri}|{seed}|{seconds}|{keypoints}|{weights}|{precision}".encode()).hexdigest()[:16]
    return f"hands-{keypoints}-seed{seed}-{key}.pkl"


def _compute(source_uri: str, seed: int, seconds: float, keypoints: str) -> tuple[StereoRig, list[HandFrame]]:
    from hardware import open_source
    from tracking.providers import NetworkKeypointProvider
    from tracking.tracker import TruthKeypointProvider

    provider = NetworkKeypointProvider() if keypoints == "network" else TruthKeypointProvider(seed=seed)
    frames = []
    with open_source(source_uri, seed=seed, seconds=seconds) as source:
        for frame in source:
            if not isinstance(frame, Frame) or frame.truth is None:
                continue
            kps = provider(frame)
            truth = {
                hand.side: (
                    joints_in_head(frame.truth.T_world_head, hand.joints_world),
                    np.logical_or.reduce(hand.visible),
                )
                for hand in frame.truth.hands
            }
            frames.append(HandFrame(HandJob.of(frame.t_ns, kps, frame.images), truth))
        return source.rig, frames


@dataclass(frozen=True, eq=False)
class JointErrors:
    """Per hand frame and joint (frames, 21): the position error (m), its part along the line of sight from the
    head (m, + = too far), and whether a camera sees the joint in the truth."""

    errors: np.ndarray
    depth_errors: np.ndarray
    seen: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[JointErrors]) -> JointErrors:
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("errors", "depth_errors", "seen")))

    def summary(self) -> dict:
        """The figures of the module docstring, mm."""

        def mean_mm(values: np.ndarray) -> float | None:
            return round(float(values.mean()) * 1e3, 2) if values.size else None

        errors, seen = self.errors, self.seen
        return {
            "hand_frames": len(errors),
            "mpjpe_mm": mean_mm(errors),
            "seen_mm": mean_mm(errors[seen]),
            "hidden_mm": mean_mm(errors[~seen]),
            "depth_bias_seen_mm": mean_mm(self.depth_errors[seen]),
            "per_joint_mm": [mean_mm(errors[:, j]) for j in range(21)],
        }


def measure_hands(
    rig: StereoRig,
    frames: list[HandFrame],
    config: HandConfig | None = None,
    filter_config: OneEuroConfig | None = None,
) -> tuple[JointErrors, dict[str, np.ndarray]]:
    """Run a fresh ``HandTracker`` over ``frames``: its joint errors against their truth, and its learned bone
    lengths (5, 3) m per side."""
    from tracking.tracker import TrackerConfig

    defaults = TrackerConfig()
    tracker = HandTracker(rig, config or defaults.hand, filter_config or defaults.hand_filter)
    errors, seen, depth_errors = [], [], []
    for frame in frames:
        for hand in tracker.process(frame.job):
            if hand.side not in frame.truth:
                continue
            truth, visible = frame.truth[hand.side]
            error = hand.positions[OPENXR_TO_MEDIAPIPE] - truth
            sight = truth / np.linalg.norm(truth, axis=1, keepdims=True)
            errors.append(np.linalg.norm(error, axis=1))
            depth_errors.append((error * sight).sum(axis=1))
            seen.append(visible)
    measured = JointErrors(np.array(errors).reshape(-1, 21), np.array(depth_errors).reshape(-1, 21),
                           np.array(seen, bool).reshape(-1, 21))  # fmt: skip
    return measured, tracker.bone_lengths()


def evaluate_hands(
    rig: StereoRig,
    frames: list[HandFrame],
    config: HandConfig | None = None,
    filter_config: OneEuroConfig | None = None,
) -> dict:
    """``measure_hands`` as the figures of the module docstring, with the learned and true bone lengths (mm)."""
    return _report(frames, *measure_hands(rig, frames, config, filter_config))


def _report(frames: list[HandFrame], measured: JointErrors, bone_lengths: dict[str, np.ndarray]) -> dict:
    result = measured.summary()
    result["bone_lengths_mm"] = {
        side: {"learned": np.round(lengths * 1e3, 1).tolist(), "truth": _truth_lengths_mm(frames, side)}
        for side, lengths in bone_lengths.items()
    }
    return result


def _truth_lengths_mm(frames: list[HandFrame], side: str) -> list[list[float]] | None:
    for frame in frames:
        if side in frame.truth:
            joints = frame.truth[side][0]
            return np.round(np.linalg.norm(np.diff(joints[CHAINS], axis=1), axis=2) * 1e3, 1).tolist()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracking.evaluate_hands", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="synthetic:seated", help="a synthetic: source (default seated)")
    parser.add_argument("--seed", type=int, action="append", help="held-out seed; repeat for several (default 1)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--keypoints", choices=("network", "truth"), default="network",
                        help="the shipped network's keypoints (default) or the truth's with 0.5 px noise")  # fmt: skip
    parser.add_argument("--cache", type=Path, default=None, help="keep the keypoints here between runs")
    parser.add_argument("--json", type=Path, required=True, help="where to write the metrics")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    seeds = args.seed or [1]
    per_seed, pooled = {}, []
    try:
        for seed in seeds:
            rig, frames = hand_frames(args.source, seed, args.seconds, args.keypoints, args.cache)
            measured, bone_lengths = measure_hands(rig, frames)
            result = _report(frames, measured, bone_lengths)
            pooled.append(measured)
            per_seed[str(seed)] = result
            print(f"seed {seed}: MPJPE {result['mpjpe_mm']} mm (seen {result['seen_mm']}, hidden "
                  f"{result['hidden_mm']}), {result['hand_frames']} hand frames", flush=True)  # fmt: skip
    except SkipTrackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = JointErrors.concatenate(pooled).summary()
    out = {"source": args.source, "seeds": seeds, "seconds": args.seconds, "keypoints": args.keypoints,
           "frame": "head (truth head pose)", "pooled": total, "per_seed": per_seed}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"pooled: MPJPE {total['mpjpe_mm']} mm over {total['hand_frames']} hand frames -> {args.json}")
    return 0


if __name__ == "__main__":
    # run through the importable module, so that cached frames pickle as tracking.evaluate_hands.HandFrame and not
    # as __main__.HandFrame (which no other program could load)
    from tracking.evaluate_hands import main as module_main

    sys.exit(module_main())
