"""Wire protocol v1: round trips, frozen test vectors, and fuzzing of the decoder."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.demo import hand_pose, head_pose
from bridge.errors import ProtocolError
from bridge.protocol import (
    BODY_SIZE,
    HEAD_FORMAT,
    KIND_BY_TOPIC,
    Encoder,
    Message,
    as_repeat,
    decode,
    encode,
    subscription,
)
from bridge.status import Status, TrackerState
from skiptrack_types import HandPose, HeadPose, InvalidInputError, SkipTrackError, TrackingFlags

T0 = 5_000_000_000


VECTORS = json.loads((Path(__file__).parent / "data" / "protocol_vectors_v1.json").read_text())


def _body(frame: bytes) -> bytes:
    return frame[frame.index(0) + 1 :]


# --------------------------------------------------------------------------------------------------- round trips


def test_head_round_trip_preserves_every_field():
    pose = head_pose(17, T0)
    message = decode(encode(Message(pose, msg_seq=3, publish_t_ns=T0 + 1000)))
    got = message.payload
    assert isinstance(got, HeadPose)
    assert (message.msg_seq, message.publish_t_ns, message.repeat, message.topic) == (3, T0 + 1000, False, "head")
    assert (got.seq, got.t_ns, got.display_t_ns, got.exit_stage) == (17, T0, T0, 1)
    assert got.flags == TrackingFlags.tracked()
    np.testing.assert_array_equal(got.position, pose.position)
    np.testing.assert_array_equal(got.orientation, pose.orientation)
    np.testing.assert_array_equal(got.linear_velocity, pose.linear_velocity)
    np.testing.assert_array_equal(got.angular_velocity, pose.angular_velocity)
    assert got.active_fraction == pytest.approx(0.25)


def test_hand_round_trip_keeps_joints_to_float32_precision():
    pose = hand_pose("right", 5, T0)
    valid = pose.joint_valid.copy()
    valid[7] = False
    tracked = valid.copy()
    tracked[3] = False
    pose = HandPose(**{**pose.__dict__, "joint_valid": valid, "joint_tracked": tracked})
    got = decode(encode(Message(pose, 0, T0))).payload
    assert isinstance(got, HandPose) and got.side == "right"
    np.testing.assert_allclose(got.joint_positions, pose.joint_positions, atol=1e-6)
    np.testing.assert_allclose(got.joint_orientations, pose.joint_orientations, atol=1e-7)
    np.testing.assert_allclose(got.joint_radii, pose.joint_radii, atol=1e-9)
    np.testing.assert_array_equal(got.joint_valid, valid)
    np.testing.assert_array_equal(got.joint_tracked, tracked)
    np.testing.assert_array_equal(got.linear_velocity, pose.linear_velocity)


@pytest.mark.parametrize("pose", [head_pose(17, T0), hand_pose("left", 5, T0)], ids=["head", "hand"])
def test_decoded_pose_is_the_pose_its_constructor_would_build(pose):
    """The decoder checks every value itself and skips the constructor's checks: the result must still be
    exactly what the constructor accepts and builds (every field present, the same types)."""
    got = decode(encode(Message(pose, 0, T0))).payload
    rebuilt = type(got)(**{f.name: getattr(got, f.name) for f in fields(got)})
    assert got.__dict__.keys() == rebuilt.__dict__.keys() == {f.name for f in fields(got)}
    for name, value in got.__dict__.items():
        assert type(value) is type(rebuilt.__dict__[name]), name


def test_decoder_rejects_a_head_orientation_that_is_not_a_unit_quaternion():
    frame = bytearray(encode(Message(head_pose(1, T0), 0, T0)))
    offset = frame.index(0) + 1 + struct.calcsize(HEAD_FORMAT) - 8  # the orientation's w
    struct.pack_into("<d", frame, offset, 2.0)
    with pytest.raises(ProtocolError, match="unit quaternion"):
        decode(bytes(frame))


def test_status_round_trip():
    status = Status(TrackerState.LOST, 89.5, 1234, 5)
    message = decode(encode(Message(status, msg_seq=9, publish_t_ns=T0)))
    assert message.payload == status
    assert (message.topic, message.msg_seq, message.publish_t_ns) == ("status", 9, T0)


def test_repeat_flag_round_trips():
    assert decode(encode(Message(head_pose(1, T0), 4, T0, repeat=True))).repeat is True


def test_frame_starts_with_the_exact_subscription_prefix():
    for pose, topic in ((head_pose(0, T0), "head"), (hand_pose("left", 0, T0), "hand/left")):
        frame = encode(Message(pose, 0, T0))
        assert frame.startswith(subscription(topic))
        assert subscription(topic) == topic.encode() + b"\x00"


def test_body_sizes_match_the_documented_table():
    assert BODY_SIZE == {1: 160, 2: 962, 3: 962, 4: 48}
    frame = encode(Message(head_pose(0, T0), 0, T0))
    assert len(frame) == len("head") + 1 + 160


def test_head_fields_sit_at_their_documented_offsets():
    pose = head_pose(42, T0)
    body = _body(encode(Message(pose, msg_seq=7, publish_t_ns=T0 + 5)))
    assert body[0:4] == b"SKTP" and body[4] == 1 and body[5] == KIND_BY_TOPIC["head"]
    assert body[6] == 0x0F and body[7] == 0
    assert struct.unpack_from("<IfQQqqq", body, 8) == (1, 0.25, 7, 42, T0, T0 + 5, T0)
    assert struct.unpack_from("<3d", body, 104) == tuple(pose.position)
    assert struct.unpack_from("<4d", body, 128) == tuple(pose.orientation)
    assert struct.calcsize(HEAD_FORMAT) == len(body)


# --------------------------------------------------------------------------------------------------- encoder checks


def test_encode_refuses_a_tracked_joint_that_is_not_valid():
    pose = hand_pose("left", 0, T0)
    valid = pose.joint_valid.copy()
    valid[4] = False
    bad = HandPose(**{**pose.__dict__, "joint_valid": valid})
    with pytest.raises(InvalidInputError, match="tracked must also be valid"):
        encode(Message(bad, 0, T0))


def test_encode_refuses_a_negative_message_sequence():
    with pytest.raises(InvalidInputError, match="msg_seq"):
        encode(Message(head_pose(0, T0), -1, T0))


def test_encode_refuses_active_fraction_above_one():
    pose = HeadPose(**{**head_pose(0, T0).__dict__, "active_fraction": 1.5})
    with pytest.raises(InvalidInputError, match="active_fraction"):
        encode(Message(pose, 0, T0))


def test_encode_names_an_integer_field_that_does_not_fit():
    pose = HeadPose(**{**head_pose(0, T0).__dict__, "exit_stage": 1 << 32})
    with pytest.raises(InvalidInputError, match="exit_stage"):
        encode(Message(pose, 0, T0))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_encode_refuses_joint_values_too_large_for_float32():
    pose = hand_pose("left", 0, T0)
    positions = pose.joint_positions.copy()
    positions[3, 1] = 1e39
    with pytest.raises(InvalidInputError, match="finite float32"):
        encode(Message(HandPose(**{**pose.__dict__, "joint_positions": positions}), 0, T0))


# --------------------------------------------------------------------------------------------------- Encoder


def test_encoder_writes_the_same_frames_as_encode():
    encoder = Encoder()
    for pose in (head_pose(4, T0), hand_pose("left", 4, T0), hand_pose("right", 4, T0)):
        assert encoder.pose(pose, 11, T0 + 7) == encode(Message(pose, 11, T0 + 7))
    status = Status(TrackerState.TRACKING, 90.0, 12, 1)
    assert encoder.status(status, 3, T0) == encode(Message(status, 3, T0))


def test_encoder_frames_stay_valid_after_the_next_encode_of_their_topic():
    encoder = Encoder()
    first = encoder.pose(hand_pose("left", 1, T0), 1, T0)
    encoder.pose(hand_pose("left", 2, T0 + 1), 2, T0 + 1)
    assert decode(first).payload.seq == 1


def test_encoder_after_a_refused_pose_encodes_the_next_one_correctly():
    encoder = Encoder()
    pose = hand_pose("right", 3, T0)
    valid = pose.joint_valid.copy()
    valid[5] = False  # joint 5 stays tracked: not encodable
    broken = HandPose(**{**pose.__dict__, "joint_valid": valid})
    with pytest.raises(InvalidInputError):
        encoder.pose(broken, 0, T0)
    assert encoder.pose(pose, 0, T0) == encode(Message(pose, 0, T0))


@pytest.mark.parametrize("pose", [head_pose(9, T0), hand_pose("left", 9, T0)], ids=["head", "hand"])
def test_as_repeat_is_the_pose_re_sent_valid_but_not_tracked(pose):
    frame = encode(Message(pose, 21, T0))
    untracked = replace(pose, flags=TrackingFlags.predicted())
    if isinstance(pose, HandPose):
        untracked = replace(untracked, joint_tracked=np.zeros(26, bool))
    assert as_repeat(frame, T0 + 500) == encode(Message(untracked, 21, T0 + 500, repeat=True))
    assert decode(frame).repeat is False  # the original frame is left as it was


# --------------------------------------------------------------------------------------------------- test vectors


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_vector_decodes_to_its_known_fields(vector):
    message = decode(bytes.fromhex(vector["hex"]))
    fields = vector["fields"]
    payload = message.payload
    assert (message.topic, message.msg_seq, message.publish_t_ns, message.repeat) == (
        fields["topic"], fields["msg_seq"], fields["publish_t_ns"], fields["repeat"],
    )  # fmt: skip
    if isinstance(payload, Status):
        assert payload == Status(
            TrackerState[fields["state"]], fields["head_rate_hz"], fields["messages_sent"], fields["messages_dropped"]
        )
        return
    assert (payload.seq, payload.t_ns, payload.display_t_ns, payload.exit_stage) == (
        fields["seq"], fields["t_ns"], fields["display_t_ns"], fields["exit_stage"],
    )  # fmt: skip
    assert payload.flags.to_bits() == fields["tracking_flags"]
    assert payload.active_fraction == fields["active_fraction"]
    for name in ("linear_velocity", "angular_velocity", "position", "orientation"):
        assert list(getattr(payload, name)) == fields[name], name
    if isinstance(payload, HandPose):
        joints = np.array(fields["joints"])
        np.testing.assert_array_equal(payload.joint_positions, joints[:, 0:3])
        np.testing.assert_array_equal(payload.joint_orientations, joints[:, 3:7])
        np.testing.assert_array_equal(payload.joint_radii, joints[:, 7])
        np.testing.assert_array_equal(payload.joint_valid, (joints[:, 8].astype(int) & 3) == 3)
        np.testing.assert_array_equal(payload.joint_tracked, (joints[:, 8].astype(int) & 12) == 12)


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_vector_reencodes_byte_identically(vector):
    frame = bytes.fromhex(vector["hex"])
    assert encode(decode(frame)) == frame


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector_is_rejected_with_protocol_error(vector):
    with pytest.raises(ProtocolError):
        decode(bytes.fromhex(vector["hex"]))


def test_protocol_error_is_a_skiptrack_error():
    assert issubclass(ProtocolError, SkipTrackError)


# --------------------------------------------------------------------------------------------------- fuzzing

_HEAD = encode(Message(head_pose(3, T0), 1, T0))
_HAND = encode(Message(hand_pose("left", 3, T0), 1, T0))
_STATUS = encode(Message(Status(), 1, T0))
_FRAMES = st.sampled_from([_HEAD, _HAND, _STATUS])


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100))
def test_random_bytes_raise_nothing_but_protocol_error(data):
    _decode_or_protocol_error(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"head\x00", b"hand/left\x00", b"status\x00"]), st.binary(max_size=1000))
def test_random_bodies_after_a_valid_topic_raise_nothing_but_protocol_error(topic, body):
    _decode_or_protocol_error(topic + b"SKTP\x01" + body)


@settings(max_examples=200, deadline=None)
@given(_FRAMES, st.data())
def test_truncated_or_extended_frames_are_rejected(frame, data):
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ProtocolError):
        decode(frame[:cut])
    with pytest.raises(ProtocolError):
        decode(frame + data.draw(st.binary(min_size=1, max_size=16)))


@settings(max_examples=100, deadline=None)
@given(_FRAMES, st.integers(0, 255).filter(lambda v: v != 1))
def test_other_versions_are_rejected(frame, version):
    cut = frame.index(0) + 1
    changed = bytearray(frame)
    changed[cut + 4] = version
    with pytest.raises(ProtocolError, match="version"):
        decode(bytes(changed))


@settings(max_examples=200, deadline=None)
@given(st.data(), st.sampled_from([math.nan, math.inf, -math.inf]))
def test_non_finite_values_anywhere_are_rejected(data, bad):
    frame = data.draw(st.sampled_from([_HEAD, _HAND]))
    body_at = frame.index(0) + 1
    changed = bytearray(frame)
    if frame is _HEAD:  # float64 fields: velocities, position, orientation
        offset = data.draw(st.sampled_from(range(56, 160, 8)))
        changed[body_at + offset : body_at + offset + 8] = struct.pack("<d", bad)
    else:  # float32 fields: active fraction, or any joint value
        offset = data.draw(st.sampled_from([12, *range(104, 936, 4)]))
        changed[body_at + offset : body_at + offset + 4] = struct.pack("<f", bad)
    with pytest.raises(ProtocolError):
        decode(bytes(changed))


@settings(max_examples=300, deadline=None)
@given(_FRAMES, st.data())
def test_bit_flips_raise_nothing_but_protocol_error(frame, data):
    changed = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frame) - 1))
        changed[i] ^= 1 << data.draw(st.integers(0, 7))
    _decode_or_protocol_error(bytes(changed))
