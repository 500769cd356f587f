"""Bridge benchmark: publish→receive latency, loss, and tracker-side send cost with a slow subscriber attached.

    python benchmarks/bridge.py --json OUT [--seconds 10] [--rate 1000] [--repeats 3]

For each run the tracker publishes head + left hand + right hand at ``--rate`` Hz each. A normal subscriber
(separate process, plain SUB socket, no CONFLATE: it must see every message) receives in a tight blocking
``recv`` loop, timestamps each frame as soon as ``recv`` returns, then decodes it with ``bridge.protocol.decode``
(as every Python client does) and counts gaps in ``msg_seq``; the decoder's time thus delays the messages queued
behind it, as it would in a real client. A deliberately slow subscriber (separate process, ``os.nice(19)``: it
stands for a background consumer such as a logger) reads one message every 100 ms and never keeps up.

Runs: tcp loopback and ipc, each with and without the slow subscriber, ``--repeats`` times; the summary holds the
median of each number over the repeats. Each repeat also measures this machine's floor, ``tcp_raw_zeromq``: the
same frames (bytes from our encoder, publish time patched in), rate, processes and slow subscriber, on plain pyzmq
sockets with none of the bridge's code (no Publisher, no decode: the subscriber reads the publish time at its
offset). On a virtual machine whose host takes its CPUs away for a millisecond or two at a time, which the guest
cannot see, the floor's p99 says how much of the bridge's p99 is the machine; ``machine_stalls`` (before and after
the runs) counts those stalls.

Besides wall time per publish call, each call's context switches are counted (getrusage per thread): a voluntary one
means the call waited for something (a lock, the GIL, I/O) and ``sends_that_waited`` must be 0; an involuntary one
means the OS preempted the thread (on a busy machine this says nothing about the bridge), so
``send_us_max_not_preempted`` is the longest call that was not preempted. ``publish_us_back_to_back`` is the cost of
a publish call made in a tight loop (warm caches), the bridge's own share of a call made after a 1 ms sleep. Prints
JSON (and writes it to OUT).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named bridge.py: keep its own folder off sys.path so that `import bridge` finds the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import zmq  # noqa: E402

from bridge.demo import hand_pose, head_pose  # noqa: E402
from bridge.protocol import (  # noqa: E402
    MESSAGE_FLAGS_OFFSET,
    POSE_TOPICS,
    PUBLISH_T_NS_OFFSET,
    REPEAT,
    Encoder,
    decode,
    subscription,
)
from bridge.publisher import Publisher  # noqa: E402
from bridge.subscriber import Subscriber  # noqa: E402

_PUBLISH_T_NS = struct.Struct("<q")
SLOW_READ_INTERVAL_S = 0.1
SLOW_SUBSCRIBER_NICE = 19
POOL = 250  # distinct poses cycled through, so that building poses does not load the publishing loop
MEDIAN_KEYS = (
    "p50_us", "p99_us", "p999_us", "max_us", "lost", "decode_us_p50", "decode_us_p99", "send_us_p50",
    "send_us_p50_not_preempted", "send_us_p99", "send_us_max", "send_us_max_not_preempted",
    "sends_over_100us_not_preempted", "sends_that_waited", "sends_preempted",
)  # fmt: skip


def _subscriber_socket(context: zmq.Context, endpoint: str, prefixes: list[bytes]) -> zmq.Socket:
    sock = context.socket(zmq.SUB)
    sock.linger = 0
    sock.rcvhwm = 100_000
    sock.rcvtimeo = 50  # a blocking receive with a timeout: no poll before each message
    for prefix in prefixes:
        sock.subscribe(prefix)
    sock.connect(endpoint)
    return sock


def _frames(sock: zmq.Socket, stop, quiet_s: float = 0.5):
    """Yield (frame, receive time ns), the time read as soon as ``recv`` returns, until ``stop`` is set and no
    frame but the heartbeat's re-sends of the last poses (which go on after a run) came for ``quiet_s``."""
    recv, clock = sock.recv, time.monotonic_ns
    quiet_since = None
    while True:
        try:
            frame = recv()
        except zmq.Again:
            if stop.is_set():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > quiet_s:
                    return
            continue
        receive_t_ns = clock()
        if not frame[frame.index(0) + 1 + MESSAGE_FLAGS_OFFSET] & REPEAT:
            quiet_since = None
        yield frame, receive_t_ns


