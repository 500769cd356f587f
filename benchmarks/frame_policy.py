"""Which camera frame a tracker slower than its camera should take: a simulation of three rules.

    python benchmarks/frame_policy.py [--json OUT] [--frames 20000]

A camera captures a frame every period T (60 Hz); the tracker takes P per frame (log-normal jitter, 15 %). When it
is ready for a frame it applies one rule:

- ``period``: the oldest frame at most one period old (a newer one supersedes it), i.e. work through the backlog;
- ``next``: always wait for the next capture;
- ``quarter``: the newest frame if it was captured at most T/4 ago, else wait for the next capture
  (``run_tracker.MAX_AGE_PERIODS``, what ``run_tracker.py`` does when paced).

For each P it reports poses per second, the median capture → pose latency, and the mean age of the newest pose at
any instant (what an XR runtime extrapolates from: latency of the newest pose plus the time since it came out).
With P < T all rules are the same; with P > T working through the backlog publishes the most poses and the
oldest ones. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

PERIOD_MS = 1000 / 60
RULES = {"period": None, "next": 0.0, "quarter": 0.25}
"""Rule name -> the oldest frame (in periods) it starts instead of waiting for the next; None: up to a period."""


def simulate(rule: str, work_ms: float, frames: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    max_age = RULES[rule]
    t, k = 0.0, 0  # now, and the first frame not yet taken
    published, latencies = [], []
    while len(latencies) < frames:
        newest = int(math.floor(t / PERIOD_MS))
        if newest < k:  # nothing new captured yet: wait for frame k
            newest, t = k, k * PERIOD_MS
        elif max_age is not None and t - newest * PERIOD_MS > max_age * PERIOD_MS:
            newest += 1  # too old: wait for the next capture
            t = newest * PERIOD_MS
        t += work_ms * rng.lognormal(0.0, 0.15)
        published.append(t)
        latencies.append(t - newest * PERIOD_MS)
        k = newest + 1
    out = np.array(published)
    lat = np.array(latencies)
    gaps = np.diff(out)
    newest_age = float(((lat[:-1] * gaps) + gaps**2 / 2).sum() / gaps.sum())
    return {
        "poses_per_s": round(1000 / float(gaps.mean()), 1),
        "latency_ms_p50": round(float(np.median(lat)), 2),
        "newest_pose_age_ms_mean": round(newest_age, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--frames", type=int, default=20000, help="frames simulated per rule and work time")
    args = parser.parse_args()
    results = {
        f"{work:g}": {rule: simulate(rule, work, args.frames) for rule in RULES}
        for work in (13.0, 15.0, 16.5, 17.5, 19.0, 22.0)
    }
    out = {"benchmark": "frame_policy", "period_ms": round(PERIOD_MS, 3), "jitter": 0.15, "work_ms": results}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
