"""Where a calibration session is stored: one MCAP recording (``*.mcap``) or a folder.

Both hold a header ``{"format": "skiptrack-calibration-session", "version": 1, "board": spec, "image_size": [w, h],
"cameras": n}`` and one entry per kept view ``{"seq", "t_ns", "detections": [{"ids", "corners_px"} or null per
camera]}`` next to the view's images.

- MCAP (hardware/recording): the kept frames as ordinary frames (so ``mcap:session.mcap`` replays them as a
  source), the header on topic ``/calibration/session`` and the entries on ``/calibration/detections``; the file is
  flushed after every kept view, so a killed recorder keeps every view it reported.
- Folder: ``detections.json`` (the header plus ``"views": [entries with "images": [paths]]``, replaced atomically
  after every kept view) and ``frames/SEQ_camI.png``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2

from skiptrack_types import CalibrationError, Frame, SkipTrackError, StereoRig

SESSION_FORMAT = "skiptrack-calibration-session"
SESSION_VERSION = 1
DETECTIONS_FILE = "detections.json"
TOPIC_SESSION = "/calibration/session"
TOPIC_DETECTIONS = "/calibration/detections"


class FolderSessionWriter:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        (self.folder / "frames").mkdir(parents=True, exist_ok=True)
        self._header: dict = {}
        self._entries: list[dict] = []

    def start(self, header: dict) -> None:
        self._header = dict(header)

    def add(self, frame: Frame, entry: dict) -> None:
        images = []
        for i, image in enumerate(frame.images):
            name = f"frames/{frame.seq:06d}_cam{i}.png"
            if not cv2.imwrite(str(self.folder / name), image):
                raise CalibrationError(f"could not write {self.folder / name}; check disk space and permissions")
            images.append(name)
        self._entries.append({**entry, "images": images})
        tmp = self.folder / (DETECTIONS_FILE + ".tmp")
        tmp.write_text(json.dumps({**self._header, "views": self._entries}))
        os.replace(tmp, self.folder / DETECTIONS_FILE)

    def close(self) -> None:
        """Nothing to finish: every view is complete on disk once ``add`` returns."""


class McapSessionWriter:
    def __init__(self, path: Path, rig: StereoRig | None) -> None:
        from hardware.recording import Recorder

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._recorder = Recorder(self.path, rig=rig, source="calibration session")

    def start(self, header: dict) -> None:
        self._recorder.write_message(TOPIC_SESSION, header)
        self._recorder.flush()

    def add(self, frame: Frame, entry: dict) -> None:
        self._recorder.write_frame(frame)
        self._recorder.write_message(TOPIC_DETECTIONS, entry, t_ns=frame.t_ns, seq=frame.seq)
        self._recorder.flush()

    def close(self) -> None:
        self._recorder.close()


def open_session_writer(out: Path, rig: StereoRig | None) -> FolderSessionWriter | McapSessionWriter:
    """An MCAP writer when ``out`` ends in .mcap, else a folder writer."""
    out = Path(out)
    return McapSessionWriter(out, rig) if out.suffix.lower() == ".mcap" else FolderSessionWriter(out)


def read_session(path: Path) -> tuple[Path, dict, list[dict]]:
    """(the file read, header, entries) of a session MCAP file or folder."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".mcap":
        return _read_mcap(path)
    data_path = path / DETECTIONS_FILE
    try:
        data = json.loads(data_path.read_text())
    except FileNotFoundError:
        raise CalibrationError(
            f"{data_path}: not found; --session must be a folder or .mcap file written by 'calibration record'"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise CalibrationError(f"{data_path}: not a readable session file ({e})") from None
    if not isinstance(data, dict) or "views" not in data:
        raise CalibrationError(f"{data_path}: missing field views")
    return data_path, data, data["views"]


def _read_mcap(path: Path) -> tuple[Path, dict, list[dict]]:
    from hardware.recording import RecordingReader

    header: dict = {}
    entries: list[dict] = []
    try:
        for message in RecordingReader(path).messages():
            if message.topic == TOPIC_SESSION:
                header = message.payload.fields
            elif message.topic == TOPIC_DETECTIONS:
                entries.append(message.payload.fields)
    except SkipTrackError as e:
        raise CalibrationError(f"{path}: not a readable session recording ({e})") from None
    if not header:
        raise CalibrationError(f"{path}: no {TOPIC_SESSION} message; is this a calibration session recording?")
    return path, header, entries