def normal_subscriber(endpoint: str, ready, stop, expected_q, results_q) -> None:
    """Receive every message in a blocking ``recv`` loop, timestamp it as soon as ``recv`` returns, then decode it
    fully. Reports latencies of measured poses (seq >= 1), decode times and losses."""
    context = zmq.Context()
    sock = _subscriber_socket(context, endpoint, [subscription(topic) for topic in POSE_TOPICS])
    clock = time.monotonic_ns
    latencies, decode_ns = [], []
    last_seen: dict[str, int] = {}
    gaps = dict.fromkeys(POSE_TOPICS, 0)
    received = dict.fromkeys(POSE_TOPICS, 0)
    for frame, receive_t_ns in _frames(sock, stop):
        message = decode(frame)  # raises ProtocolError if anything arrived corrupted
        decode_ns.append(clock() - receive_t_ns)
        if ready is not None:
            ready.set()
            ready = None
        if message.repeat:  # the heartbeat re-sends the last poses once the run is over
            continue
        topic, msg_seq = message.topic, message.msg_seq
        received[topic] += 1
        if topic in last_seen and msg_seq > last_seen[topic] + 1:
            gaps[topic] += msg_seq - last_seen[topic] - 1
        last_seen[topic] = msg_seq
        if message.payload.seq >= 1:
            latencies.append(receive_t_ns - message.publish_t_ns)
    sock.close()
    context.term()
    expected_last = expected_q.get()
    results_q.put(
        {
            "latencies_ns": np.array(latencies, dtype=np.int64).tobytes(),
            "decode_ns": np.array(decode_ns, dtype=np.int64).tobytes(),
            "gaps": gaps,
            "tail_missing": {t: expected_last[t] - last_seen.get(t, -1) for t in POSE_TOPICS},
            "received": received,
        }
    )


def raw_subscriber(endpoint: str, ready, stop, results_q) -> None:
    """The floor's subscriber: the same socket and loop as ``normal_subscriber``'s, reading only the publish time."""
    context = zmq.Context()
    sock = _subscriber_socket(context, endpoint, [b""])
    unpack = _PUBLISH_T_NS.unpack_from
    latencies = []
    for frame, receive_t_ns in _frames(sock, stop):
        if ready is not None:
            ready.set()
            ready = None
        publish_t_ns = unpack(frame, frame.index(0) + 1 + PUBLISH_T_NS_OFFSET)[0]
        if publish_t_ns > 0:  # warm-up frames carry 0
            latencies.append(receive_t_ns - publish_t_ns)
    sock.close()
    context.term()
    results_q.put({"latencies_ns": np.array(latencies, dtype=np.int64).tobytes()})


def slow_subscriber(endpoint: str, ready, stop, results_q) -> None:
    """Read one message every 100 ms with a tiny receive queue, at the lowest priority: never keeps up."""
    os.nice(SLOW_SUBSCRIBER_NICE)  # before ZeroMQ starts its I/O thread, which inherits it
    count = 0
    with Subscriber(endpoint, topics=POSE_TOPICS, conflate=False, rcvhwm=10) as sub:
        while not stop.is_set():
            if sub.recv(timeout_ms=50) is not None:
                count += 1
                ready.set()
            time.sleep(SLOW_READ_INTERVAL_S)
    results_q.put({"received": count})


