"""Wire protocol v1: one ZeroMQ frame per message, ``topic`` + NUL + a packed little-endian body.

The byte layout is documented field by field in ``bridge/PROTOCOL.md``; the ``struct`` formats below are the
single source of it. A message is one frame (not multipart) so that subscribers with ZMQ_CONFLATE, which drops
multipart messages, still receive it; the topic prefix keeps ZeroMQ's prefix filtering working, and the NUL makes
every subscription exact (``head\\0`` never matches a future ``headset`` topic).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from bridge.errors import ProtocolError
from bridge.status import Status, TrackerState
from skiptrack_types import HandPose, HeadPose, InvalidInputError, TrackingFlags

VERSION = 1
MAGIC = b"SKTP"
HEAD, HAND_LEFT, HAND_RIGHT, STATUS = "head", "hand/left", "hand/right", "status"
TOPICS: tuple[str, ...] = (HEAD, HAND_LEFT, HAND_RIGHT, STATUS)
POSE_TOPICS: tuple[str, ...] = (HEAD, HAND_LEFT, HAND_RIGHT)
SEPARATOR = b"\x00"

KIND_BY_TOPIC = {HEAD: 1, HAND_LEFT: 2, HAND_RIGHT: 3, STATUS: 4}
TOPIC_BY_KIND = {kind: topic for topic, kind in KIND_BY_TOPIC.items()}

REPEAT = 0x01
"""``message_flags`` bit: a re-send of an earlier message for late joiners (same ``msg_seq``, tracked bits off)."""

N_JOINTS = 26
JOINT_VALID = 0x03  # XrSpaceLocationFlags: orientation valid | position valid
JOINT_TRACKED = 0x0C  # orientation tracked | position tracked

# Offsets are in bytes from the start of the body (the byte after the NUL). See the table in PROTOCOL.md.
POSE_HEADER_FORMAT = "<4sBBBBIfQQqqq3d3d"  # 104 bytes, shared by head and hand messages
HEAD_FORMAT = POSE_HEADER_FORMAT + "3d4d"  # + position, orientation (x, y, z, w): 160 bytes
HAND_FORMAT = POSE_HEADER_FORMAT + "8f" * N_JOINTS + f"{N_JOINTS}B"  # + joints, joint flags: 962 bytes
STATUS_FORMAT = "<4sBBBBdQqQQ"  # 48 bytes

POSE_HEADER_STRUCT = struct.Struct(POSE_HEADER_FORMAT)
HEAD_TAIL_STRUCT = struct.Struct("<3d4d")
STATUS_STRUCT = struct.Struct(STATUS_FORMAT)
BODY_SIZE = {1: struct.calcsize(HEAD_FORMAT), 2: struct.calcsize(HAND_FORMAT), 3: struct.calcsize(HAND_FORMAT),
             4: STATUS_STRUCT.size}  # fmt: skip
# The joint block is HAND_FORMAT's "8f" * 26 (x, y, z, qx, qy, qz, qw, radius per joint) and "26B" (flags);
# numpy reads and writes it with the same little-endian float32 layout, much faster than 234 struct fields.
JOINTS_DTYPE = np.dtype("<f4")
JOINTS_OFFSET = POSE_HEADER_STRUCT.size
JOINT_FLAGS_OFFSET = JOINTS_OFFSET + 8 * N_JOINTS * JOINTS_DTYPE.itemsize

_MAX_TOPIC = max(len(t) for t in TOPICS)
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Message:
    """One message on the wire: the payload plus what the publisher adds.

    ``msg_seq`` counts messages per topic (gaps = lost messages), ``publish_t_ns`` is the publisher's
    ``time.monotonic_ns()`` when it sent the message, ``repeat`` marks a re-send for late joiners.
    """

    payload: HeadPose | HandPose | Status
    msg_seq: int
    publish_t_ns: int
    repeat: bool = False

    @property
    def topic(self) -> str:
        return topic_of(self.payload)


def topic_of(payload: HeadPose | HandPose | Status) -> str:
    """The topic a payload is published on."""
    if isinstance(payload, HeadPose):
        return HEAD
    if isinstance(payload, HandPose):
        return HAND_LEFT if payload.side == "left" else HAND_RIGHT
    if isinstance(payload, Status):
        return STATUS
    raise InvalidInputError(f"cannot publish a {type(payload).__name__}; expected HeadPose, HandPose or Status")


def subscription(topic: str) -> bytes:
    """The ZeroMQ subscription prefix that selects exactly ``topic``."""
    if topic not in TOPICS:
        raise InvalidInputError(f"unknown topic {topic!r}; topics are {', '.join(TOPICS)}")
    return topic.encode("ascii") + SEPARATOR


# --------------------------------------------------------------------------------------------------- encoding


def encode(message: Message) -> bytes:
    """The complete frame for ``message``: topic, NUL, body. Raises InvalidInputError for values the format
    cannot carry (negative or oversized integers, non-finite floats, a tracked joint that is not valid)."""
    _require_uint("msg_seq", message.msg_seq, 64)
    _require_int64("publish_t_ns", message.publish_t_ns)
    payload = message.payload
    flags = REPEAT if message.repeat else 0
    topic = topic_of(payload)
    kind = KIND_BY_TOPIC[topic]
    if isinstance(payload, Status):
        body = _encode_status(payload, kind, flags, message)
    else:
        header = _pose_header(payload, kind, flags, message)
        body = _encode_head(payload, header) if isinstance(payload, HeadPose) else _encode_hand(payload, header)
    return topic.encode("ascii") + SEPARATOR + body


def _pose_header(pose: HeadPose | HandPose, kind: int, flags: int, message: Message) -> bytes:
    _require_uint("seq", pose.seq, 64)
    _require_uint("exit_stage", pose.exit_stage, 32)
    _require_int64("t_ns", pose.t_ns)
    _require_int64("display_t_ns", pose.display_t_ns)
    af = float(pose.active_fraction)
    if not 0.0 <= af <= 1.0:
        raise InvalidInputError(f"active_fraction must be within [0, 1], got {pose.active_fraction}")
    velocities = _finite("velocities", [*pose.linear_velocity.tolist(), *pose.angular_velocity.tolist()])
    return POSE_HEADER_STRUCT.pack(
        MAGIC, VERSION, kind, pose.flags.to_bits(), flags, int(pose.exit_stage), af,
        int(message.msg_seq), int(pose.seq), int(pose.t_ns), int(message.publish_t_ns), int(pose.display_t_ns),
        *velocities,
    )  # fmt: skip


def _encode_head(pose: HeadPose, header: bytes) -> bytes:
    return header + HEAD_TAIL_STRUCT.pack(
        *_finite("position and orientation", [*pose.position.tolist(), *pose.orientation.tolist()])
    )


def _encode_hand(pose: HandPose, header: bytes) -> bytes:
    joints = np.concatenate(
        [pose.joint_positions, pose.joint_orientations, np.asarray(pose.joint_radii)[:, None]], axis=1
    )
    if not np.abs(joints).max() <= _F32_MAX:  # also false for NaN
        raise InvalidInputError("hand joint positions, orientations and radii must be finite float32 values")
    if (pose.joint_tracked & ~pose.joint_valid).any():
        raise InvalidInputError("a hand joint that is tracked must also be valid (joint_tracked implies joint_valid)")
    joint_flags = (pose.joint_valid * JOINT_VALID) | (pose.joint_tracked * JOINT_TRACKED)
    return header + joints.astype(JOINTS_DTYPE).tobytes() + joint_flags.astype(np.uint8).tobytes()


def _encode_status(status: Status, kind: int, flags: int, message: Message) -> bytes:
    rate = float(status.head_rate_hz)
    if not (math.isfinite(rate) and rate >= 0.0):
        raise InvalidInputError(f"head_rate_hz must be finite and >= 0, got {status.head_rate_hz}")
    _require_uint("messages_sent", status.messages_sent, 64)
    _require_uint("messages_dropped", status.messages_dropped, 64)
    return STATUS_STRUCT.pack(
        MAGIC, VERSION, kind, int(TrackerState(status.state)), flags, rate,
        int(message.msg_seq), int(message.publish_t_ns), int(status.messages_sent), int(status.messages_dropped),
    )  # fmt: skip


def _finite(name: str, values: list[float]) -> list[float]:
    if not all(map(math.isfinite, values)):
        raise InvalidInputError(f"{name} must be finite, got {values}")
    return values


def _require_uint(name: str, value: int, bits: int) -> None:
    if not isinstance(value, (int, np.integer)) or not 0 <= value < 1 << bits:
        raise InvalidInputError(f"{name} must be an integer in [0, 2^{bits}), got {value!r}")


def _require_int64(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or not -(1 << 63) <= value < 1 << 63:
        raise InvalidInputError(f"{name} must be a signed 64-bit integer (nanoseconds), got {value!r}")


# --------------------------------------------------------------------------------------------------- decoding


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Parse one frame. Raises ProtocolError (and nothing else) for anything that is not a valid v1 message:
    missing separator, unknown topic, wrong magic, other version, kind/topic mismatch, wrong length, reserved
    bits set, non-finite or out-of-range values."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"a message must be bytes, got {type(data).__name__}")
    data = bytes(data)
    cut = data.find(SEPARATOR, 0, _MAX_TOPIC + 1)
    if cut < 0:
        raise ProtocolError(f"no NUL after the topic within the first {_MAX_TOPIC + 1} bytes; not a SkipTrack message")
    topic = data[:cut].decode("ascii", errors="replace")
    if topic not in KIND_BY_TOPIC:
        raise ProtocolError(f"unknown topic {topic!r}; topics are {', '.join(TOPICS)}")
    body = data[cut + 1 :]
    if len(body) < 6:
        raise ProtocolError(f"{topic} body is {len(body)} bytes, too short to hold magic, version and kind")
    if body[:4] != MAGIC:
        raise ProtocolError(f"bad magic {body[:4]!r}, expected {MAGIC!r}")
    if body[4] != VERSION:
        raise ProtocolError(f"unsupported protocol version {body[4]}; this decoder reads version {VERSION}")
    kind = body[5]
    if TOPIC_BY_KIND.get(kind) != topic:
        raise ProtocolError(f"message kind {kind} does not match topic {topic!r} (expected {KIND_BY_TOPIC[topic]})")
    if len(body) != BODY_SIZE[kind]:
        raise ProtocolError(f"{topic} body must be {BODY_SIZE[kind]} bytes in version {VERSION}, got {len(body)}")
    if kind == 4:
        return _decode_status(STATUS_STRUCT.unpack(body))
    return _decode_pose(topic, body)


def _decode_pose(topic: str, body: bytes) -> Message:
    (_, _, _, tracking_bits, message_flags, exit_stage, active_fraction, msg_seq, seq, t_ns, publish_t_ns,
     display_t_ns, *velocities) = POSE_HEADER_STRUCT.unpack_from(body)  # fmt: skip
    _check_flags(tracking_bits, message_flags)
    if not (math.isfinite(active_fraction) and 0.0 <= active_fraction <= 1.0):
        raise ProtocolError(f"active_fraction {active_fraction} is not within [0, 1]")
    velocities = np.array(velocities)
    common = dict(
        seq=seq, t_ns=t_ns, linear_velocity=velocities[:3], angular_velocity=velocities[3:],
        flags=TrackingFlags.from_bits(tracking_bits), display_t_ns=display_t_ns, exit_stage=exit_stage,
        active_fraction=active_fraction,
    )  # fmt: skip
    try:
        if topic == HEAD:
            tail = HEAD_TAIL_STRUCT.unpack_from(body, JOINTS_OFFSET)
            if not abs(math.hypot(*tail[3:]) - 1.0) <= 1e-3:  # also false for NaN
                raise ProtocolError(f"head orientation {tail[3:]} is not a unit quaternion (x, y, z, w)")
            payload = HeadPose(position=np.array(tail[:3]), orientation=np.array(tail[3:]), **common)
        else:
            payload = _decode_hand(topic, body, common)
    except InvalidInputError as err:
        raise ProtocolError(f"{topic} message holds an invalid pose: {err}") from None
    return Message(payload, msg_seq, publish_t_ns, bool(message_flags & REPEAT))


def _decode_hand(topic: str, body: bytes, common: dict) -> HandPose:
    joints = np.frombuffer(body, JOINTS_DTYPE, 8 * N_JOINTS, JOINTS_OFFSET).astype(np.float64).reshape(N_JOINTS, 8)
    if not np.isfinite(joints).all():
        raise ProtocolError(f"{topic} message has NaN or infinite joint values")
    joint_flags = np.frombuffer(body, np.uint8, N_JOINTS, JOINT_FLAGS_OFFSET)
    bad = (joint_flags != 0) & (joint_flags != JOINT_VALID) & (joint_flags != JOINT_VALID | JOINT_TRACKED)
    if bad.any():
        i = int(np.argmax(bad))
        raise ProtocolError(f"joint {i} has flags {joint_flags[i]:#04x}; allowed are 0x00, 0x03 and 0x0f")
    return HandPose(
        side=topic.split("/")[1], joint_positions=joints[:, 0:3], joint_orientations=joints[:, 3:7],
        joint_radii=joints[:, 7].copy(), joint_valid=(joint_flags & JOINT_VALID) == JOINT_VALID,
        joint_tracked=(joint_flags & JOINT_TRACKED) == JOINT_TRACKED, **common,
    )  # fmt: skip


def _decode_status(values: tuple) -> Message:
    _, _, _, state, message_flags, rate, msg_seq, publish_t_ns, sent, dropped = values
    _check_flags(0, message_flags)
    if state not in TrackerState._value2member_map_:
        raise ProtocolError(f"unknown tracker state {state}; known: {[s.value for s in TrackerState]}")
    if not (math.isfinite(rate) and rate >= 0.0):
        raise ProtocolError(f"head_rate_hz must be finite and >= 0, got {rate}")
    return Message(
        Status(TrackerState(state), rate, sent, dropped), msg_seq, publish_t_ns, bool(message_flags & REPEAT)
    )


def _check_flags(tracking_bits: int, message_flags: int) -> None:
    if tracking_bits & ~0x0F:
        raise ProtocolError(f"tracking flags {tracking_bits:#04x} set reserved bits (only the low 4 are defined)")
    if message_flags & ~REPEAT:
        raise ProtocolError(f"message flags {message_flags:#04x} set reserved bits (only bit 0, repeat, is defined)")
