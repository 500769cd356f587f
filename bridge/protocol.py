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
from skiptrack_types import HandPose, HeadPose, InvalidInputError, TrackingFlags, build_prechecked

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
_HEADER_SCALARS_FORMAT = "<4sBBBBIfQQqqq"  # magic .. display_t_ns: 56 bytes, then the float64 velocities
POSE_HEADER_FORMAT = _HEADER_SCALARS_FORMAT + "3d3d"  # 104 bytes, shared by head and hand messages
HEAD_FORMAT = POSE_HEADER_FORMAT + "3d4d"  # + position, orientation (x, y, z, w): 160 bytes
HAND_FORMAT = POSE_HEADER_FORMAT + "8f" * N_JOINTS + f"{N_JOINTS}B"  # + joints, joint flags: 962 bytes
STATUS_FORMAT = "<4sBBBBdQqQQ"  # 48 bytes

POSE_HEADER_STRUCT = struct.Struct(POSE_HEADER_FORMAT)
HEAD_STRUCT = struct.Struct(HEAD_FORMAT)
STATUS_STRUCT = struct.Struct(STATUS_FORMAT)
_HEADER_SCALARS_STRUCT = struct.Struct(_HEADER_SCALARS_FORMAT)
_PUBLISH_T_NS_STRUCT = struct.Struct("<q")
_HEAD_FLOATS, _HAND_FLOATS = struct.Struct("<13d"), struct.Struct("<6d")  # the float64 block after the scalars
BODY_SIZE = {1: HEAD_STRUCT.size, 2: struct.calcsize(HAND_FORMAT), 3: struct.calcsize(HAND_FORMAT),
             4: STATUS_STRUCT.size}  # fmt: skip
KIND_OFFSET, TRACKING_FLAGS_OFFSET, MESSAGE_FLAGS_OFFSET, PUBLISH_T_NS_OFFSET = 5, 6, 7, 40
FLOATS_OFFSET = _HEADER_SCALARS_STRUCT.size  # velocities (and for the head, position and orientation): float64
# The joint block is HAND_FORMAT's "8f" * 26 (x, y, z, qx, qy, qz, qw, radius per joint) and "26B" (flags);
# numpy reads and writes it with the same little-endian float32 layout, much faster than 234 struct fields.
JOINTS_DTYPE = np.dtype("<f4")
JOINTS_OFFSET = POSE_HEADER_STRUCT.size
JOINT_FLAGS_OFFSET = JOINTS_OFFSET + 8 * N_JOINTS * JOINTS_DTYPE.itemsize

_MAX_TOPIC = max(len(t) for t in TOPICS)
_PREFIX = {topic: topic.encode("ascii") + SEPARATOR for topic in TOPICS}
_TOPIC_BY_NAME = {topic.encode("ascii"): topic for topic in TOPICS}
# The flag bytes a joint may carry, and lookup tables indexed by a flag byte of what it says.
_JOINT_FLAG_VALUES = bytes((0, JOINT_VALID, JOINT_VALID | JOINT_TRACKED))
_JOINT_IS_VALID = (np.arange(256) & JOINT_VALID) == JOINT_VALID
_JOINT_IS_TRACKED = (np.arange(256) & JOINT_TRACKED) == JOINT_TRACKED
_TRACKING_FLAGS = tuple(TrackingFlags.from_bits(bits) for bits in range(16))  # frozen: one instance per value


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
    return Encoder().encode(message)


