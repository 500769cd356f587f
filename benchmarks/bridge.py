"""Bridge benchmark: publish→receive latency, loss, and tracker-side send cost with a slow subscriber attached.

    python benchmarks/bridge.py --json OUT [--seconds 10] [--rate 1000]

For each run the tracker publishes head + left hand + right hand at ``--rate`` Hz each. A normal subscriber
(separate process, plain SUB socket, no CONFLATE: it must see every message) records publish→receive latency and
gaps in ``msg_seq`` from the documented header, as a C or C# client would, and times the Python decoder on a
sample; a deliberately slow subscriber (separate process) reads one message every 100 ms and never keeps up.
Runs: tcp loopback and ipc with the slow subscriber, and tcp without it as the baseline for the send cost.
Besides wall time per publish call (which on a busy machine includes preemption), each call's voluntary context
switches are counted (getrusage per thread): a call that waited for anything shows one; ``sends_that_waited``
must be 0. Prints JSON (and writes it to OUT).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named bridge.py: keep its own folder off sys.path so that `import bridge` finds the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import zmq  # noqa: E402

from bridge.demo import hand_pose, head_pose  # noqa: E402
from bridge.protocol import POSE_HEADER_STRUCT, POSE_TOPICS, REPEAT, decode, subscription  # noqa: E402
from bridge.publisher import Publisher  # noqa: E402
from bridge.subscriber import Subscriber  # noqa: E402

SLOW_READ_INTERVAL_S = 0.1
POOL = 250  # distinct poses cycled through, so that building poses does not load the publishing loop


def normal_subscriber(endpoint: str, ready, stop, expected_q, results_q) -> None:
    """Receive every message on a plain SUB socket, timestamp it as soon as the receive returns and read the
    documented pose header (what a C or C# client does). Every 50th message of each topic is kept and, after the
    run, fully decoded with bridge.protocol.decode to check the payloads and time the Python decoder; doing that
    during the run would delay the messages queued behind it and charge the decoder to the bridge's latency.
    Reports latencies of measured poses (seq >= 1) and losses."""
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.linger = 0
    sock.rcvhwm = 100_000
    sock.rcvtimeo = 50  # a blocking receive with a timeout: no poll before each message
    for topic in POSE_TOPICS:
        sock.subscribe(subscription(topic))
    sock.connect(endpoint)
    recv, clock, unpack_from = sock.recv, time.monotonic_ns, POSE_HEADER_STRUCT.unpack_from
    latencies, samples, decode_ns = [], [], []
    last_seen: dict[str, int] = {}
    gaps = dict.fromkeys(POSE_TOPICS, 0)
    received = dict.fromkeys(POSE_TOPICS, 0)
    topics = {subscription(t)[:-1]: t for t in POSE_TOPICS}
    idle_since = None
    gc.disable()  # no collector pauses between a message's arrival and its timestamp (nothing here is cyclic)
    while True:
        try:
            frame = recv()
        except zmq.Again:
            if stop.is_set():
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 0.5:
                    break
            continue
        receive_t_ns = clock()
        if ready is not None:
            ready.set()
            ready = None
        cut = frame.index(0)
        header = unpack_from(frame, cut + 1)
        message_flags, msg_seq, seq, publish_t_ns = header[4], header[7], header[8], header[10]
        if message_flags & REPEAT:  # the heartbeat re-sends the last poses once the run is over
            continue
        idle_since = None
        topic = topics[frame[:cut]]
        received[topic] += 1
        if topic in last_seen and msg_seq > last_seen[topic] + 1:
            gaps[topic] += msg_seq - last_seen[topic] - 1
        last_seen[topic] = msg_seq
        if seq >= 1:
            latencies.append(receive_t_ns - publish_t_ns)
        if msg_seq % 50 == 0:
            samples.append(frame)
    gc.enable()
    sock.close()
    context.term()
    for frame in samples:
        t0 = time.perf_counter_ns()
        decode(frame)  # raises ProtocolError if anything arrived corrupted
        decode_ns.append(time.perf_counter_ns() - t0)
    expected_last = expected_q.get()
    results_q.put(
        {
            "latencies_ns": np.array(latencies, dtype=np.int64).tobytes(),
            "decode_ns": decode_ns,
            "gaps": gaps,
            "tail_missing": {t: expected_last[t] - last_seen.get(t, -1) for t in POSE_TOPICS},
            "received": received,
        }
    )


def slow_subscriber(endpoint: str, ready, stop, results_q) -> None:
    """Read one message every 100 ms with a tiny receive queue: never keeps up."""
    count = 0
    with Subscriber(endpoint, topics=POSE_TOPICS, conflate=False, rcvhwm=10) as sub:
        while not stop.is_set():
            if sub.recv(timeout_ms=50) is not None:
                count += 1
                ready.set()
            time.sleep(SLOW_READ_INTERVAL_S)
    results_q.put({"received": count})


def run(endpoint: str, seconds: float, rate: float, with_slow: bool) -> dict:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    expected_q, normal_q, slow_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    heads = [head_pose(i + 1, i * 1_000_000) for i in range(POOL)]
    hands = [(hand_pose("left", h.seq, h.t_ns, h), hand_pose("right", h.seq, h.t_ns, h)) for h in heads]
    warmup = head_pose(0, 0)
    n = int(seconds * rate)
    send_ns = np.zeros((n, 3), dtype=np.int64)
    with Publisher(endpoint) as pub:
        normal_ready, slow_ready = ctx.Event(), ctx.Event()
        procs = [ctx.Process(target=normal_subscriber, args=(pub.endpoint, normal_ready, stop, expected_q, normal_q))]
        if with_slow:
            procs.append(ctx.Process(target=slow_subscriber, args=(pub.endpoint, slow_ready, stop, slow_q)))
        else:
            slow_ready.set()
        for p in procs:
            p.daemon = True  # never outlive the benchmark, whatever fails
            p.start()
        deadline = time.monotonic() + 60
        while not (normal_ready.is_set() and slow_ready.is_set()):
            if time.monotonic() > deadline:
                stop.set()
                raise RuntimeError(f"subscribers did not connect to {pub.endpoint} within 60 s")
            pub.publish_head(warmup)
            time.sleep(0.01)
        time.sleep(0.5)  # let the subscribers drain the warm-up messages
        period_ns = int(1e9 / rate)
        start = time.monotonic_ns() + period_ns
        clock = time.perf_counter_ns
        usage, THREAD = resource.getrusage, resource.RUSAGE_THREAD
        switches = np.zeros((n, 3, 2), dtype=np.int64)
        for i in range(n):
            wait = start + i * period_ns - time.monotonic_ns()
            if wait > 0:
                time.sleep(wait * 1e-9)
            head = heads[i % POOL]
            left, right = hands[i % POOL]
            for j, (publish, pose) in enumerate(((pub.publish_head, head), (pub.publish_hand, left),
                                                 (pub.publish_hand, right))):  # fmt: skip
                before = usage(THREAD)
                t0 = clock()
                publish(pose)
                t1 = clock()
                after = usage(THREAD)
                send_ns[i, j] = t1 - t0
                # A voluntary context switch means the thread waited for something (a lock, a full queue, I/O);
                # an involuntary one means the OS preempted it, which on a busy machine says nothing about us.
                switches[i, j] = (after.ru_nvcsw - before.ru_nvcsw, after.ru_nivcsw - before.ru_nivcsw)
        elapsed_s = (time.monotonic_ns() - start) * 1e-9
        stats = pub.stats
        expected_q.put({t: count - 1 for t, count in pub.messages_per_topic.items()})
        time.sleep(0.3)
        stop.set()
        normal = normal_q.get(timeout=120)
        slow = slow_q.get(timeout=120) if with_slow else None
        for p in procs:
            p.join(timeout=30)
    latencies_us = np.frombuffer(normal["latencies_ns"], dtype=np.int64) / 1e3
    send_us = send_ns / 1e3
    published = 3 * n
    lost = sum(normal["gaps"].values()) + sum(max(0, v) for v in normal["tail_missing"].values())
    return {
        "endpoint": endpoint.split("://")[0],
        "slow_subscriber": with_slow,
        "messages_published": published,
        "achieved_rate_hz": round(n / elapsed_s, 1),
        "received_by_topic": normal["received"],
        "p50_us": round(float(np.percentile(latencies_us, 50)), 1),
        "p99_us": round(float(np.percentile(latencies_us, 99)), 1),
        "p999_us": round(float(np.percentile(latencies_us, 99.9)), 1),
        "max_us": round(float(latencies_us.max()), 1),
        "lost": int(lost),
        "publisher_dropped": stats.dropped,
        "send_us_p50": round(float(np.percentile(send_us, 50)), 1),
        "send_us_p99": round(float(np.percentile(send_us, 99)), 1),
        "send_us_max": round(float(send_us.max()), 1),
        "send_us_head_p99": round(float(np.percentile(send_us[:, 0], 99)), 1),
        "send_us_hand_p99": round(float(np.percentile(send_us[:, 1:], 99)), 1),
        "sends_over_100us": int((send_us > 100).sum()),
        "sends_that_waited": int((switches[..., 0] > 0).sum()),
        "sends_preempted": int((switches[..., 1] > 0).sum()),
        "sends_over_100us_not_preempted": int(((send_us > 100) & (switches[..., 1] == 0)).sum()),
        "slow_subscriber_received": None if slow is None else slow["received"],
        "python_decode_us_p50": round(float(np.median(normal["decode_ns"])) / 1e3, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="head and hand messages per second, each")
    args = parser.parse_args(argv)
    ipc_dir = tempfile.mkdtemp(prefix="sktbench")
    try:
        runs = {
            "tcp": run("tcp://127.0.0.1:*", args.seconds, args.rate, with_slow=True),
            "ipc": run(f"ipc://{ipc_dir}/bridge.sock", args.seconds, args.rate, with_slow=True),
            "tcp_without_slow_subscriber": run("tcp://127.0.0.1:*", args.seconds, args.rate, with_slow=False),
        }
    finally:
        shutil.rmtree(ipc_dir, ignore_errors=True)
    tcp, baseline = runs["tcp"], runs["tcp_without_slow_subscriber"]
    result = {
        "benchmark": "bridge",
        "seconds": args.seconds,
        "rate_hz": args.rate,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "runs": runs,
        "send_p99_ratio_slow_vs_baseline": round(tcp["send_us_p99"] / max(baseline["send_us_p99"], 1e-9), 2),
        "targets": {
            "tcp_p99_le_500us": tcp["p99_us"] <= 500,
            "lost_eq_0": all(r["lost"] == 0 for r in runs.values()),
            "send_max_le_100us_with_slow_subscriber": max(tcp["send_us_max"], runs["ipc"]["send_us_max"]) <= 100,
            "send_never_waited_with_slow_subscriber": tcp["sends_that_waited"] + runs["ipc"]["sends_that_waited"] == 0,
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
