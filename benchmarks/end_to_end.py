"""End-to-end: the whole tracker (network, pose, hands, filtering, publishing) on stereo 320x240 scenarios,
skip-convolution network vs the dense baseline (same weights), in one process.

    python benchmarks/end_to_end.py --json OUT [--seconds 5] [--scenarios seated,still_hand,look_around] [--paced]
                                    [--live-render] [--repeats 3] [--precision auto|fp32|bf16]

Without ``--paced`` frames are processed as fast as possible (throughput, fps); with it, in real time at the
scenario's rate (the latency a user sees; frames the tracker is too late for are dropped and counted). The
synthetic frames are rendered before each run starts (``run_tracker.py --prerender``): a headset's cameras deliver
frames without the host's CPU, while rendering one here costs ~6 ms of it; ``--live-render`` renders them in the
loop instead. Prints and writes JSON: per scenario and mode, fps, latency p50/p99 (camera → head pose published;
``hand_latency_ms_*``: → hand poses published, after the hand worker),
MAC ratio, active fraction, head ATE; and the skip/dense fps ratio. Half a second of each mode runs first and is
not recorded (the first run in a process pays the start-up costs). Each scenario runs ``--repeats`` times per
mode, skip and dense alternating (this VM's speed drifts by tens of percent within minutes): fps is the median of
the repeats (``fps_runs`` lists them) and the latency percentiles are over all their frames. Both modes run the
network's whole-image dense passes at ``--precision`` (default auto: bfloat16 on a CPU with its instructions; the
JSON's ``precision`` says which it was).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import run_tracker  # noqa: E402  (the repository root is on the path only from here)


def measure(
    scenario: str, seconds: float, dense: bool, paced: bool, seed: int, prerender: bool = True, precision: str = "auto"
) -> dict:
    """The run's summary plus its per-frame latencies: camera → head pose published (``latencies_ms``, for the
    histogram) and camera → hand poses published (``hand_latencies_ms``)."""
    argv = ["--source", f"synthetic:{scenario}?seed={seed}", "--seconds", str(seconds), "--no-publish",
            "--no-progress", *([] if paced else ["--fast"]), *(["--dense"] if dense else []),
            "--prerender" if prerender else "--no-prerender", "--precision", precision]  # fmt: skip
    stats = run_tracker.RunStats()
    summary = run_tracker.run(run_tracker.build_parser().parse_args(argv), stats)
    return {**summary, "latencies_ms": [round(x, 2) for x in stats.latencies_ms],
            "hand_latencies_ms": [round(x, 2) for x in stats.hand_latencies_ms]}  # fmt: skip


def combine(summaries: list[dict], keep: tuple[str, ...]) -> dict:
    """One row from repeated runs of a mode: ``keep`` (fields that do not combine) from the first run, fps the
    median over the runs, frames and dropped frames summed, latency percentiles over all the runs' frames."""
    row = {k: summaries[0].get(k) for k in keep}
    latencies = [x for s in summaries for x in s["latencies_ms"]]
    hand_latencies = [x for s in summaries for x in s["hand_latencies_ms"]]
    row.update(
        fps=round(float(statistics.median(s["fps"] for s in summaries)), 2),
        fps_runs=[s["fps"] for s in summaries],
        frames=sum(s["frames"] for s in summaries),
        frames_dropped_late=sum(s.get("frames_dropped_late", 0) for s in summaries),
        latency_ms_p50=run_tracker.percentile_ms(latencies, 50),
        latency_ms_p99=run_tracker.percentile_ms(latencies, 99),
        hand_latency_ms_p50=run_tracker.percentile_ms(hand_latencies, 50),
        hand_latency_ms_p99=run_tracker.percentile_ms(hand_latencies, 99),
        latencies_ms=latencies,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--scenarios", default="seated,still_hand,look_around")
    parser.add_argument("--paced", action="store_true", help="real-time pacing (latency as a user sees it)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--live-render", action="store_true", help="render the synthetic frames in the loop")
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario and mode (medians reported)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="the network's whole-image dense passes, both modes (as run_tracker.py)")  # fmt: skip
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    results: dict[str, object] = {"seconds": args.seconds, "paced": args.paced,
                                  "prerendered": not args.live_render,
                                  "load_avg_start": os.getloadavg(), "scenarios": {}}  # fmt: skip
    keep = ("mac_ratio", "active_fraction", "head_ate_m")  # the rest of a row combines the runs (``combine``)
    results["repeats"] = max(1, args.repeats)
    scenarios = args.scenarios.split(",")
    for dense in (False, True):  # warm-up, not recorded: the first run in a process pays one-time start-up costs
        warm = measure(scenarios[0], 0.5, dense, args.paced, args.seed, not args.live_render, args.precision)
    results["precision"] = warm["precision"]  # as resolved on this CPU (auto: bf16 where it has the instructions)
    results["threads"] = torch.get_num_threads()  # as the network provider set them: per camera thread
    results["network_threads"] = "one thread per camera, each with the torch threads above"
    for scenario in scenarios:
        runs: dict[str, list[dict]] = {"skip": [], "dense": []}
        for _ in range(max(1, args.repeats)):
            for mode in runs:
                runs[mode].append(measure(scenario, args.seconds, mode == "dense", args.paced, args.seed,
                                          not args.live_render, args.precision))  # fmt: skip
        row = {mode: combine(summaries, keep) for mode, summaries in runs.items()}
        row["skip_over_dense_fps"] = round(row["skip"]["fps"] / row["dense"]["fps"], 3) if row["dense"]["fps"] else None
        results["scenarios"][scenario] = row
        print(scenario, json.dumps({m: {k: v for k, v in r.items() if not k.endswith("latencies_ms")}
                                        if isinstance(r, dict) else r
                                    for m, r in row.items()}), flush=True)  # fmt: skip
    results["load_avg_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