class Encoder:
    """Writes frames into one buffer per topic, allocated once, for a sender that encodes thousands of poses a
    second: struct ``pack_into`` for the header and numpy views onto the buffer for the 26 joints, so no large
    object is allocated per message.

    Each call returns the frame as ``bytes`` (one copy of the buffer, which pyzmq sends faster than a bytearray
    and which a publisher can keep for re-sends). Not thread-safe: one Encoder per thread, or a lock around it.
    """

    def __init__(self) -> None:
        self._frames = {topic: bytearray(_PREFIX[topic] + bytes(BODY_SIZE[KIND_BY_TOPIC[topic]])) for topic in TOPICS}
        hands = {topic: self._frames[topic] for topic in (HAND_LEFT, HAND_RIGHT)}
        self._joints = {
            topic: np.frombuffer(frame, JOINTS_DTYPE, 8 * N_JOINTS, len(_PREFIX[topic]) + JOINTS_OFFSET).reshape(
                N_JOINTS, 8
            )
            for topic, frame in hands.items()
        }

    def encode(self, message: Message) -> bytes:
        """The frame for ``message``."""
        payload, flags = message.payload, REPEAT if message.repeat else 0
        if isinstance(payload, Status):
            return self.status(payload, message.msg_seq, message.publish_t_ns, flags)
        return self.pose(payload, message.msg_seq, message.publish_t_ns, flags)

    def pose(self, pose: HeadPose | HandPose, msg_seq: int, publish_t_ns: int, message_flags: int = 0) -> bytes:
        """The frame of a head or hand pose sent as message ``msg_seq`` of its topic at ``publish_t_ns``."""
        if isinstance(pose, HeadPose):
            return self._head(pose, msg_seq, publish_t_ns, message_flags)
        if isinstance(pose, HandPose):
            return self._hand(pose, msg_seq, publish_t_ns, message_flags)
        raise InvalidInputError(f"cannot encode a {type(pose).__name__} as a pose; expected HeadPose or HandPose")

    def status(self, status: Status, msg_seq: int, publish_t_ns: int, message_flags: int = 0) -> bytes:
        """The frame of a status message."""
        rate = float(status.head_rate_hz)
        if not (math.isfinite(rate) and rate >= 0.0):
            raise InvalidInputError(f"head_rate_hz must be finite and >= 0, got {status.head_rate_hz}")
        frame = self._frames[STATUS]
        fields = (MAGIC, VERSION, KIND_BY_TOPIC[STATUS], int(TrackerState(status.state)), message_flags, rate, msg_seq,
                  publish_t_ns, status.messages_sent, status.messages_dropped)  # fmt: skip
        try:
            STATUS_STRUCT.pack_into(frame, len(_PREFIX[STATUS]), *fields)
        except struct.error:
            _require_uint("msg_seq", msg_seq, 64)
            _require_int64("publish_t_ns", publish_t_ns)
            _require_uint("messages_sent", status.messages_sent, 64)
            _require_uint("messages_dropped", status.messages_dropped, 64)
            raise InvalidInputError(f"status fields do not fit the wire format: {fields[3:]}") from None
        return bytes(frame)

    def _head(self, pose: HeadPose, msg_seq: int, publish_t_ns: int, message_flags: int) -> bytes:
        floats = [*pose.linear_velocity.tolist(), *pose.angular_velocity.tolist(), *pose.position.tolist(),
                  *pose.orientation.tolist()]  # fmt: skip
        _require_finite("velocities, position and orientation", floats)
        frame = self._frames[HEAD]
        fields = _header_scalars(pose, KIND_BY_TOPIC[HEAD], message_flags, msg_seq, publish_t_ns)
        _pack(HEAD_STRUCT, frame, len(_PREFIX[HEAD]), (*fields, *floats), pose, msg_seq, publish_t_ns)
        return bytes(frame)

    def _hand(self, pose: HandPose, msg_seq: int, publish_t_ns: int, message_flags: int) -> bytes:
        topic = HAND_LEFT if pose.side == "left" else HAND_RIGHT
        velocities = [*pose.linear_velocity.tolist(), *pose.angular_velocity.tolist()]
        _require_finite("velocities", velocities)
        joints = self._joints[topic]
        joints[:, 0:3] = pose.joint_positions
        joints[:, 3:7] = pose.joint_orientations
        joints[:, 7] = pose.joint_radii
        if not np.isfinite(joints).all():  # also catches values too large for float32, which became infinite
            raise InvalidInputError("hand joint positions, orientations and radii must be finite float32 values")
        frame, body = self._frames[topic], len(_PREFIX[topic])
        frame[body + JOINT_FLAGS_OFFSET : body + JOINT_FLAGS_OFFSET + N_JOINTS] = _joint_flag_bytes(
            pose.joint_valid, pose.joint_tracked
        )
        fields = _header_scalars(pose, KIND_BY_TOPIC[topic], message_flags, msg_seq, publish_t_ns)
        _pack(POSE_HEADER_STRUCT, frame, body, (*fields, *velocities), pose, msg_seq, publish_t_ns)
        return bytes(frame)


