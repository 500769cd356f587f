"""The tracker side of the bridge: a PUB socket that never makes the tracker wait.

Threads and sockets (a ZeroMQ socket may be used from several threads only when a lock serialises every use; the
lock's acquire and release give the memory barrier that libzmq requires when a socket changes threads):

- the caller's thread encodes each pose into a preallocated buffer and sends it on the PUB socket itself with
  NOBLOCK, holding the publisher's lock (no hand-off to another thread). A PUB socket never blocks: a subscriber
  whose queue (SNDHWM) is full simply misses messages, which it sees as gaps in ``msg_seq``; were ZeroMQ ever to
  refuse a message without waiting, it is dropped and counted, and the call still never waits;
- libzmq's own I/O thread moves the messages to the network (tcp) or the socket file (ipc);
- the heartbeat (a ``status`` message every ``heartbeat_s``, and a re-send of the last pose of any topic that has
  been silent that long, so that a late joiner gets a value within about ``2 * heartbeat_s``) rides on the
  publish calls: the first call after a heartbeat is due sends it, after its own pose. Re-sends keep their
  ``msg_seq``, carry the repeat flag, and are marked valid but not tracked: a repeated pose is old data. While
  poses flow, the caller's thread is the only one that takes the lock or touches the socket, so it never waits
  for another thread of ours;
- a keep-alive thread sends the heartbeat only when no publish call has come for a whole ``heartbeat_s`` (the
  tracker is paused or lost). While poses flow it wakes once per period, reads the time of the last publish call
  without the lock (a few microseconds holding the GIL) and sleeps again. Only a publish call that arrives
  during an idle-time heartbeat can wait for it: one status message and the re-sends, tens of microseconds.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from bridge.curve import ServerKeys, load_server_keys, start_authenticator
from bridge.errors import BridgeError, InsecureBindError
from bridge.protocol import HEAD, POSE_TOPICS, Encoder, as_repeat, topic_of
from bridge.status import Status, TrackerState
from skiptrack_types import HandPose, HeadPose, InvalidInputError

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
        self._lock = threading.Lock()  # serialises every use of self._pub and self._encoder, and the heartbeat
        self._encoder = Encoder()
        self._heartbeat_ns = int(heartbeat_s * 1e9)
        self._msg_seq = dict.fromkeys(POSE_TOPICS, 0)
        self._last: dict[str, tuple[bytes, int]] = {}  # topic -> (frame as sent, when sent in ns)
        self._sent = 0
        self._dropped = 0
        self._state = TrackerState.STARTING
        self._status_seq = 0
        now = time.monotonic_ns()
        self._rate_since = (now, 0)  # (ns, head messages numbered then): the window of the next status's rate
        self._next_beat_ns = now + self._heartbeat_ns
        self._last_publish_ns = now
        self._stop = threading.Event()
        self._keep_alive = threading.Thread(
            target=self._keep_alive_loop, name="skiptrack-bridge-keepalive", daemon=True
        )
        self._keep_alive.start()
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
        """Set the tracker state and send a status message now, from the caller's thread."""
        self._state = TrackerState(state)
        with self._lock:
            self._require_open()
            self._send_status(time.monotonic_ns())

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
            self._require_open()
            msg_seq = self._msg_seq[topic]
            now = time.monotonic_ns()
            frame = self._encoder.pose(pose, msg_seq, now)
            self._msg_seq[topic] = msg_seq + 1
            sent = self._send(frame)
            if sent:
                self._sent += 1
                self._last[topic] = (frame, now)
            else:
                self._dropped += 1
            self._last_publish_ns = now
            if now >= self._next_beat_ns:
                self._beat(now)
            return sent

    def _require_open(self) -> None:
        if self._closed:
            raise BridgeError("publisher is closed; create a new Publisher")

    # ------------------------------------------------------------------------------------------- heartbeat

    def _beat(self, now: int) -> None:
        """Send the status, and re-send the last pose of every topic silent for a heartbeat period. The caller
        holds the lock."""
        self._send_status(now)
        for frame, sent_ns in self._last.values():
            if now - sent_ns >= self._heartbeat_ns and not self._send(as_repeat(frame, now)):
                log.debug("a re-send for late joiners was dropped: ZeroMQ refused it without waiting")
        self._next_beat_ns = now + self._heartbeat_ns

    def _send_status(self, now: int) -> None:
        """Send a status message whose rate covers the head messages since the previous one. The caller holds
        the lock."""
        since_ns, head_count = self._rate_since
        heads = self._msg_seq[HEAD]
        rate = (heads - head_count) / max((now - since_ns) * 1e-9, 1e-9)
        self._rate_since = (now, heads)
        status = Status(self._state, rate, self._sent, self._dropped)
        if not self._send(self._encoder.status(status, self._status_seq, now)):
            log.debug("a status message was dropped: ZeroMQ refused it without waiting")
        self._status_seq += 1

    def _send(self, frame: bytes) -> bool:
        try:
            self._pub.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def _keep_alive_loop(self) -> None:
        """Send the heartbeat while no publish call comes; sleep while poses flow (their calls send it)."""
        while True:
            due_ns = max(self._next_beat_ns, self._last_publish_ns + self._heartbeat_ns)
            if self._stop.wait(max(due_ns - time.monotonic_ns(), 0) * 1e-9):
                return
            if time.monotonic_ns() - self._last_publish_ns < self._heartbeat_ns:
                continue  # checked without the lock, so that a flowing tracker never finds it taken
            with self._lock:
                now = time.monotonic_ns()
                if self._closed:
                    return
                if now - self._last_publish_ns >= self._heartbeat_ns and now >= self._next_beat_ns:
                    self._beat(now)

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
        self._keep_alive.join()
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
