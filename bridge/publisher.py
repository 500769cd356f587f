"""The tracker side of the bridge: a PUB socket that never makes the tracker wait.

Threads and sockets (a ZeroMQ socket may be used from several threads only when a lock serialises every use; the
lock's acquire and release give the memory barrier that libzmq requires when a socket changes threads):

- the caller's thread encodes each pose and sends it on the PUB socket itself with NOBLOCK, holding the
  publisher's lock (no hand-off to another thread). A PUB socket never blocks: a subscriber
  whose queue (SNDHWM) is full simply misses messages, which it sees as gaps in ``msg_seq``; were ZeroMQ ever to
  refuse a message without waiting, it is dropped and counted, and the call still never waits;
- libzmq's own I/O thread moves the messages to the network (tcp) or the socket file (ipc);
- a heartbeat thread sends a ``status`` message every ``heartbeat_s`` and re-sends the last pose of any topic that
  has been silent that long, so a late joiner gets a value within about ``2 * heartbeat_s``. Re-sends keep their
  ``msg_seq``, carry the repeat flag, and are marked valid but not tracked: a repeated pose is old data. It encodes
  outside the lock and holds the lock for one NOBLOCK send at a time, so a publish call can at most wait for
  one such send.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import zmq

from bridge.curve import ServerKeys, load_server_keys, start_authenticator
from bridge.errors import BridgeError, InsecureBindError
from bridge.protocol import HEAD, POSE_TOPICS, Message, encode, topic_of
from bridge.status import Status, TrackerState
from skiptrack_types import HandPose, HeadPose, InvalidInputError, TrackingFlags

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"


@dataclass(frozen=True)
class PublisherStats:
    """Pose messages handed to ZeroMQ, and dropped because ZeroMQ refused them without waiting (a PUB socket
    normally never refuses: a subscriber that does not keep up misses messages instead, seen as gaps in
    ``msg_seq``)."""

    sent: int
    dropped: int


def is_local_endpoint(endpoint: str) -> bool:
    """True for ``ipc://``, ``inproc://`` and tcp endpoints on a loopback address or ``localhost``."""
    scheme, sep, address = endpoint.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc"):
        raise BridgeError(f"endpoint {endpoint!r} must look like tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    if scheme != "tcp":
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a host name: reachable from the network


def check_bind_allowed(endpoint: str, curve_keys: object, allow_insecure: bool) -> None:
    """Raise InsecureBindError when ``endpoint`` is reachable from the network and neither CURVE keys nor the
    explicit opt-out were given."""
    if curve_keys is None and not allow_insecure and not is_local_endpoint(endpoint):
        raise InsecureBindError(
            f"refusing to bind {endpoint} without encryption: anyone on that network could read head and hand "
            "poses. Create keys with `python -m bridge.keys create KEYDIR` and pass curve_keys=KEYDIR "
            "(command line: --curve-keys KEYDIR), bind to tcp://127.0.0.1:PORT or ipc://PATH instead, or opt out "
            "explicitly with allow_insecure=True (command line: --insecure-bind)."
        )


class Publisher:
    """Publishes head poses, hand poses and status on one PUB socket; see the module docstring for the threads.

    ``endpoint`` may use port ``*`` (``tcp://127.0.0.1:*``) to pick a free port; ``self.endpoint`` is the bound
    one. ``sndhwm`` is how many messages wait for one subscriber before that subscriber starts missing some
    (1000: a third of a second of head + hands at 1 kHz, enough to ride out a busy machine's scheduling stalls;
    memory about 1 MB per subscriber). ``curve_keys`` is a key directory from ``python -m bridge.keys create``
    (or loaded ServerKeys): the socket then encrypts and admits only the clients listed there. Call ``publish_*``
    from one thread or several (a lock serialises them); use as a context manager or call ``close()``.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        curve_keys: str | Path | ServerKeys | None = None,
        *,
        allow_insecure: bool = False,
        heartbeat_s: float = 0.5,
        sndhwm: int = 1000,
    ) -> None:
        check_bind_allowed(endpoint, curve_keys, allow_insecure)
        if heartbeat_s <= 0:
            raise InvalidInputError(f"heartbeat_s must be > 0, got {heartbeat_s}")
        keys = curve_keys if isinstance(curve_keys, ServerKeys) or curve_keys is None else load_server_keys(curve_keys)
        self._context = zmq.Context()
        self._auth = start_authenticator(self._context, keys.authorized_dir) if keys is not None else None
        self._heartbeat_s = heartbeat_s
        self._pub = self._socket(zmq.PUB, sndhwm=sndhwm)
        if keys is not None:
            self._pub.curve_server = True
            self._pub.curve_publickey, self._pub.curve_secretkey = keys.public, keys.secret
        try:
            self._pub.bind(endpoint)
        except zmq.ZMQError as err:
            self._pub.close(linger=0)
            self._shutdown_context()
            raise BridgeError(f"cannot bind {endpoint}: {err} (is another publisher using it?)") from None
        self.endpoint: str = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self._closed = False
        self._lock = threading.Lock()  # serialises every use of self._pub (caller, heartbeat, close)
        self._msg_seq = dict.fromkeys(POSE_TOPICS, 0)
        self._last: dict[str, tuple[HeadPose | HandPose, int, int]] = {}  # topic -> (pose, msg_seq, sent at ns)
        self._sent = 0
        self._dropped = 0
        self._state = TrackerState.STARTING
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="skiptrack-bridge-heartbeat", daemon=True)
        self._heartbeat.start()
        log.info("publishing on %s (%s)", self.endpoint, "CURVE" if keys is not None else "plain text")

    # ------------------------------------------------------------------------------------------- tracker side

    def publish_head(self, pose: HeadPose) -> bool:
        """Send a head pose; True if handed to ZeroMQ, False if dropped (counted). Never waits."""
        if not isinstance(pose, HeadPose):
            raise InvalidInputError(f"publish_head takes a HeadPose, got {type(pose).__name__}")
        return self._publish(pose)

    def publish_hand(self, pose: HandPose) -> bool:
        """Send a hand pose on ``hand/left`` or ``hand/right``; True if sent, False if dropped. Never waits."""
        if not isinstance(pose, HandPose):
            raise InvalidInputError(f"publish_hand takes a HandPose, got {type(pose).__name__}")
        return self._publish(pose)

    def publish_status(self, state: TrackerState) -> None:
        """Set the tracker state and send a status message now (from the heartbeat thread)."""
        self._state = TrackerState(state)
        self._wake.set()

    @property
    def stats(self) -> PublisherStats:
        return PublisherStats(self._sent, self._dropped)

    @property
    def messages_per_topic(self) -> dict[str, int]:
        """Pose messages numbered so far per topic (sent or dropped); the next ``msg_seq`` of each topic."""
        return dict(self._msg_seq)

    def _publish(self, pose: HeadPose | HandPose) -> bool:
        topic = topic_of(pose)
        with self._lock:
            if self._closed:
                raise BridgeError("publisher is closed; create a new Publisher")
            msg_seq = self._msg_seq[topic]
            self._msg_seq[topic] = msg_seq + 1
            now = time.monotonic_ns()
            data = encode(Message(pose, msg_seq, now))
            try:
                self._pub.send(data, zmq.NOBLOCK)
            except zmq.Again:
                self._dropped += 1
                return False
            self._sent += 1
            self._last[topic] = (pose, msg_seq, now)
            return True

    # ------------------------------------------------------------------------------------------- threads

    def _beat(self) -> None:
        status_seq = itertools.count()
        last_head = (time.monotonic_ns(), 0)
        while not self._stop.is_set():
            self._wake.wait(self._heartbeat_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic_ns()
            head_count = self._msg_seq[HEAD]
            rate = (head_count - last_head[1]) / max((now - last_head[0]) * 1e-9, 1e-9)
            last_head = (now, head_count)
            status = Status(self._state, rate, self._sent, self._dropped)
            self._send_quietly(encode(Message(status, next(status_seq), now)))
            for pose, msg_seq, sent_ns in list(self._last.values()):
                if now - sent_ns >= self._heartbeat_s * 1e9:
                    self._send_quietly(encode(Message(_as_repeat(pose), msg_seq, now, repeat=True)))

    def _send_quietly(self, data: bytes) -> None:
        """Send one encoded heartbeat message, holding the lock only for the NOBLOCK send."""
        with self._lock:
            if self._closed:
                return
            try:
                self._pub.send(data, zmq.NOBLOCK)
            except zmq.Again:
                log.debug("heartbeat message dropped: ZeroMQ refused it without waiting")

    # ------------------------------------------------------------------------------------------- lifetime

    def _socket(self, kind: int, sndhwm: int | None = None) -> zmq.Socket:
        sock = self._context.socket(kind)
        sock.linger = 0
        if sndhwm is not None:
            sock.sndhwm = sndhwm
        return sock

    def close(self) -> None:
        """Stop the threads and close the sockets. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # from here on neither the caller nor the heartbeat touches self._pub
        self._stop.set()
        self._wake.set()
        self._heartbeat.join()
        self._pub.close(linger=0)
        self._shutdown_context()

    def _shutdown_context(self) -> None:
        if self._auth is not None:
            self._auth.stop()
        self._context.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_repeat(pose: HeadPose | HandPose) -> HeadPose | HandPose:
    """The pose as it may be re-sent: still valid, no longer tracked (it is old data)."""
    flags = pose.flags
    repeated = replace(pose, flags=TrackingFlags(flags.orientation_valid, False, flags.position_valid, False))
    if isinstance(pose, HandPose):
        repeated = replace(repeated, joint_tracked=np.zeros_like(pose.joint_tracked))
    return repeated
