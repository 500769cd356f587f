"""Calibration sessions: recording board views from a frame source, and reading views back for solving.

Only views that add coverage (``Coverage.gain`` > 0 for some camera: new image regions or tilt directions, and
not a near-repeat of a kept view) are kept. Storage (an MCAP recording or a folder) is in session_store.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from calibration.boards import BoardSpec
from calibration.coverage import Coverage, Tilt, estimate_tilt, guess_camera_matrix
from calibration.detect import BoardDetector, Detection
from calibration.session_store import SESSION_FORMAT, SESSION_VERSION, open_session_writer, read_session
from calibration.solve import View
from skiptrack_types import CalibrationError, Frame, StereoRig

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Feedback:
    """What the recorder tells the person holding the board after each frame: the frame, the detection per camera
    (None where the board was not found), whether the view was kept, the coverage per camera after it and
    ``progress`` 0..1 (the least-covered camera's)."""

    frame: Frame
    detections: tuple[Detection | None, ...]
    kept: bool
    coverages: tuple[Coverage, ...]
    kept_views: int

    @property
    def progress(self) -> float:
        return min(c.progress for c in self.coverages)

    def summary(self) -> str:
        """One line of text for terminals."""
        found = "".join("B" if d is not None else "." for d in self.detections)
        cov = self.coverages[0]
        missing = ",".join(cov.missing_tilts) or "none"
        return (
            f"frame {self.frame.seq:6d} board[{found}] {'KEPT' if self.kept else 'skip'} views {self.kept_views:3d} "
            f"progress {100 * self.progress:5.1f}% cells {100 * cov.cell_fraction:4.0f}% tilts missing: {missing}"
        )


@dataclass(frozen=True, eq=False)
class Session:
    """Views read back from a session (MCAP file or folder): per camera a list of views, and the frames with the
    board in every camera as (cam0 view, cam1 view) pairs."""

    board: BoardSpec
    image_size: tuple[int, int]
    views: tuple[list[View], ...]
    pairs: list[tuple[View, View]]


def record_session(
    frames: Iterable[object],
    board: BoardSpec,
    out: Path,
    feedback: Callable[[Feedback], None] | None = None,
    rig: StereoRig | None = None,
    max_views: int | None = None,
    stop_at_progress: float = 1.0,
) -> Path:
    """Watch ``frames`` (Frame items; Gap markers are skipped), keep the views that add coverage and store them in
    ``out`` (a ``.mcap`` file or a folder). Stops when the source ends, when ``progress`` reaches
    ``stop_at_progress``, after ``max_views`` kept views, or on KeyboardInterrupt (what was kept is saved). ``rig``
    gives better tilt estimates when known. Returns ``out``."""
    detector = BoardDetector(board)
    coverages: list[Coverage] = []
    kept_views = 0
    writer = open_session_writer(out, rig)
    try:
        for frame in frames:
            if not isinstance(frame, Frame):
                continue
            if not coverages:
                coverages = [Coverage(frame.size) for _ in frame.images]
                writer.start({"format": SESSION_FORMAT, "version": SESSION_VERSION, "board": str(board),
                              "image_size": list(frame.size), "cameras": len(frame.images)})  # fmt: skip
            detections = tuple(detector.detect(image) for image in frame.images)
            tilts = [_tilt(d, board, frame.size, rig, i) for i, d in enumerate(detections)]
            gains = [
                c.gain(d, t) if d is not None else 0.0 for c, d, t in zip(coverages, detections, tilts, strict=True)
            ]
            kept = max(gains) > 0.0
            if kept:
                for c, d, t in zip(coverages, detections, tilts, strict=True):
                    if d is not None:
                        c.add(d, t)
                entry = {"seq": frame.seq, "t_ns": frame.t_ns,
                         "detections": [d.to_json() if d is not None else None for d in detections]}  # fmt: skip
                writer.add(frame, entry)
                kept_views += 1
            report = Feedback(frame, detections, kept, tuple(c.snapshot() for c in coverages), kept_views)
            if feedback is not None:
                feedback(report)
            if report.progress >= stop_at_progress or (max_views is not None and kept_views >= max_views):
                break
    except KeyboardInterrupt:
        log.info("recording stopped by the user after %d kept views", kept_views)
    finally:
        writer.close()
    if not kept_views:
        raise CalibrationError(
            f"no view with board {board} was recorded; check --board (ChArUco dictionary and square counts, or a "
            "chessboard's inner corners) and that the board is well lit and fully in view"
        )
    log.info("session %s: %d views", out, kept_views)
    return Path(out)


def load_session(path: Path, board: BoardSpec | None = None) -> Session:
    """Read a session (an MCAP file or a folder). ``board`` must match the recorded one when given."""
    source, data, entries = read_session(path)
    if data.get("format") != SESSION_FORMAT:
        raise CalibrationError(f"{source}: field format must be {SESSION_FORMAT!r}")
    for key in ("board", "image_size", "cameras"):
        if key not in data:
            raise CalibrationError(f"{source}: missing field {key}")
    recorded = BoardSpec.parse(data["board"])
    if board is not None and board != recorded:
        raise CalibrationError(
            f"{source}: session was recorded with board {recorded}, not {board}; drop --board or fix it"
        )
    cameras = int(data["cameras"])
    views: tuple[list[View], ...] = tuple([] for _ in range(cameras))
    pairs: list[tuple[View, View]] = []
    for i, entry in enumerate(entries):
        try:
            seq, t_ns, dets = int(entry["seq"]), int(entry["t_ns"]), entry["detections"]
            per_camera = [Detection.from_json(d) if d is not None else None for d in dets]
        except (KeyError, TypeError, ValueError, CalibrationError) as e:
            raise CalibrationError(f"{source}: field views[{i}] is incomplete or corrupt ({e})") from None
        if len(per_camera) != cameras:
            raise CalibrationError(f"{source}: field views[{i}].detections must have {cameras} entries")
        made = [View(f"{seq:06d}", d, t_ns) if d is not None else None for d in per_camera]
        for cam, view in enumerate(made):
            if view is not None:
                views[cam].append(view)
        if cameras == 2 and made[0] is not None and made[1] is not None:
            pairs.append((made[0], made[1]))
    w, h = data["image_size"]
    return Session(recorded, (int(w), int(h)), views, pairs)


def views_from_images(pattern: str, board: BoardSpec) -> tuple[list[View | None], tuple[int, int]]:
    """Detect ``board`` in every image matching the glob ``pattern`` (sorted by name). Returns one entry per image
    (None where the board was not found) and the common image size (width, height)."""
    paths = sorted(glob.glob(os.path.expanduser(pattern)))
    if not paths:
        raise CalibrationError(f"no images match {pattern!r}; quote the glob so the shell does not expand it")
    detector = BoardDetector(board)
    views: list[View | None] = []
    size: tuple[int, int] | None = None
    for path in tqdm(paths, desc=f"detecting {board.kind.value}", unit="image", leave=False):
        image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise CalibrationError(f"{path}: not a readable image")
        this_size = (image.shape[1], image.shape[0])
        if size is not None and this_size != size:
            raise CalibrationError(f"{path}: image size {this_size} differs from the first image's {size}")
        size = this_size
        detection = detector.detect(image)
        views.append(View(Path(path).name, detection) if detection is not None else None)
    found = sum(v is not None for v in views)
    log.info("board found in %d of %d images matching %s", found, len(paths), pattern)
    if found == 0:
        raise CalibrationError(
            f"no {board} found in any of the {len(paths)} images matching {pattern!r}; check --board "
            "(a chessboard's size counts inner corners, e.g. 9x6 for a 10x7-square board)"
        )
    return views, size


def draw_feedback(report: Feedback, camera: int = 0) -> np.ndarray:
    """A BGR image for the live window: uncovered cells tinted red, detected corners green, progress and the
    missing tilt directions as text."""
    image = cv2.cvtColor(report.frame.images[camera], cv2.COLOR_GRAY2BGR)
    coverage = report.coverages[camera]
    h, w = image.shape[:2]
    rows, cols = coverage.cell_hits.shape
    tint = image.copy()
    for r, c in zip(*np.nonzero(coverage.uncovered_cells), strict=True):
        cv2.rectangle(tint, (c * w // cols, r * h // rows), ((c + 1) * w // cols, (r + 1) * h // rows), (0, 0, 255), -1)
    image = cv2.addWeighted(tint, 0.25, image, 0.75, 0.0)
    detection = report.detections[camera]
    if detection is not None:
        for x, y in detection.corners_px:
            cv2.circle(image, (int(round(x)), int(round(y))), 3, (0, 255, 0), -1)
    text = f"{100 * report.progress:.0f}%  views {report.kept_views}  tilt: {','.join(coverage.missing_tilts) or 'ok'}"
    cv2.putText(image, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    return image


def _tilt(
    detection: Detection | None, board: BoardSpec, size: tuple[int, int], rig: StereoRig | None, camera: int
) -> Tilt | None:
    if detection is None:
        return None
    K = rig.cameras[camera].K if rig is not None else guess_camera_matrix(size)
    return estimate_tilt(detection, board, K)