def _joint_flag_bytes(valid: np.ndarray, tracked: np.ndarray) -> bytes:
    """The 26 joint flag bytes. A bool array's bytes are 0 or 1, so read as one little-endian integer, times
    JOINT_VALID (3) or JOINT_TRACKED (12) sets every byte to its flag without carries: a few integer operations
    instead of several numpy calls, on the publisher's hot path."""
    valid_bits = int.from_bytes(valid.tobytes(), "little")
    tracked_bits = int.from_bytes(tracked.tobytes(), "little")
    if tracked_bits & ~valid_bits:
        raise InvalidInputError("a hand joint that is tracked must also be valid (joint_tracked implies joint_valid)")
    return (valid_bits * JOINT_VALID | tracked_bits * JOINT_TRACKED).to_bytes(N_JOINTS, "little")


def as_repeat(frame: bytes, publish_t_ns: int) -> bytes:
    """A pose frame as its re-send for late joiners (PROTOCOL.md, "Publisher behaviour"): ``repeat`` set, the
    tracked bits of the pose and of every joint cleared (a repeat is old data: valid, not tracked), a new
    ``publish_t_ns``; everything else, ``msg_seq`` included, unchanged."""
    repeat = bytearray(frame)
    body = repeat.index(0) + 1
    repeat[body + TRACKING_FLAGS_OFFSET] &= JOINT_VALID  # the pose's valid bits are the same two bits
    repeat[body + MESSAGE_FLAGS_OFFSET] |= REPEAT
    _PUBLISH_T_NS_STRUCT.pack_into(repeat, body + PUBLISH_T_NS_OFFSET, publish_t_ns)
    if repeat[body + KIND_OFFSET] != KIND_BY_TOPIC[HEAD]:  # a hand: its joints are old data too
        np.frombuffer(repeat, np.uint8, N_JOINTS, body + JOINT_FLAGS_OFFSET)[:] &= JOINT_VALID
    return bytes(repeat)


def _header_scalars(pose: HeadPose | HandPose, kind: int, message_flags: int, msg_seq: int, publish_t_ns: int) -> tuple:
    """The pose header's fields before the velocities, in ``_HEADER_SCALARS_FORMAT`` order."""
    af = pose.active_fraction
    if not 0.0 <= af <= 1.0:  # also false for NaN
        raise InvalidInputError(f"active_fraction must be within [0, 1], got {af}")
    return (MAGIC, VERSION, kind, pose.flags.to_bits(), message_flags, pose.exit_stage, af, msg_seq, pose.seq,
            pose.t_ns, publish_t_ns, pose.display_t_ns)  # fmt: skip


def _pack(layout: struct.Struct, frame: bytearray, offset: int, fields: tuple, pose: HeadPose | HandPose,
          msg_seq: int, publish_t_ns: int) -> None:  # fmt: skip
    """``layout.pack_into``, whose range checks on the integers are the encoder's; when one fails, say which."""
    try:
        layout.pack_into(frame, offset, *fields)
    except struct.error:
        _require_uint("msg_seq", msg_seq, 64)
        _require_uint("seq", pose.seq, 64)
        _require_uint("exit_stage", pose.exit_stage, 32)
        _require_int64("t_ns", pose.t_ns)
        _require_int64("publish_t_ns", publish_t_ns)
        _require_int64("display_t_ns", pose.display_t_ns)
        raise InvalidInputError(f"pose header fields do not fit the wire format: {fields}") from None


