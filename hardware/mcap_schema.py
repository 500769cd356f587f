"""The message layout of SkipTrack recordings: how frames, gaps, poses and the rig become MCAP payloads.

Every message uses the ``skiptrack.arrays.v1`` encoding (documented byte for byte in docs/sources.md):

    uint32 little-endian  H       length of the JSON header in bytes
    H bytes               header  UTF-8 JSON: {"fields": {...}, "arrays": [{"name", "dtype", "shape"}, ...]}
    payload               the arrays' raw bytes, C order, one after the other in header order

``dtype`` is a numpy type string with explicit byte order (``"|u1"``, ``"<f8"``, ``"|b1"``), so any language can
decode a message without numpy, and decoding gives the arrays back bit for bit.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

from skiptrack_types import (
    CameraModel,
    CameraModelKind,
    Frame,
    Gap,
    HandPose,
    HandTruth,
    HeadPose,
    SourceError,
    StereoRig,
    TrackingFlags,
    Truth,
)

ARRAYS_ENCODING = "skiptrack.arrays.v1"
ARRAYS_MEDIA_TYPE = "application/x-skiptrack-arrays"
FORMAT_VERSION = "1"

TOPIC_FRAME = "/frame"
TOPIC_IMU = "/imu"
TOPIC_TRUTH = "/truth"
TOPIC_GAP = "/gap"
TOPIC_HEAD_POSE = "/pose/head"
RIG_ATTACHMENT = "rig.json"
LANDMARKS_ATTACHMENT = "landmarks_world"
METADATA_NAME = "skiptrack"

_HEADER_LEN = struct.Struct("<I")


def image_topic(camera: int) -> str:
    return f"/cam{camera}/image"


def is_image_topic(topic: str) -> bool:
    return topic.startswith("/cam") and topic.endswith("/image")


def hand_pose_topic(side: str) -> str:
    return f"/pose/hand/{side}"


@dataclass
class Payload:
    """A decoded message: JSON ``fields`` and named ``arrays``."""

    fields: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def encode(payload: Payload) -> bytes:
    """Serialise a payload into the ``skiptrack.arrays.v1`` layout."""
    specs, blobs = [], []
    for name, array in payload.arrays.items():
        a = np.ascontiguousarray(array)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        specs.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape)})
        blobs.append(a.tobytes())
    header = json.dumps({"fields": payload.fields, "arrays": specs}, separators=(",", ":")).encode()
    return b"".join([_HEADER_LEN.pack(len(header)), header, *blobs])


def decode(data: bytes) -> Payload:
    """Parse a ``skiptrack.arrays.v1`` message; arrays are writable copies."""
    try:
        (n,) = _HEADER_LEN.unpack_from(data, 0)
        header = json.loads(data[4 : 4 + n])
        arrays, offset = {}, 4 + n
        for spec in header["arrays"]:
            dtype = np.dtype(spec["dtype"])
            count = int(np.prod(spec["shape"], dtype=np.int64))
            a = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(spec["shape"])
            arrays[spec["name"]] = a.astype(dtype.newbyteorder("="), copy=True)
            offset += count * dtype.itemsize
        return Payload(header["fields"], arrays)
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"corrupt {ARRAYS_ENCODING} message ({exc}); the recording is damaged") from exc


# --------------------------------------------------------------------------------------------------- frames


def frame_parts(frame: Frame) -> list[tuple[str, Payload]]:
    """The messages of one frame, in writing order; the ``/frame`` message comes last and marks it complete."""
    stamp = {"seq": frame.seq, "t_ns": frame.t_ns}
    parts = [(image_topic(i), Payload(stamp, {"image": img})) for i, img in enumerate(frame.images)]
    if frame.imu is not None:
        parts.append((TOPIC_IMU, Payload(stamp, {"samples": frame.imu})))
    if frame.truth is not None:
        parts.append((TOPIC_TRUTH, truth_payload(frame.truth, stamp)))
    marker = {**stamp, "cameras": len(frame.images), "imu": frame.imu is not None, "truth": frame.truth is not None}
    parts.append((TOPIC_FRAME, Payload(marker)))
    return parts


def frame_from_parts(marker: Payload, parts: dict[str, Payload]) -> Frame:
    """Rebuild a frame from its ``/frame`` marker and the other messages with the same seq (by topic)."""
    f = marker.fields
    try:
        images = tuple(parts[image_topic(i)].arrays["image"] for i in range(f["cameras"]))
        imu = parts[TOPIC_IMU].arrays["samples"] if f["imu"] else None
        truth = truth_from_payload(parts[TOPIC_TRUTH]) if f["truth"] else None
    except KeyError as exc:
        raise SourceError(f"frame {f.get('seq')} is missing its {exc} message; the recording is damaged") from exc
    return Frame(f["seq"], f["t_ns"], images, imu, truth)


def truth_payload(truth: Truth, fields: dict) -> Payload:
    arrays = {"T_world_head": truth.T_world_head}
    for hand in truth.hands:
        arrays[f"{hand.side}/joints_world"] = hand.joints_world
        for i, (px, vis) in enumerate(zip(hand.joints_px, hand.visible, strict=True)):
            arrays[f"{hand.side}/joints_px/{i}"] = px
            arrays[f"{hand.side}/visible/{i}"] = vis
    for i, (px, vis) in enumerate(zip(truth.landmarks_px, truth.landmarks_visible, strict=True)):
        arrays[f"landmarks_px/{i}"] = px
        arrays[f"landmarks_visible/{i}"] = vis
    hands = [{"side": h.side, "cameras": len(h.joints_px)} for h in truth.hands]
    return Payload({**fields, "hands": hands, "landmark_cameras": len(truth.landmarks_px)}, arrays)


def truth_from_payload(payload: Payload) -> Truth:
    a, f = payload.arrays, payload.fields
    hands = tuple(
        HandTruth(
            h["side"],
            a[f"{h['side']}/joints_world"],
            tuple(a[f"{h['side']}/joints_px/{i}"] for i in range(h["cameras"])),
            tuple(a[f"{h['side']}/visible/{i}"] for i in range(h["cameras"])),
        )
        for h in f["hands"]
    )
    n = f["landmark_cameras"]
    return Truth(
        a["T_world_head"],
        hands,
        tuple(a[f"landmarks_px/{i}"] for i in range(n)),
        tuple(a[f"landmarks_visible/{i}"] for i in range(n)),
    )


def gap_payload(gap: Gap) -> Payload:
    return Payload({"first_seq": gap.first_seq, "count": gap.count, "t_ns": gap.t_ns, "reason": gap.reason})


def gap_from_payload(payload: Payload) -> Gap:
    f = payload.fields
    return Gap(f["first_seq"], f["count"], f["t_ns"], f["reason"])


# --------------------------------------------------------------------------------------------------- poses


def pose_payload(pose: HeadPose | HandPose) -> Payload:
    """A published pose (head or hand) as a payload; flags as OpenXR ``XrSpaceLocationFlags`` bits."""
    fields = {
        "seq": pose.seq,
        "t_ns": pose.t_ns,
        "display_t_ns": pose.display_t_ns,
        "flags": pose.flags.to_bits(),
        "exit_stage": pose.exit_stage,
        "active_fraction": pose.active_fraction,
    }
    arrays = {"linear_velocity": pose.linear_velocity, "angular_velocity": pose.angular_velocity}
    if isinstance(pose, HandPose):
        fields["side"] = pose.side
        for name in ("joint_positions", "joint_orientations", "joint_radii", "joint_valid", "joint_tracked"):
            arrays[name] = getattr(pose, name)
    else:
        arrays["position"] = pose.position
        arrays["orientation"] = pose.orientation
    return Payload(fields, arrays)


def pose_from_payload(payload: Payload) -> HeadPose | HandPose:
    f, a = payload.fields, payload.arrays
    common = {
        "seq": f["seq"],
        "t_ns": f["t_ns"],
        "linear_velocity": a["linear_velocity"],
        "angular_velocity": a["angular_velocity"],
        "flags": TrackingFlags.from_bits(f["flags"]),
        "display_t_ns": f["display_t_ns"],
        "exit_stage": f["exit_stage"],
        "active_fraction": f["active_fraction"],
    }
    if "side" in f:
        joints = ("joint_positions", "joint_orientations", "joint_radii", "joint_valid", "joint_tracked")
        return HandPose(side=f["side"], **{k: a[k] for k in joints}, **common)
    return HeadPose(position=a["position"], orientation=a["orientation"], **common)


# --------------------------------------------------------------------------------------------------- rig


def rig_to_json(rig: StereoRig) -> bytes:
    """The rig as JSON: per camera size, model kind, K (row-major 3x3) and distortion; transforms row-major 4x4."""

    def camera(cam: CameraModel) -> dict:
        return {
            "width": cam.width,
            "height": cam.height,
            "kind": cam.kind.value,
            "K": cam.K.tolist(),
            "dist": cam.dist.tolist(),
        }

    doc = {
        "cam0": camera(rig.cam0),
        "cam1": camera(rig.cam1),
        "T_cam0_cam1": rig.T_cam0_cam1.tolist(),
        "T_head_cam0": rig.T_head_cam0.tolist(),
        "T_head_imu": rig.T_head_imu.tolist(),
    }
    return json.dumps(doc, indent=2).encode()


def rig_from_json(data: bytes) -> StereoRig:
    try:
        doc = json.loads(data)

        def camera(d: dict) -> CameraModel:
            return CameraModel(
                d["width"], d["height"], np.array(d["K"]), np.array(d["dist"]), CameraModelKind(d["kind"])
            )

        return StereoRig(
            camera(doc["cam0"]),
            camera(doc["cam1"]),
            np.array(doc["T_cam0_cam1"]),
            np.array(doc["T_head_cam0"]),
            np.array(doc["T_head_imu"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"the recording's {RIG_ATTACHMENT} attachment is not a valid rig ({exc})") from exc
