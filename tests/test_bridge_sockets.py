"""Real PUB/SUB sockets: delivery over tcp loopback and ipc, conflation, late joiners, slow subscribers, CURVE,
the bind policy, and the command lines."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zmq

from bridge.curve import create_keys, load_server_keys
from bridge.demo import hand_pose, head_pose
from bridge.errors import BridgeError, InsecureBindError
from bridge.keys import main as keys_main
from bridge.protocol import Message, encode
from bridge.publisher import Publisher, is_local_endpoint
from bridge.status import Status, TrackerState
from bridge.subscriber import Subscriber
from skiptrack_types import HandPose, HeadPose, InvalidInputError, TrackingFlags

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ipc_endpoint() -> Iterator[str]:
    # ipc paths are limited to ~100 characters, so use a short temporary directory rather than tmp_path.
    directory = tempfile.mkdtemp(prefix="skt")
    yield f"ipc://{directory}/bridge.sock"
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    with Publisher("tcp://127.0.0.1:*", heartbeat_s=0.25) as pub:
        yield pub


@pytest.fixture(scope="module")
def keys() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="sktkeys"))
    create_keys(directory, clients=("viewer",))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _connect(sub: Subscriber, send: Callable[[], object], attempts: int = 100) -> object:
    """Send until the subscriber has received one message (PUB/SUB subscriptions take a moment to arrive);
    return that payload."""
    for _ in range(attempts):
        send()
        payload = sub.recv(timeout_ms=50)
        if payload is not None and not isinstance(payload, Status):
            return payload
    raise AssertionError(f"subscriber never received anything from {sub.endpoint}")


def _drain(sub: Subscriber) -> None:
    while sub.recv(timeout_ms=100) is not None:
        pass


def _fresh_poses(sub: Subscriber, count: int, timeout_s: float = 10.0) -> list[HeadPose | HandPose]:
    """The next ``count`` poses, skipping heartbeat repeats and status messages."""
    poses = []
    deadline = time.monotonic() + timeout_s
    while len(poses) < count and time.monotonic() < deadline:
        received = sub.recv_message(timeout_ms=200)
        if received is not None and not received.message.repeat and not isinstance(received.payload, Status):
            poses.append(received.payload)
    return poses


def _now() -> int:
    return time.monotonic_ns()


# --------------------------------------------------------------------------------------------------- delivery


def _check_ordered_delivery(pub: Publisher, sub: Subscriber) -> None:
    _connect(sub, lambda: pub.publish_head(head_pose(0, _now())))
    _drain(sub)
    for seq in range(1, 21):
        t = _now()
        pub.publish_head(head_pose(seq, t))
        pub.publish_hand(hand_pose("left", seq, t))
        pub.publish_hand(hand_pose("right", seq, t))
    poses = [(type(p).__name__, getattr(p, "side", None), p.seq) for p in _fresh_poses(sub, 60)]
    expected = [(kind, side, seq) for seq in range(1, 21) for kind, side in
                (("HeadPose", None), ("HandPose", "left"), ("HandPose", "right"))]  # fmt: skip
    assert poses == expected
    assert sub.lost == {"head": 0, "hand/left": 0, "hand/right": 0}


def test_pub_sub_over_tcp_loopback_delivers_every_pose_in_order(publisher):
    with Subscriber(publisher.endpoint, conflate=False) as sub:
        _check_ordered_delivery(publisher, sub)


def test_pub_sub_over_ipc_delivers_every_pose_in_order(ipc_endpoint):
    with Publisher(ipc_endpoint) as pub, Subscriber(ipc_endpoint, conflate=False) as sub:
        _check_ordered_delivery(pub, sub)


def test_received_pose_matches_the_published_one(publisher):
    with Subscriber(publisher.endpoint, topics=["hand/right"], conflate=False) as sub:
        sent = hand_pose("right", 7, _now())
        got = _connect(sub, lambda: publisher.publish_hand(sent))
        assert isinstance(got, HandPose) and got.seq == 7 and got.side == "right"
        assert abs(got.joint_positions - sent.joint_positions).max() < 1e-6


def test_topic_filter_delivers_only_the_chosen_topic(publisher):
    with Subscriber(publisher.endpoint, topics=["hand/left"], conflate=False) as sub:
        _connect(sub, lambda: publisher.publish_hand(hand_pose("left", 0, _now())))
        for seq in range(1, 6):
            publisher.publish_head(head_pose(seq, _now()))
            publisher.publish_hand(hand_pose("right", seq, _now()))
        publisher.publish_hand(hand_pose("left", 99, _now()))
        got = sub.recv(timeout_ms=2000)
        while got is not None and got.seq != 99:
            assert isinstance(got, HandPose) and got.side == "left"
            got = sub.recv(timeout_ms=2000)
        assert got is not None and got.side == "left"


def test_conflating_subscriber_gets_the_latest_pose_of_each_topic(publisher):
    with Subscriber(publisher.endpoint, topics=["head", "hand/left"], conflate=True) as sub:
        _connect(sub, lambda: publisher.publish_head(head_pose(0, _now())))
        _connect(sub, lambda: publisher.publish_hand(hand_pose("left", 0, _now())))
        _drain(sub)
        for seq in range(1, 101):
            publisher.publish_head(head_pose(seq, _now()))
        publisher.publish_hand(hand_pose("left", 500, _now()))
        time.sleep(0.2)  # let them arrive: each conflating socket keeps only its newest message
        seen = []
        deadline = time.monotonic() + 5
        while {("HeadPose", 100), ("HandPose", 500)} - set(seen) and time.monotonic() < deadline:
            pose = sub.recv(timeout_ms=200)
            if pose is not None:
                seen.append((type(pose).__name__, pose.seq))
        assert ("HeadPose", 100) in seen and ("HandPose", 500) in seen
        assert len(seen) <= 6  # without conflation it would have been 101 messages


def test_status_heartbeat_arrives_without_poses(publisher):
    with Subscriber(publisher.endpoint, topics=["status"]) as sub:
        publisher.publish_status(TrackerState.LOST)
        deadline = time.monotonic() + 3
        status = None
        while time.monotonic() < deadline and (status is None or status.state != TrackerState.LOST):
            status = sub.recv(timeout_ms=500)
        assert isinstance(status, Status) and status.state == TrackerState.LOST


def test_late_joiner_receives_the_last_pose_as_an_untracked_repeat(publisher):
    publisher.publish_head(head_pose(41, _now()))
    time.sleep(0.3)
    with Subscriber(publisher.endpoint, topics=["head"]) as sub:
        received = sub.recv_message(timeout_ms=1500)
        assert received is not None, "no repeat of the last head pose within 1.5 s"
        assert received.payload.seq == 41 and received.message.repeat
        assert received.payload.flags == TrackingFlags.predicted()  # valid, not tracked: it is old data


def test_subscriber_marks_an_old_pose_stale(publisher):
    with Subscriber(publisher.endpoint, topics=["head"], stale_after_ms=500) as sub:
        _connect(sub, lambda: publisher.publish_head(head_pose(1, _now() - 2_000_000_000)))
        assert sub.last.stale and sub.last.age_ns >= 2_000_000_000
        _drain(sub)
        publisher.publish_head(head_pose(2, _now()))
        fresh = _fresh_poses(sub, 1)
        assert fresh[0].seq == 2 and not sub.last.stale


def test_slow_subscriber_does_not_block_publish(publisher):
    never_reads = zmq.Context()
    sock = never_reads.socket(zmq.SUB)
    sock.rcvhwm = 10
    sock.subscribe(b"")
    sock.connect(publisher.endpoint)
    try:
        with Subscriber(publisher.endpoint, topics=["head"]) as probe:
            _connect(probe, lambda: publisher.publish_head(head_pose(0, _now())))  # the slow one is connected too
        before = publisher.stats
        pose = head_pose(1, _now())
        results = [publisher.publish_head(pose) for _ in range(10_000)]
        after = publisher.stats
        assert len(results) == 10_000
        assert (after.sent - before.sent) + (after.dropped - before.dropped) == 10_000
        assert sum(results) == after.sent - before.sent
    finally:
        sock.close(linger=0)
        never_reads.term()


@contextmanager
def _threads_calling(function_name: str) -> Iterator[list[str]]:
    """Record, for every call of a function named ``function_name``, the name of the thread that made it; in
    this thread and in threads started inside the block."""
    calls: list[str] = []

    def trace(frame, event, arg):
        if event == "call" and frame.f_code.co_name == function_name:
            calls.append(threading.current_thread().name)

    threading.settrace(trace)
    sys.settrace(trace)
    try:
        yield calls
    finally:
        sys.settrace(None)
        threading.settrace(None)


def test_heartbeat_rides_on_the_publish_calls_while_poses_flow():
    with _threads_calling("_beat") as beats:
        with Publisher("tcp://127.0.0.1:*", heartbeat_s=0.2) as pub, Subscriber(pub.endpoint, ["status"]) as sub:
            statuses = []
            seq = 0
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:
                pub.publish_head(head_pose(seq, _now()))
                seq += 1
                status = sub.recv(timeout_ms=2)
                if status is not None:
                    statuses.append(status)
    assert len(beats) >= 4  # one per 0.2 s
    assert set(beats) == {threading.current_thread().name}  # the caller's; the keep-alive thread never acted
    assert len(statuses) >= 3 and all(s.head_rate_hz > 0 for s in statuses[1:])


def test_idle_publisher_re_sends_the_last_pose_every_heartbeat():
    with Publisher("tcp://127.0.0.1:*", heartbeat_s=0.1) as pub, Subscriber(pub.endpoint, ["head"]) as sub:
        _connect(sub, lambda: pub.publish_head(head_pose(5, _now())))
        repeats = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            received = sub.recv_message(timeout_ms=100)
            if received is not None and received.message.repeat:
                repeats.append(received.payload)
    assert len(repeats) >= 5  # one per 0.1 s: far more than the 1 Hz a late joiner needs
    assert all(p.seq == 5 and p.flags == TrackingFlags.predicted() for p in repeats)


def test_a_refused_pose_does_not_use_up_a_message_number(publisher):
    pose = head_pose(1, _now())
    pose.position[0] = np.nan  # arrays stay writable after the pose was checked
    with pytest.raises(InvalidInputError):
        publisher.publish_head(pose)
    assert publisher.messages_per_topic["head"] == 0 and publisher.stats.sent == 0


def test_publishing_after_close_is_refused():
    pub = Publisher("tcp://127.0.0.1:*")
    pub.close()
    with pytest.raises(BridgeError, match="closed"):
        pub.publish_head(head_pose(0, _now()))
    with pytest.raises(BridgeError, match="closed"):
        pub.publish_status(TrackerState.STOPPING)


def test_subscriber_counts_gaps_in_message_sequence():
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as pub:
        pub.linger = 0
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        with Subscriber(f"tcp://127.0.0.1:{port}", topics=["head"], conflate=False) as sub:
            _connect(sub, lambda: pub.send(encode(Message(head_pose(0, _now()), 0, _now()))))
            for msg_seq in (1, 2, 5, 6, 10):
                pub.send(encode(Message(head_pose(msg_seq, _now()), msg_seq, _now())))
            _drain(sub)
            assert sub.lost["head"] == 2 + 3


def test_subscriber_skips_malformed_messages():
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as pub:
        pub.linger = 0
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        with Subscriber(f"tcp://127.0.0.1:{port}", topics=["head"], conflate=False) as sub:
            _connect(sub, lambda: pub.send(encode(Message(head_pose(0, _now()), 0, _now()))))
            _drain(sub)
            pub.send(b"head\x00SKTP\x02 not a version 1 body")
            pub.send(encode(Message(head_pose(8, _now()), 1, _now())))
            assert sub.recv(timeout_ms=2000).seq == 8
            assert sub.rejected == 1


# --------------------------------------------------------------------------------------------------- security


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5556", "tcp://*:5556", "tcp://192.168.1.20:5556"])
def test_network_bind_without_keys_is_refused_with_instructions(endpoint):
    with pytest.raises(InsecureBindError) as err:
        Publisher(endpoint)
    message = str(err.value)
    assert "--curve-keys" in message and "--insecure-bind" in message and "allow_insecure=True" in message


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [("tcp://127.0.0.1:1", True), ("tcp://localhost:1", True), ("tcp://[::1]:1", True), ("ipc:///tmp/x", True),
     ("tcp://0.0.0.0:1", False), ("tcp://eth0:1", False), ("tcp://10.0.0.2:1", False)],
)  # fmt: skip
def test_endpoint_locality(endpoint, local):
    assert is_local_endpoint(endpoint) is local


def test_network_bind_with_explicit_opt_out_is_allowed():
    with Publisher("tcp://0.0.0.0:*", allow_insecure=True) as pub:
        assert pub.endpoint.startswith("tcp://0.0.0.0:")


def test_curve_client_with_an_admitted_key_receives(keys):
    with Publisher("tcp://127.0.0.1:*", curve_keys=keys) as pub, Subscriber(
        pub.endpoint, topics=["head"], server_key=keys / "server.key",
        client_keys=keys / "clients" / "viewer.key_secret",
    ) as sub:  # fmt: skip
        got = _connect(sub, lambda: pub.publish_head(head_pose(3, _now())))
        assert isinstance(got, HeadPose) and got.seq == 3


def test_curve_rejects_an_unknown_client(keys):
    stranger = zmq.curve_keypair()
    with Publisher("tcp://127.0.0.1:*", curve_keys=keys) as pub, Subscriber(
        pub.endpoint, topics=["head"], conflate=False, server_key=load_server_keys(keys).public, client_keys=stranger
    ) as sub:  # fmt: skip
        got = []
        for seq in range(40):
            pub.publish_head(head_pose(seq, _now()))
            got.append(sub.recv(timeout_ms=25))
        assert got == [None] * 40


def test_curve_rejects_a_plain_text_client(keys):
    with Publisher("tcp://127.0.0.1:*", curve_keys=keys) as pub, Subscriber(pub.endpoint, conflate=False) as sub:
        got = []
        for seq in range(40):
            pub.publish_head(head_pose(seq, _now()))
            got.append(sub.recv(timeout_ms=25))
        assert got == [None] * 40


def test_subscriber_needs_both_curve_keys(keys):
    with pytest.raises(BridgeError, match="both"):
        Subscriber("tcp://127.0.0.1:1", server_key=keys / "server.key")


def test_keys_command_creates_server_and_client_certificates(tmp_path):
    assert keys_main(["create", str(tmp_path / "k"), "--client", "unity", "--client", "unreal"]) == 0
    assert keys_main(["add-client", str(tmp_path / "k"), "quest"]) == 0
    k = tmp_path / "k"
    assert (k / "server.key").is_file() and (k / "server.key_secret").is_file()
    assert sorted(p.name for p in (k / "authorized_clients").iterdir()) == ["quest.key", "unity.key", "unreal.key"]
    assert (k / "clients" / "unity.key_secret").is_file()
    assert "secret" not in " ".join(p.name for p in (k / "authorized_clients").iterdir())


def test_keys_command_refuses_to_overwrite_a_server_key(tmp_path, capsys):
    assert keys_main(["create", str(tmp_path)]) == 0
    assert keys_main(["create", str(tmp_path)]) == 2
    assert "already holds a server key" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------- command lines


def test_listen_command_prints_received_poses(publisher):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.listen", "--endpoint", publisher.endpoint, "--topics", "head", "--count", "2",
         "--timeout", "20"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seq = 0
    while proc.poll() is None and seq < 4000:
        publisher.publish_head(head_pose(seq, _now()))
        seq += 1
        time.sleep(0.005)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("head")]
    assert len(lines) == 2 and "flags 0xf" in lines[0] and " p [" in lines[0]


def test_demo_command_publishes_a_head_trajectory(ipc_endpoint):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.demo", "--endpoint", ipc_endpoint, "--seconds", "20", "--rate", "200"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with Subscriber(ipc_endpoint, topics=["head"], conflate=False) as sub:
            poses = []
            deadline = time.monotonic() + 15
            while len(poses) < 3 and time.monotonic() < deadline:
                pose = sub.recv(timeout_ms=500)
                if isinstance(pose, HeadPose) and not sub.last.message.repeat:
                    poses.append(pose)
        assert len(poses) == 3
        assert poses[0].seq < poses[1].seq < poses[2].seq
        assert 1.3 < poses[0].position[1] < 1.9  # standing head height
    finally:
        proc.terminate()
        proc.wait(timeout=10)
