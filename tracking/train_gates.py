"""Train the refinement cascade's exit gates on the synthetic world: ``python -m tracking.train_gates``.

FrameExit-style on-the-fly supervision: every frame runs every stage; the label of the gate after stage k is
"the full stage moved the pose by less than τ". Two rounds: the first follows the always-full cascade, the second
commits what the first round's gates choose (so the gates also see the states their own exits lead to), while
still running every stage for labels. ``--keypoints`` picks what the stages see: truth keypoints, the shipped
network's, or both (the default: one gate file for either). Writes tracking/weights/gates.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from skiptrack_types import SkipTrackError
from tracking.pose.geometry import pose_delta
from tracking.refine.cascade import CascadeConfig, RefinementCascade
from tracking.refine.gates import DEFAULT_GATES_PATH, Gate, GateSet
from tracking.tracker import TruthKeypointProvider

TRAIN_SCENARIOS = ("still_hand", "seated", "look_around", "walk", "fast")
TRAIN_SEEDS = (100, 101)
"""Seeds used for training; evaluation uses other (held-out) seeds."""


def collect(
    frames, keypoints: list[tuple], rig, gates: GateSet | None, tau_m: float, tau_deg: float
) -> dict[int, tuple[list[np.ndarray], list[bool]]]:
    """Per gated stage, (feature vectors, labels) from one sequence (``keypoints``: one tuple per frame) run in
    supervise mode."""
    cascade: RefinementCascade | None = None
    data: dict[int, tuple[list[np.ndarray], list[bool]]] = {0: ([], []), 1: ([], [])}
    for frame, frame_keypoints in zip(frames, keypoints, strict=True):
        if cascade is None:
            cascade = RefinementCascade(
                rig, frame_keypoints[0].descriptors.shape[1], CascadeConfig(gates=gates, supervise=True)
            )
        outcome = cascade.step(frame.seq, frame.t_ns, frame_keypoints, frame.imu, frame.images)
        reference = outcome.stage_poses.get(2, outcome.stage_poses.get(3))
        if reference is None or not outcome.features:
            continue
        for stage in (0, 1):
            if stage not in outcome.features:
                continue
            pose = outcome.stage_poses.get(stage)
            label = False
            if pose is not None:
                dt, dr = pose_delta(pose, reference)
                label = dt < tau_m and np.degrees(dr) < tau_deg
            data[stage][0].append(outcome.features[stage])
            data[stage][1].append(label)
    return data


def sequence_keypoints(frames, source: str, seed: int) -> list[tuple]:
    """Keypoints of every frame of one sequence: truth keypoints (0.5 px noise) or the shipped network's (a
    fresh skip-convolution state per sequence)."""
    if source == "truth":
        provider = TruthKeypointProvider(seed=seed)
    else:
        from tracking.providers import NetworkKeypointProvider

        provider = NetworkKeypointProvider(precision="fp32")  # the same gates from any CPU (bf16 or not)
    return [provider(frame) for frame in frames]


def train(
    seconds: float,
    tau_m: float,
    tau_deg: float,
    threshold: float,
    rounds: int,
    keypoint_sources: tuple[str, ...],
    train_threshold: float = 0.7,
) -> tuple[GateSet, dict]:
    """Gates fitted on every training sequence once per keypoint source (the features of both kinds of keypoints,
    so that one gate file serves either). Later rounds commit what the previous round's gates choose at
    ``train_threshold`` (lower than the shipped ``threshold``: more exits, so the gates see more of the states
    exits lead to); the file carries ``threshold``."""
    from hardware import open_source

    gates: GateSet | None = None
    report: dict = {}
    sequences = []
    for scenario in TRAIN_SCENARIOS:
        for seed in TRAIN_SEEDS:
            with open_source(f"synthetic:{scenario}", seconds=seconds, seed=seed) as source:
                rig, frames = source.rig, list(source)
            for keypoint_source in keypoint_sources:
                sequences.append((rig, frames, sequence_keypoints(frames, keypoint_source, seed)))
    for round_ in range(rounds):
        features: dict[int, list[np.ndarray]] = {0: [], 1: []}
        labels: dict[int, list[bool]] = {0: [], 1: []}
        for rig, frames, keypoints in tqdm(sequences, desc=f"round {round_ + 1}/{rounds}"):
            data = collect(frames, keypoints, rig, gates, tau_m, tau_deg)
            for stage in (0, 1):
                features[stage] += data[stage][0]
                labels[stage] += data[stage][1]
        fitted = {}
        for stage in (0, 1):
            x, y = np.array(features[stage]), np.array(labels[stage])
            fitted[stage] = Gate.fit(x, y)
            p = np.array([fitted[stage].probability(v) for v in x])
            exits = p >= threshold
            report[f"round{round_ + 1}_stage{stage}"] = {
                "samples": len(y),
                "positive_rate": float(y.mean()),
                "exit_rate": float(exits.mean()),
                "exit_precision": float(y[exits].mean()) if exits.any() else float("nan"),
            }
        gates = GateSet(fitted, train_threshold, tau_m, tau_deg)
    return GateSet(gates.gates, threshold, tau_m, tau_deg), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracking.train_gates", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per training sequence")
    parser.add_argument("--tau-mm", type=float, default=2.0, help="τ: translation tolerance, mm")
    parser.add_argument("--tau-deg", type=float, default=0.1, help="τ: rotation tolerance, degrees")
    parser.add_argument("--threshold", type=float, default=0.85,
                        help="exit when P(within τ) reaches this (the shipped default)")  # fmt: skip
    parser.add_argument("--train-threshold", type=float, default=0.7,
                        help="the threshold at which round 2 follows round 1's gates")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_GATES_PATH)
    parser.add_argument("--keypoints", choices=("truth", "network", "both"), default="both",
                        help="what the gates learn from: truth keypoints, the shipped network's, or both")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        sources = ("truth", "network") if args.keypoints == "both" else (args.keypoints,)
        gates, report = train(
            args.seconds, args.tau_mm * 1e-3, args.tau_deg, args.threshold, args.rounds, sources, args.train_threshold
        )
    except SkipTrackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    gates.save(args.out)
    print(json.dumps({"out": str(args.out), **report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
