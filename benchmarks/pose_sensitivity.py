"""How far the head trajectory moves when the keypoints move a little: the yardstick for "skip vs dense".

    python benchmarks/pose_sensitivity.py [--json OUT] [--scenario seated] [--seed 1] [--seconds 20]
                                          [--sigma-px 0.001,0.01] [--every 11] [--precision fp32]

Tracks the dense network's keypoints of a synthetic sequence, then the same keypoints with Gaussian noise of
``--sigma-px`` added to the scene points' positions on every ``--every``-th frame (the skip network's keypoints
differ from the dense ones on about one frame in eleven on `seated`, where the head moves), and the skip network's
own keypoints; with early exit (the tracker's default) and with the full cascade on every frame. Reports the head
position difference to the unperturbed dense run (``tracking.evaluate.pose_difference_mm``: median, p95, max mm).
Prints JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hardware import open_source  # noqa: E402
from tracking.evaluate import emit_json, network_keypoints, pose_difference_mm, run_tracker  # noqa: E402
from tracking.tracker import TrackerConfig  # noqa: E402


def perturbed(keypoints: list[tuple], sigma_px: float, every: int, seed: int) -> list[tuple]:
    """``keypoints`` with N(0, sigma_px) added to the scene points of every ``every``-th frame."""
    rng = np.random.default_rng(seed)
    out = []
    for i, frame_keypoints in enumerate(keypoints):
        if i % every == every // 2:
            frame_keypoints = tuple(
                dataclasses.replace(k, points_px=(k.points_px + rng.normal(0.0, sigma_px, k.points_px.shape)).astype(
                    k.points_px.dtype))
                for k in frame_keypoints
            )  # fmt: skip
        out.append(frame_keypoints)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--scenario", default="seated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sigma-px", default="0.001,0.01", help="comma-separated noise levels (px)")
    parser.add_argument("--every", type=int, default=11, help="perturb one frame in this many")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="fp32")
    args = parser.parse_args(argv)
    with open_source(f"synthetic:{args.scenario}", seed=args.seed, seconds=args.seconds) as source:
        rig, frames = source.rig, list(source)
    dense = network_keypoints(frames, False, args.precision)
    skip = network_keypoints(frames, True, args.precision)
    variants = {"skip network": skip}
    for sigma in (float(s) for s in args.sigma_px.split(",")):
        variants[f"dense + {sigma:g} px on 1 frame in {args.every}"] = perturbed(dense, sigma, args.every, args.seed)
    results: dict[str, dict] = {}
    for mode, gates in (("early_exit", TrackerConfig().gates_path), ("always_full", None)):
        reference = run_tracker(frames, rig, gates, keypoints=dense)
        results[mode] = {}
        for name, keypoints in variants.items():
            difference = pose_difference_mm(reference, run_tracker(frames, rig, gates, keypoints=keypoints))
            results[mode][name] = {k: round(v, 3) if isinstance(v, float) else v for k, v in difference.items()}
            print(mode, name, json.dumps(results[mode][name]), flush=True)
    out = {"benchmark": "pose_sensitivity", "scenario": args.scenario, "seed": args.seed, "seconds": args.seconds,
           "precision": args.precision, "reference": "dense network keypoints", "vs_reference_mm": results}  # fmt: skip
    emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
