"""How fast the synthetic world renders, and how much of each scenario's image changes from frame to frame.

    python benchmarks/synthetic_rate.py --json OUT [--scenario seated] [--seconds S] [--repeats R]

Prints and writes JSON: stereo frames per second (median over repeats; each repeat renders every frame of the
scenario, truth and IMU included) and, per scenario, the median over frames of the fraction of left-camera pixels
changing by more than 8 grey levels between consecutive frames.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hardware.synthetic import SCENARIOS, open_synthetic  # noqa: E402

CHANGE_THRESHOLD = 8  # grey levels


def stereo_rate(scenario: str, seconds: float, size: str, repeats: int) -> dict:
    source = open_synthetic(scenario, seconds=seconds, size=size)
    source.frame(0)  # textures, maps and caches built outside the timing
    rates, cpu_rates = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        count = sum(1 for _ in source)
        rates.append(count / (time.perf_counter() - start))
        cpu_rates.append(count / (time.process_time() - cpu_start))
    return {
        "scenario": scenario,
        "size": size,
        "frames_per_repeat": source.num_frames,
        "repeats": repeats,
        "stereo_fps_median": float(np.median(rates)),
        "stereo_fps_all": [round(r, 1) for r in rates],
        # frames per second of this process's CPU time (all its threads): less sensitive to other processes
        "stereo_fps_per_cpu_second_median": float(np.median(cpu_rates)),
    }


def changed_fraction(scenario: str, seconds: float) -> dict:
    source = open_synthetic(scenario, seconds=seconds)
    fractions = []
    previous = None
    for frame in source:
        left = frame.images[0].astype(np.int16)
        if previous is not None:
            fractions.append(float((np.abs(left - previous) > CHANGE_THRESHOLD).mean()))
        previous = left
    return {
        "median": float(np.median(fractions)),
        "p10": float(np.percentile(fractions, 10)),
        "p90": float(np.percentile(fractions, 90)),
        "frames": len(fractions) + 1,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--scenario", default="seated", choices=sorted(SCENARIOS), help="scenario for the rate")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of each scenario (default 4)")
    parser.add_argument("--size", default="320x240", help="image size for the rate (default 320x240)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    args = parser.parse_args()
    result = {
        "benchmark": "synthetic_rate",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "rate": stereo_rate(args.scenario, args.seconds, args.size, args.repeats),
        "changed_fraction_gt8": {name: changed_fraction(name, args.seconds) for name in SCENARIOS},
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
