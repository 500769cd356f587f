"""The default run as a user makes it: `python run_tracker.py` with no options (the `seated` scenario in real
time, skip-convolution network, early exit, publishing on tcp://127.0.0.1:5556), with an independent subscriber
process counting the head poses it receives.

    python benchmarks/default_run.py --json OUT [--repeats 3] [--endpoint tcp://127.0.0.1:5556]

Each repeat starts a subscriber (its own process, ``bridge.Subscriber`` on the head topic, every message kept),
then `run_tracker.py --no-progress --summary-json FILE` (plus ``--publish`` when ``--endpoint`` is not the
default), and stops the subscriber when the tracker has exited. Reports per run the tracker's summary (frames,
fps, latency p50/p99, frames dropped late, head poses published) and the subscriber's count of fresh head poses
(re-sends for late joiners left out) and their rate; the medians over the runs. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bridge import DEFAULT_ENDPOINT  # noqa: E402

SUMMARY_KEYS = ("frames", "fps", "latency_ms_p50", "latency_ms_p99", "frames_dropped_late", "head_poses_published",
                "head_ate_m", "precision")  # fmt: skip
TRACKER_TIMEOUT_S = 300.0


def count_heads(endpoint: str, ready, stop, results) -> None:
    """Subscriber process: receive head poses until ``stop`` is set; put (count, first, last receive time s)."""
    from bridge import Subscriber

    times = []
    with Subscriber(endpoint, topics=["head"], conflate=False) as sub:
        ready.set()
        while not stop.is_set():
            received = sub.recv_message(timeout_ms=100)
            if received is not None and not received.message.repeat:
                times.append(received.receive_t_ns * 1e-9)
        lost = dict(sub.lost)
    results.put({"received": len(times), "first_s": times[0] if times else None,
                 "last_s": times[-1] if times else None, "lost": lost})  # fmt: skip


def one_run(endpoint: str, workdir: Path, index: int) -> dict:
    ctx = mp.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    subscriber = ctx.Process(target=count_heads, args=(endpoint, ready, stop, results), daemon=True)
    subscriber.start()
    if not ready.wait(60):
        raise RuntimeError("the subscriber did not start within 60 s")
    summary_path = workdir / f"summary_{index}.json"
    argv = [sys.executable, str(REPO / "run_tracker.py"), "--no-progress", "--summary-json", str(summary_path)]
    if endpoint != DEFAULT_ENDPOINT:
        argv += ["--publish", endpoint]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=TRACKER_TIMEOUT_S)
    time.sleep(0.5)  # the last poses are in flight
    stop.set()
    heard = results.get(timeout=60)
    subscriber.join(timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"run_tracker.py exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    summary = json.loads(summary_path.read_text())
    span = (heard["last_s"] - heard["first_s"]) if heard["received"] > 1 else None
    rate = (heard["received"] - 1) / span if span else None
    return {
        **{k: summary.get(k) for k in SUMMARY_KEYS},
        "subscriber_head_poses": heard["received"],
        "subscriber_head_rate_hz": round(rate, 2) if rate else None,
        "subscriber_lost": heard["lost"],
    }


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    return round(float(statistics.median(values)), 3) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="write the results here")
    parser.add_argument("--repeats", type=int, default=3, help="runs (medians reported)")
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="where the tracker publishes (its default)")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="skiptrack-default-run") as tmp:
        for i in range(max(1, args.repeats)):
            runs.append(one_run(args.endpoint, Path(tmp), i))
            print(json.dumps(runs[-1]), flush=True)
    keys = ("fps", "latency_ms_p50", "latency_ms_p99", "subscriber_head_rate_hz", "frames_dropped_late")
    out = {
        "benchmark": "default_run",
        "command": "python run_tracker.py",
        "endpoint": args.endpoint,
        "repeats": len(runs),
        "runs": runs,
        "medians": {k: median(runs, k) for k in keys},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["medians"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
