"""Crash-safe session recordings in MCAP: ``Recorder`` writes them, ``RecordingReader`` reads them back.

A recording is a chunked, zstd-compressed MCAP file. The rig and landmark map are attachments written first;
every frame becomes one message per image, IMU block and truth, followed by a ``/frame`` marker message (layouts in
hardware/mcap_schema.py and docs/sources.md). Chunks are closed and flushed to the operating system at frame
boundaries at least every ``flush_interval_s`` of data or of wall time, so a killed recorder (SIGKILL, power cut
of the process) loses at most the chunk in progress. The reader reads records sequentially and keeps every chunk
whose CRC checks, so a truncated file replays up to its last complete chunk.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import mcap.exceptions
import numpy as np
import zstandard
from mcap.records import Attachment, Channel, Chunk, Message, Metadata
from mcap.stream_reader import CRCValidationError, StreamReader, breakup_chunk
from mcap.writer import CompressionType, Writer

from hardware import mcap_schema as schema
from skiptrack_types import Frame, Gap, HandPose, HeadPose, SkipTrackError, SourceError, StereoRig

log = logging.getLogger(__name__)

T = TypeVar("T")

_NEVER_AUTO_CHUNK = 1 << 62  # chunks are closed by the Recorder at frame boundaries, never by the Writer


class RecordingError(SkipTrackError):
    """A recording could not be written (unwritable path, disk full). What was flushed before stays readable."""


class Recorder:
    """Write frames, gaps and the tracker's poses to an MCAP file.

    ``rig`` and ``landmarks_world`` (N, 3) metres are stored as attachments, ``rate_hz`` and ``source`` as metadata.
    A chunk is closed when it holds ``flush_interval_s`` of data, when that much wall time passed since the last
    flush, or when it reaches ``chunk_bytes``; each close is flushed to the operating system.
    """

    def __init__(
        self,
        path: str | Path,
        rig: StereoRig | None = None,
        landmarks_world: np.ndarray | None = None,
        rate_hz: float | None = None,
        source: str = "",
        flush_interval_s: float = 1.0,
        chunk_bytes: int = 16 << 20,
    ) -> None:
        self.path = Path(path)
        self.flush_interval_ns = int(flush_interval_s * 1e9)
        self.chunk_bytes = chunk_bytes
        self.frames_written = 0
        self.frames_flushed = 0
        try:
            self._stream = open(self.path, "wb")  # owned by the Recorder until close(), not a with-block
        except OSError as exc:
            raise RecordingError(
                f"cannot create recording {self.path}: {exc.strerror}; choose a writable path (does the folder exist?)"
            ) from exc
        self._writer = Writer(self._stream, chunk_size=_NEVER_AUTO_CHUNK, compression=CompressionType.ZSTD)
        self._channels: dict[str, int] = {}
        self._chunk_bytes = 0
        self._chunk_t0_ns: int | None = None
        self._last_flush_wall_ns = time.monotonic_ns()
        self._failed: RecordingError | None = None
        self._closed = False
        try:
            self._guard(self._start, rig, landmarks_world, rate_hz, source)
        except RecordingError:
            self.close()
            raise

    def _start(self, rig: StereoRig | None, landmarks: np.ndarray | None, rate_hz: float | None, source: str) -> None:
        self._writer.start(profile="skiptrack", library="skiptrack")
        now = time.time_ns()
        meta = {"format_version": schema.FORMAT_VERSION, "source": source, "rate_hz": json.dumps(rate_hz)}
        self._writer.add_metadata(schema.METADATA_NAME, meta)
        if rig is not None:
            self._writer.add_attachment(now, now, schema.RIG_ATTACHMENT, "application/json", schema.rig_to_json(rig))
        if landmarks is not None:
            data = schema.encode(schema.Payload(arrays={"landmarks_world": np.asarray(landmarks, dtype=np.float64)}))
            self._writer.add_attachment(now, now, schema.LANDMARKS_ATTACHMENT, schema.ARRAYS_MEDIA_TYPE, data)
        self._stream.flush()

    # ----------------------------------------------------------------------------------------------- writing

    def write_frame(self, frame: Frame) -> None:
        """Append one frame (images, IMU, truth); may close and flush a chunk after it."""
        for topic, payload in schema.frame_parts(frame):
            self._put(topic, payload, frame.t_ns, frame.seq)
        self.frames_written += 1
        self._maybe_flush(frame.t_ns)

    def write_gap(self, gap: Gap) -> None:
        self._put(schema.TOPIC_GAP, schema.gap_payload(gap), gap.t_ns, gap.first_seq)
        self._maybe_flush(gap.t_ns)

    def write_pose(self, pose: HeadPose | HandPose) -> None:
        """Append a pose the tracker published (``/pose/head`` or ``/pose/hand/<side>``), stamped with its t_ns."""
        topic = schema.hand_pose_topic(pose.side) if isinstance(pose, HandPose) else schema.TOPIC_HEAD_POSE
        self._put(topic, schema.pose_payload(pose), pose.t_ns, pose.seq)

    def write_message(
        self, topic: str, fields: dict, arrays: dict[str, np.ndarray] | None = None, t_ns: int = 0, seq: int = 0
    ) -> None:
        """Append any message in the ``skiptrack.arrays.v1`` layout: JSON-serialisable ``fields`` plus arrays."""
        self._put(topic, schema.Payload(dict(fields), dict(arrays or {})), t_ns, seq)

    def flush(self) -> None:
        """Close the chunk in progress and hand it to the operating system."""
        self._guard(self._writer.flush)
        self._chunk_bytes = 0
        self._chunk_t0_ns = None
        self._last_flush_wall_ns = time.monotonic_ns()
        self.frames_flushed = self.frames_written

    def close(self) -> None:
        """Finish the file (summary and index); after a write error only release it. Safe to call twice."""
        if self._closed:
            return
        try:
            if self._failed is None:
                self._guard(self._writer.finish)
                self.frames_flushed = self.frames_written
        finally:
            self._closed = True
            try:
                self._stream.close()
            except OSError as exc:
                log.warning("closing %s failed (%s); complete chunks already written stay readable", self.path, exc)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------- internals

    def _put(self, topic: str, payload: schema.Payload, t_ns: int, seq: int) -> None:
        data = schema.encode(payload)
        channel = self._channels.get(topic)
        if channel is None:
            channel = self._guard(self._writer.register_channel, topic, schema.ARRAYS_ENCODING, 0)
            self._channels[topic] = channel
        self._guard(self._writer.add_message, channel, t_ns, data, time.monotonic_ns(), seq & 0xFFFFFFFF)
        self._chunk_bytes += len(data)
        if self._chunk_t0_ns is None:
            self._chunk_t0_ns = t_ns

    def _maybe_flush(self, t_ns: int) -> None:
        data_span = t_ns - (self._chunk_t0_ns if self._chunk_t0_ns is not None else t_ns)
        wall_span = time.monotonic_ns() - self._last_flush_wall_ns
        if (
            data_span >= self.flush_interval_ns
            or wall_span >= self.flush_interval_ns
            or (self._chunk_bytes >= self.chunk_bytes)
        ):
            self.flush()

    def _guard(self, fn: Callable[..., T], *args: object) -> T:
        """Run a write; turn OS errors into one RecordingError and refuse further writes after it."""
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise RecordingError(f"recording {self.path} is closed; open a new Recorder to write more")
        try:
            return fn(*args)
        except OSError as exc:
            self._failed = RecordingError(
                f"writing recording {self.path} failed: {exc.strerror or exc} (disk full or file too large?); "
                f"the {self.frames_flushed} frames flushed before stay readable, free space and record again "
                "for the rest"
            )
            self._failed.__cause__ = exc
            raise self._failed from exc


# --------------------------------------------------------------------------------------------------- reading


@dataclass
class RecordedMessage:
    topic: str
    log_time_ns: int
    sequence: int
    payload: schema.Payload


class RecordingReader:
    """Read a recording written by ``Recorder``, complete or truncated.

    ``rig``, ``landmarks_world`` (N, 3) or None, and ``metadata`` are read at construction. ``messages()`` and
    ``items()`` stream the file from the start each time they are called. After a full pass, ``truncated`` says
    whether the file ended early and ``complete_chunks`` how many chunks were recovered.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"recording {self.path} does not exist; pass the path of a .mcap file")
        self.rig: StereoRig | None = None
        self.landmarks_world: np.ndarray | None = None
        self.metadata: dict[str, str] = {}
        self.truncated = False
        self.complete_chunks = 0
        with open(self.path, "rb") as f:
            for record in self._records(f):
                if isinstance(record, Chunk):
                    break
                self._take_header_record(record)
        if self.metadata.get("format_version") not in (None, schema.FORMAT_VERSION):
            raise SourceError(
                f"recording {self.path} has format version {self.metadata['format_version']}, this SkipTrack reads "
                f"version {schema.FORMAT_VERSION}; update SkipTrack"
            )

    @property
    def rate_hz(self) -> float | None:
        return json.loads(self.metadata.get("rate_hz", "null"))

    @property
    def source(self) -> str:
        return self.metadata.get("source", "")

    def messages(self) -> Iterator[RecordedMessage]:
        """Every message of every complete chunk, in file order."""
        channels: dict[int, Channel] = {}
        self.complete_chunks = 0
        with open(self.path, "rb") as f:
            for record in self._records(f):
                if not isinstance(record, Chunk):
                    continue
                try:
                    inner = breakup_chunk(record, validate_crc=True)
                except (CRCValidationError, zstandard.ZstdError, mcap.exceptions.McapError, ValueError) as exc:
                    self._note_truncation(f"damaged chunk ({exc})")
                    return
                self.complete_chunks += 1
                for rec in inner:
                    if isinstance(rec, Channel):
                        channels[rec.id] = rec
                    elif isinstance(rec, Message) and rec.channel_id in channels:
                        yield RecordedMessage(
                            channels[rec.channel_id].topic, rec.log_time, rec.sequence, schema.decode(rec.data)
                        )

    def items(self) -> Iterator[Frame | Gap]:
        """Frames (with images, IMU and truth) and gap markers, in recording order.

        A frame is yielded only once its ``/frame`` marker is read, so a frame cut by truncation never appears.
        """
        pending: dict[str, schema.Payload] = {}
        pending_seq: int | None = None
        for msg in self.messages():
            if msg.topic == schema.TOPIC_GAP:
                yield schema.gap_from_payload(msg.payload)
                continue
            seq = msg.payload.fields.get("seq")
            if msg.topic == schema.TOPIC_FRAME:
                yield schema.frame_from_parts(msg.payload, pending if pending_seq == seq else {})
                pending, pending_seq = {}, None
            elif msg.topic in (schema.TOPIC_IMU, schema.TOPIC_TRUTH) or schema.is_image_topic(msg.topic):
                if pending_seq != seq:
                    pending, pending_seq = {}, seq
                pending[msg.topic] = msg.payload

    def frames(self) -> Iterator[Frame]:
        return (item for item in self.items() if isinstance(item, Frame))

    def poses(self) -> Iterator[HeadPose | HandPose]:
        """The tracker poses stored with ``Recorder.write_pose``."""
        for msg in self.messages():
            if msg.topic == schema.TOPIC_HEAD_POSE or msg.topic.startswith("/pose/hand/"):
                yield schema.pose_from_payload(msg.payload)

    # ----------------------------------------------------------------------------------------------- internals

    def _records(self, f) -> Iterator[object]:
        """Records in file order, stopping quietly (with a logged note) where the file was cut off."""
        reader = StreamReader(f, emit_chunks=True, record_size_limit=1 << 34)
        try:
            yield from reader.records
        except mcap.exceptions.InvalidMagic as exc:
            if f.tell() <= 8:
                raise SourceError(f"{self.path} is not an MCAP recording ({exc})") from exc
            self._note_truncation("no closing magic")
        except (mcap.exceptions.McapError, struct.error, ValueError) as exc:
            self._note_truncation(type(exc).__name__)

    def _note_truncation(self, why: str) -> None:
        if not self.truncated:
            log.warning(
                "recording %s ends early (%s): it was not closed cleanly; reading its complete chunks", self.path, why
            )
        self.truncated = True

    def _take_header_record(self, record: object) -> None:
        if isinstance(record, Metadata) and record.name == schema.METADATA_NAME:
            self.metadata = dict(record.metadata)
        elif isinstance(record, Attachment) and record.name == schema.RIG_ATTACHMENT:
            self.rig = schema.rig_from_json(record.data)
        elif isinstance(record, Attachment) and record.name == schema.LANDMARKS_ATTACHMENT:
            self.landmarks_world = schema.decode(record.data).arrays["landmarks_world"]
