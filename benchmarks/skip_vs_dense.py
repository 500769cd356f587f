"""Skip vs dense network, from the keypoints to the head trajectory, over several seeds.

    python benchmarks/skip_vs_dense.py [--scenario seated] [--seeds 1-6] [--seconds 20] [--json OUT]

Per seed: the shipped network's keypoints of every frame, run by the skip-convolution engine and densely (fp32,
as `python -m tracking.evaluate --vs-dense --precision fp32`); how many frames differ (a scene point of either
result more than ``--tolerance-px`` from every point of the other, on any camera) and how many differ at all (a
point moved by more than 1e-4 px: float rounding moves them by ~1e-5); then the head tracked on each with early
exit, the position difference between the two runs (``tracking.evaluate.pose_difference_mm``: median, p95) and
each run's ATE. Prints one JSON line per seed and the whole result at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hardware import open_source  # noqa: E402
from tracking.evaluate import (  # noqa: E402
    emit_json,
    network_keypoints,
    pose_difference_mm,
    run_metrics,
    run_tracker,
    seeds_from,
)
from tracking.tracker import TrackerConfig  # noqa: E402

MOVED_PX = 1e-4
"""A keypoint moved by more than this differs; float rounding between the two paths moves them by ~1e-5 px."""


def frames_that_differ(skip: list[tuple], dense: list[tuple], tolerance_px: float) -> dict[str, int]:
    """Frames where some scene point of either result has no counterpart within ``tolerance_px`` in the other
    (``beyond_tolerance``), and where some point moved at all (``moved``)."""
    beyond = moved = 0
    for frame_skip, frame_dense in zip(skip, dense, strict=True):
        largest_move, far = 0.0, 0
        for a, b in zip(frame_skip, frame_dense, strict=True):
            for x, y in ((a, b), (b, a)):
                if not len(x) or not len(y):
                    far += len(x) + len(y)
                    continue
                distance = cKDTree(y.points_px).query(x.points_px)[0]
                far += int((distance > tolerance_px).sum())
                near = distance[distance <= tolerance_px]
                largest_move = max(largest_move, float(near.max()) if len(near) else 0.0)
        beyond += far > 0
        moved += far > 0 or largest_move > MOVED_PX
    return {"frames": len(skip), "beyond_tolerance": beyond, "moved": moved}


def measure(scenario: str, seed: int, seconds: float, tolerance_px: float) -> dict:
    with open_source(f"synthetic:{scenario}", seed=seed, seconds=seconds) as source:
        rig, frames = source.rig, list(source)
    dense = network_keypoints(frames, False, "fp32")
    skip = network_keypoints(frames, True, "fp32")
    gates = TrackerConfig().gates_path
    runs = {name: run_tracker(frames, rig, gates, keypoints=k) for name, k in (("dense", dense), ("skip", skip))}
    difference = pose_difference_mm(runs["dense"], runs["skip"])
    rate = source.rate_hz or 60.0
    return {
        "scenario": scenario,
        "seed": seed,
        "keypoint_frames": frames_that_differ(skip, dense, tolerance_px),
        "skip_vs_dense_mm": {k: round(difference[k], 3) for k in ("median", "p95")},
        "ate_mm": {name: round(run_metrics(run, rate)["head_ate_m"] * 1e3, 3) for name, run in runs.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="seated")
    parser.add_argument("--seeds", default="1-6", help="held-out world seeds: 1-6 or 1,3,5")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tolerance-px", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results = []
    for seed in seeds_from(args.seeds):
        results.append(measure(args.scenario, seed, args.seconds, args.tolerance_px))
        print(json.dumps(results[-1]), flush=True)
    medians = [r["skip_vs_dense_mm"]["median"] for r in results]
    out = {
        "benchmark": "skip_vs_dense",
        "scenario": args.scenario,
        "seconds": args.seconds,
        "precision": "fp32",
        "median_of_medians_mm": float(np.median(medians)),
        "max_median_mm": max(medians),
        "seeds": results,
    }
    emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