def _require_finite(name: str, values: list[float]) -> None:
    if not all(map(math.isfinite, values)):
        raise InvalidInputError(f"{name} must be finite, got {values}")


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
    topic = _TOPIC_BY_NAME.get(data[:cut])
    if topic is None:
        name = data[:cut].decode("ascii", errors="replace")
        raise ProtocolError(f"unknown topic {name!r}; topics are {', '.join(TOPICS)}")
    body = cut + 1
    size = len(data) - body
    if size < 6:
        raise ProtocolError(f"{topic} body is {size} bytes, too short to hold magic, version and kind")
    if data[body : body + 4] != MAGIC:
        raise ProtocolError(f"bad magic {data[body : body + 4]!r}, expected {MAGIC!r}")
    if data[body + 4] != VERSION:
        raise ProtocolError(f"unsupported protocol version {data[body + 4]}; this decoder reads version {VERSION}")
    kind = data[body + KIND_OFFSET]
    if TOPIC_BY_KIND.get(kind) != topic:
        raise ProtocolError(f"message kind {kind} does not match topic {topic!r} (expected {KIND_BY_TOPIC[topic]})")
    if size != BODY_SIZE[kind]:
        raise ProtocolError(f"{topic} body must be {BODY_SIZE[kind]} bytes in version {VERSION}, got {size}")
    if topic == STATUS:
        return _decode_status(STATUS_STRUCT.unpack_from(data, body))
    return _decode_pose(topic, data, body)


def _decode_pose(topic: str, data: bytes, body: int) -> Message:
    """A head or hand message. Every field is checked here, against the rules the pose constructors apply, so the
    pose is built without running them again (a decode is on every subscriber's hot path)."""
    (_, _, _, tracking_bits, message_flags, exit_stage, active_fraction, msg_seq, seq, t_ns, publish_t_ns,
     display_t_ns) = _HEADER_SCALARS_STRUCT.unpack_from(data, body)  # fmt: skip
    _check_flags(tracking_bits, message_flags)
    if not 0.0 <= active_fraction <= 1.0:  # also false for NaN
        raise ProtocolError(f"active_fraction {active_fraction} is not within [0, 1]")
    head = topic == HEAD
    values = (_HEAD_FLOATS if head else _HAND_FLOATS).unpack_from(data, body + FLOATS_OFFSET)
    if not all(map(math.isfinite, values)):  # struct and math: a few calls fewer than numpy on a cold cache
        raise ProtocolError(f"{topic} message has NaN or infinite velocities, position or orientation")
    floats = np.array(values)
    fields = {
        "seq": seq, "t_ns": t_ns, "linear_velocity": floats[0:3], "angular_velocity": floats[3:6],
        "flags": _TRACKING_FLAGS[tracking_bits], "display_t_ns": display_t_ns, "exit_stage": exit_stage,
        "active_fraction": active_fraction,
    }  # fmt: skip
    if head:
        orientation = floats[9:13]
        if not abs(math.hypot(*values[9:13]) - 1.0) <= 1e-3:
            raise ProtocolError(f"head orientation {orientation} is not a unit quaternion (x, y, z, w)")
        fields["position"], fields["orientation"] = floats[6:9], orientation
        payload = build_prechecked(HeadPose, fields)
    else:
        payload = _decode_hand(topic, data, body, fields)
    return Message(payload, msg_seq, publish_t_ns, bool(message_flags & REPEAT))


def _decode_hand(topic: str, data: bytes, body: int, fields: dict) -> HandPose:
    joint_flags = np.frombuffer(data, np.uint8, N_JOINTS, body + JOINT_FLAGS_OFFSET)
    flag_bytes = data[body + JOINT_FLAGS_OFFSET : body + JOINT_FLAGS_OFFSET + N_JOINTS]
    if flag_bytes.translate(None, _JOINT_FLAG_VALUES):  # a byte left over is not an allowed value
        i = int(np.argmin(np.isin(joint_flags, tuple(_JOINT_FLAG_VALUES))))
        raise ProtocolError(f"joint {i} has flags {joint_flags[i]:#04x}; allowed are 0x00, 0x03 and 0x0f")
    joints = np.frombuffer(data, JOINTS_DTYPE, 8 * N_JOINTS, body + JOINTS_OFFSET).reshape(N_JOINTS, 8)
    if not np.isfinite(joints).all():  # before the cast, which warns about signalling NaNs
        raise ProtocolError(f"{topic} message has NaN or infinite joint values")
    joints = joints.astype(np.float64)
    fields.update(
        side=topic.split("/")[1], joint_positions=joints[:, 0:3], joint_orientations=joints[:, 3:7],
        joint_radii=joints[:, 7].copy(), joint_valid=_JOINT_IS_VALID[joint_flags],
        joint_tracked=_JOINT_IS_TRACKED[joint_flags],
    )  # fmt: skip
    return build_prechecked(HandPose, fields)


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
