"""The consumer side of the bridge: a SUB socket (or one per topic) that decodes messages and reports their age.

With ``conflate=True`` (for applications that only want the newest pose) each topic gets its own SUB socket with
ZMQ_CONFLATE, because CONFLATE keeps one message per socket: on a shared socket a hand message would replace the
head pose you were about to read. With ``conflate=False`` one socket receives every topic in order (for loggers and
for measuring loss).

Ages compare the pose's capture time with this machine's ``time.monotonic_ns()``, which is meaningful when the
subscriber runs on the tracker's machine (the usual case for an XR runtime). Across machines compare
``publish_t_ns`` only with clocks you have synchronised yourself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from bridge.curve import load_key_pair, load_public_key
from bridge.errors import BridgeError, ProtocolError
from bridge.protocol import POSE_TOPICS, STATUS, TOPICS, Message, decode, subscription
from bridge.publisher import DEFAULT_ENDPOINT
from bridge.status import Status
from skiptrack_types import HandPose, HeadPose, InvalidInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    """A decoded message and when it arrived. ``age_ns`` = arrival minus the pose's capture time (status:
    minus its publish time); ``stale`` when that exceeds the subscriber's ``stale_after_ms``."""

    message: Message
    receive_t_ns: int
    age_ns: int
    stale: bool

    @property
    def payload(self) -> HeadPose | HandPose | Status:
        return self.message.payload

    @property
    def topic(self) -> str:
        return self.message.topic

    @property
    def latency_ns(self) -> int:
        """Publish to receive, on the shared monotonic clock."""
        return self.receive_t_ns - self.message.publish_t_ns


class Subscriber:
    """Receives bridge messages from ``endpoint``.

    ``topics``: any of ``head``, ``hand/left``, ``hand/right``, ``status``. For a CURVE publisher pass
    ``server_key`` (its ``server.key`` file or Z85 public key) and ``client_keys`` (this client's
    ``NAME.key_secret`` file or a (public, secret) Z85 pair).
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        topics: tuple[str, ...] | list[str] = TOPICS,
        conflate: bool = True,
        server_key: bytes | str | Path | None = None,
        client_keys: str | Path | tuple[bytes, bytes] | None = None,
        *,
        stale_after_ms: float = 100.0,
        rcvhwm: int = 1000,
    ) -> None:
        topics = tuple(topics)
        if not topics:
            raise InvalidInputError(f"subscribe to at least one topic of {', '.join(TOPICS)}")
        prefixes = [subscription(t) for t in topics]
        if (server_key is None) != (client_keys is None):
            raise BridgeError(
                "CURVE needs both server_key (the publisher's server.key) and client_keys (this client's "
                "NAME.key_secret from `python -m bridge.keys`); pass both or neither"
            )
        curve = None
        if server_key is not None:
            pair = client_keys if isinstance(client_keys, tuple) else load_key_pair(client_keys)
            curve = (load_public_key(server_key), *pair)
        self.endpoint = endpoint
        self.stale_after_ns = int(stale_after_ms * 1e6)
        self.last: Received | None = None
        self.lost = dict.fromkeys(POSE_TOPICS, 0)
        """Per pose topic, messages missed (gaps in msg_seq), counted from the first message received."""
        self.rejected = 0
        self._last_msg_seq: dict[str, int] = {}
        self._context = zmq.Context()
        groups = [[p] for p in prefixes] if conflate else [prefixes]
        self._sockets = [self._open(group, conflate, rcvhwm, curve) for group in groups]
        self._poller = zmq.Poller()
        for sock in self._sockets:
            self._poller.register(sock, zmq.POLLIN)
        self._next = 0

    def _open(
        self, prefixes: list[bytes], conflate: bool, rcvhwm: int, curve: tuple[bytes, bytes, bytes] | None
    ) -> zmq.Socket:
        sock = self._context.socket(zmq.SUB)
        sock.linger = 0
        sock.rcvhwm = rcvhwm
        if conflate:
            sock.conflate = True
        if curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve
        for prefix in prefixes:
            sock.subscribe(prefix)
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as err:
            sock.close(linger=0)
            raise BridgeError(f"cannot connect to {self.endpoint}: {err}") from None
        return sock

    def recv(self, timeout_ms: float = 100.0) -> HeadPose | HandPose | Status | None:
        """The next payload, or None when nothing valid arrived within ``timeout_ms``. Staleness of the
        returned payload is in ``self.last`` (``age_ns``, ``stale``)."""
        received = self.recv_message(timeout_ms)
        return None if received is None else received.payload

    def recv_message(self, timeout_ms: float = 100.0) -> Received | None:
        """Like ``recv`` but returns the whole Received record (message, arrival time, age, stale flag).
        Malformed messages are logged, counted in ``rejected`` and skipped. The arrival time is taken as soon as
        ZeroMQ hands over the frame, before decoding."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            frame = self._recv_queued()
            if frame is None:
                remaining_ms = (deadline - time.monotonic()) * 1000
                if remaining_ms <= 0 or not self._poller.poll(remaining_ms):
                    return None
                continue
            receive_t_ns = time.monotonic_ns()
            try:
                message = decode(frame)
            except ProtocolError as err:
                self.rejected += 1
                log.warning("skipping a malformed message: %s", err)
                continue
            self._count_gap(message)
            payload = message.payload
            born = message.publish_t_ns if isinstance(payload, Status) else payload.t_ns
            age = receive_t_ns - born
            self.last = Received(message, receive_t_ns, age, age > self.stale_after_ns)
            return self.last

    def _recv_queued(self) -> bytes | None:
        """A frame already waiting on one of the sockets, or None; no poll when one is (the common case when
        head and hands arrive together). The starting socket rotates so that one busy topic cannot starve the
        others."""
        n = len(self._sockets)
        for i in range(n):
            index = (self._next + i) % n
            try:
                frame = self._sockets[index].recv(zmq.NOBLOCK)
            except zmq.Again:
                continue
            self._next = (index + 1) % n
            return frame
        return None

    def _count_gap(self, message: Message) -> None:
        topic = message.topic
        if topic == STATUS or message.repeat:
            return
        previous = self._last_msg_seq.get(topic)
        if previous is not None and message.msg_seq > previous + 1:
            self.lost[topic] += message.msg_seq - previous - 1
        if previous is None or message.msg_seq > previous:
            self._last_msg_seq[topic] = message.msg_seq

    def close(self) -> None:
        """Close the sockets. Safe to call twice."""
        for sock in self._sockets:
            sock.close(linger=0)
        self._sockets = []
        self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