def _percentile(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if len(values) else float("nan")


def run(endpoint: str, seconds: float, rate: float, with_slow: bool) -> dict:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    expected_q, normal_q, slow_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    heads = [head_pose(i + 1, i * 1_000_000) for i in range(POOL)]
    hands = [(hand_pose("left", h.seq, h.t_ns, h), hand_pose("right", h.seq, h.t_ns, h)) for h in heads]
    warmup = head_pose(0, 0)
    n = int(seconds * rate)
    send_ns = np.zeros((n, 3), dtype=np.int64)
    switches = np.zeros((n, 3, 3), dtype=np.int64)  # voluntary, involuntary context switches; page faults
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
                # A voluntary context switch means the thread waited for something (a lock, the GIL, I/O);
                # an involuntary one means the OS preempted it, which on a busy machine says nothing about us.
                switches[i, j] = (after.ru_nvcsw - before.ru_nvcsw, after.ru_nivcsw - before.ru_nivcsw,
                                  after.ru_minflt + after.ru_majflt - before.ru_minflt - before.ru_majflt)  # fmt: skip
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
    decode_us = np.frombuffer(normal["decode_ns"], dtype=np.int64) / 1e3
    send_us = send_ns / 1e3
    not_preempted = switches[..., 1] == 0
    waited = switches[..., 0] > 0
    lost = sum(normal["gaps"].values()) + sum(max(0, v) for v in normal["tail_missing"].values())
    return {
        "endpoint": endpoint.split("://")[0],
        "slow_subscriber": with_slow,
        "messages_published": 3 * n,
        "achieved_rate_hz": round(n / elapsed_s, 1),
        "received_by_topic": normal["received"],
        "p50_us": _percentile(latencies_us, 50),
        "p99_us": _percentile(latencies_us, 99),
        "p999_us": _percentile(latencies_us, 99.9),
        "max_us": round(float(latencies_us.max()), 1),
        "lost": int(lost),
        "publisher_dropped": stats.dropped,
        "decode_us_p50": _percentile(decode_us, 50),
        "decode_us_p99": _percentile(decode_us, 99),
        "send_us_p50": _percentile(send_us, 50),
        "send_us_p50_not_preempted": _percentile(send_us[not_preempted], 50),
        "send_us_p99": _percentile(send_us, 99),
        "send_us_max": round(float(send_us.max()), 1),
        "send_us_head_p50": _percentile(send_us[:, 0], 50),
        "send_us_hand_p50": _percentile(send_us[:, 1:], 50),
        "send_us_max_not_preempted": round(float(send_us[not_preempted].max(initial=0.0)), 1),
        "sends_over_100us": int((send_us > 100).sum()),
        "sends_over_100us_not_preempted": int(((send_us > 100) & not_preempted).sum()),
        "sends_that_waited": int(waited.sum()),
        "waited_sends": [
            {"us": round(float(us), 1), "page_faults": int(faults)}
            for us, faults in zip(send_us[waited], switches[..., 2][waited], strict=True)
        ],
        "sends_preempted": int((~not_preempted).sum()),
        "slow_subscriber_received": None if slow is None else slow["received"],
    }


def run_raw(seconds: float, rate: float) -> dict:
    """The floor: our frames at the same rate over tcp loopback on plain pyzmq sockets, the slow subscriber
    attached; publish→receive percentiles."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    raw_q, slow_q = ctx.Queue(), ctx.Queue()
    encoder, warmup = Encoder(), head_pose(0, 0)
    head = head_pose(1, 0)
    frames = [bytearray(encoder.pose(pose, 0, 0)) for pose in (head, hand_pose("left", 1, 0, head),
                                                                 hand_pose("right", 1, 0, head))]  # fmt: skip
    offsets = [frame.index(0) + 1 + PUBLISH_T_NS_OFFSET for frame in frames]
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.linger = 0
    pub.sndhwm = 1000  # as the Publisher's
    pub.bind("tcp://127.0.0.1:*")
    endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    raw_ready, slow_ready = ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=raw_subscriber, args=(endpoint, raw_ready, stop, raw_q)),
             ctx.Process(target=slow_subscriber, args=(endpoint, slow_ready, stop, slow_q))]  # fmt: skip
    try:
        for p in procs:
            p.daemon = True
            p.start()
        warm = bytes(encoder.pose(warmup, 0, 0))
        deadline = time.monotonic() + 60
        while not (raw_ready.is_set() and slow_ready.is_set()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"subscribers did not connect to {endpoint} within 60 s")
            pub.send(warm, zmq.NOBLOCK)
            time.sleep(0.01)
        time.sleep(0.5)
        period_ns, n = int(1e9 / rate), int(seconds * rate)
        start = time.monotonic_ns() + period_ns
        send, pack, clock = pub.send, _PUBLISH_T_NS.pack_into, time.monotonic_ns
        for i in range(n):
            wait = start + i * period_ns - clock()
            if wait > 0:
                time.sleep(wait * 1e-9)
            for frame, offset in zip(frames, offsets, strict=True):
                pack(frame, offset, clock())
                send(frame, zmq.NOBLOCK)
        time.sleep(0.3)
        stop.set()
        raw = raw_q.get(timeout=120)
        slow_q.get(timeout=120)
        for p in procs:
            p.join(timeout=30)
    finally:
        stop.set()
        pub.close(linger=0)
        context.term()
    latencies_us = np.frombuffer(raw["latencies_ns"], dtype=np.int64) / 1e3
    return {
        "endpoint": "tcp",
        "messages_received": len(latencies_us),
        "p50_us": _percentile(latencies_us, 50),
        "p99_us": _percentile(latencies_us, 99),
        "p999_us": _percentile(latencies_us, 99.9),
        "max_us": round(float(latencies_us.max()), 1),
    }


def machine_stalls(seconds: float = 2.0, gap_us: float = 200.0) -> dict[str, float]:
    """How often a spinning thread loses the CPU on this machine: gaps of more than ``gap_us`` between two reads
    of the clock, per second, the longest, and the share of the gaps' time counted as this thread's CPU time.
    A share near 1 means the guest OS believed the thread ran: the CPU was taken by the virtual machine's host,
    invisible to getrusage (no context switch) and to every scheduler setting inside the guest."""
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    gaps, gap_cpu, longest = 0, 0, 0
    gap_ns = gap_us * 1e3
    end = wall() + seconds * 1e9
    stalled_ns = 0
    previous_wall, previous_cpu = wall(), cpu()
    while previous_wall < end:
        now_wall, now_cpu = wall(), cpu()
        if now_wall - previous_wall > gap_ns:
            gaps += 1
            stalled_ns += now_wall - previous_wall
            gap_cpu += now_cpu - previous_cpu
            longest = max(longest, now_wall - previous_wall)
        previous_wall, previous_cpu = now_wall, now_cpu
    return {
        "gaps_per_s": round(gaps / seconds, 1),
        "longest_us": round(longest / 1e3, 1),
        "counted_as_cpu_time": round(gap_cpu / stalled_ns, 2) if stalled_ns else None,
    }


def hot_publish_us(calls: int = 3000) -> dict[str, float]:
    """Median wall time of one publish call made back to back (warm caches, no subscriber): the bridge's own
    cost, without the cache misses and scheduling that a call after a sleep on a busy machine adds."""
    head, clock = head_pose(1, 0), time.perf_counter_ns
    hand = hand_pose("left", 1, 0, head)
    result = {}
    with Publisher("tcp://127.0.0.1:*") as pub:
        for name, publish, pose in (("head", pub.publish_head, head), ("hand", pub.publish_hand, hand)):
            times = np.zeros(calls, dtype=np.int64)
            for i in range(calls):
                t0 = clock()
                publish(pose)
                times[i] = clock() - t0
            result[name] = round(float(np.median(times)) / 1e3, 1)
    return result


def _medians(repeats: list[dict]) -> dict:
    return {key: round(statistics.median(r[key] for r in repeats), 1) for key in MEDIAN_KEYS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="head and hand messages per second, each")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration; medians are reported")
    args = parser.parse_args(argv)
    ipc_dir = tempfile.mkdtemp(prefix="sktbench")
    configurations = {
        "tcp": ("tcp://127.0.0.1:*", True),
        "ipc": (f"ipc://{ipc_dir}/bridge.sock", True),
        "tcp_without_slow_subscriber": ("tcp://127.0.0.1:*", False),
        "ipc_without_slow_subscriber": (f"ipc://{ipc_dir}/bridge.sock", False),
    }
    runs: dict[str, list[dict]] = {name: [] for name in configurations}
    floor: list[dict] = []
    stalls_before = machine_stalls()
    try:
        for _ in range(args.repeats):
            for name, (endpoint, with_slow) in configurations.items():
                runs[name].append(run(endpoint, args.seconds, args.rate, with_slow))
            floor.append(run_raw(args.seconds, args.rate))
    finally:
        shutil.rmtree(ipc_dir, ignore_errors=True)
    medians = {name: _medians(repeats) for name, repeats in runs.items()}
    medians["tcp_raw_zeromq"] = {
        key: round(statistics.median(r[key] for r in floor), 1) for key in ("p50_us", "p99_us", "p999_us", "max_us")
    }
    with_slow = [medians["tcp"], medians["ipc"]]
    result = {
        "benchmark": "bridge",
        "seconds": args.seconds,
        "rate_hz": args.rate,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "slow_subscriber": f"reads one message every {SLOW_READ_INTERVAL_S} s with rcvhwm 10, at nice "
        f"{SLOW_SUBSCRIBER_NICE} (a background consumer); the normal subscriber and the publisher run at normal "
        "priority",
        "tcp_raw_zeromq": "this machine's floor: the same frames, rate, processes and slow subscriber on plain "
        "pyzmq sockets, none of the bridge's code (see the module docstring)",
        "publish_us_back_to_back": hot_publish_us(),
        "machine_stalls": {"before": stalls_before, "after": machine_stalls()},
        "sends_that_waited_in_all_runs": sum(r["sends_that_waited"] for repeats in runs.values() for r in repeats),
        "medians": medians,
        "targets": {
            "tcp_p99_le_500us": medians["tcp"]["p99_us"] <= 500,
            "lost_eq_0": all(r["lost"] == 0 for repeats in runs.values() for r in repeats),
            "send_us_p50_le_15": all(m["send_us_p50"] <= 15 for m in with_slow),
            "send_never_waited_with_slow_subscriber": all(
                r["sends_that_waited"] == 0 for name in ("tcp", "ipc") for r in runs[name]
            ),
            "send_not_preempted_max_le_100us_with_slow_subscriber": all(
                m["send_us_max_not_preempted"] <= 100 for m in with_slow
            ),
        },
        "runs": {**runs, "tcp_raw_zeromq": floor},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
