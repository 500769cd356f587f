"""The ``video:`` source: a video file or a folder of images, mono or side-by-side stereo.

``video:clip.mp4``, ``video:frames/`` (images sorted by name), ``video:clip.avi?stereo=sbs`` (left half is camera
0), options ``rate_hz`` (image folders; default 30, videos use the file's rate), ``calibration`` (a file read with
calibration.files.load_calibration, giving ``rig``) and ``loop`` (restart at the end). Timestamps: the video's own
presentation times, image folders ``seq / rate_hz``; ``t_ns`` starts at 0. A frame whose size differs from the
first frame's is skipped and reported as a ``Gap``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from hardware.images import split_side_by_side, to_gray
from hardware.options import as_bool, as_float, reject_unknown
from hardware.rig_file import load_rig
from hardware.sources import FrameSource
from skiptrack_types import Frame, Gap, SourceError, StereoRig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")


class VideoSource(FrameSource):
    def __init__(
        self,
        path: str | Path,
        stereo: str = "mono",
        rate_hz: float | None = None,
        rig: StereoRig | None = None,
        loop: bool = False,
    ) -> None:
        self.path = Path(path)
        if stereo not in ("mono", "sbs"):
            raise SourceError(f"video: stereo={stereo!r} is not a layout; use stereo=mono or stereo=sbs")
        self.stereo = stereo == "sbs"
        self.rig = rig
        self.loop = loop
        if self.path.is_dir():
            self.images = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.images:
                raise SourceError(f"folder {self.path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            self.rate_hz = rate_hz or 30.0
        elif self.path.is_file():
            self.images = None
            capture = self._open_video()
            self.rate_hz = rate_hz or capture.get(cv2.CAP_PROP_FPS) or 30.0
            capture.release()
        else:
            raise SourceError(f"video: {self.path} does not exist; pass a video file or a folder of images")

    def __iter__(self) -> Iterator[Frame | Gap]:
        seq, t_offset_ns, size = 0, 0, None
        while True:
            last_t_ns = None
            for t_ns, raw in self._raw_frames():
                image = to_gray(raw)
                if size is None:
                    size = image.shape
                t_ns += t_offset_ns
                if last_t_ns is not None and t_ns <= last_t_ns:
                    log.warning("%s frame %d has time %d ns, not after %d ns; skipped", self.path, seq, t_ns, last_t_ns)
                    yield Gap(seq, 1, last_t_ns, "timestamp went backwards")
                    seq += 1
                    continue
                last_t_ns = t_ns
                if image.shape != size:
                    log.warning("%s frame %d is %s, expected %s; skipped", self.path, seq, image.shape, size)
                    got, want = f"{image.shape[1]}x{image.shape[0]}", f"{size[1]}x{size[0]}"
                    yield Gap(seq, 1, t_ns, f"frame of size {got}, expected {want}")
                else:
                    yield Frame(seq, t_ns, split_side_by_side(image) if self.stereo else (image,))
                seq += 1
            if not self.loop or last_t_ns is None:
                return
            t_offset_ns = last_t_ns + int(1e9 / self.rate_hz)

    def _raw_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(t_ns from the start, decoded image) in order."""
        if self.images is not None:
            for i, path in enumerate(self.images):
                image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                if image is None:
                    raise SourceError(f"cannot decode image {path}; remove it or replace it with a valid image")
                yield int(round(i * 1e9 / self.rate_hz)), image
            return
        capture = self._open_video()
        try:
            while capture.grab():
                ok, image = capture.retrieve()
                if not ok:
                    break
                yield int(round(capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)), image
        finally:
            capture.release()

    def _open_video(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise SourceError(f"OpenCV cannot open video {self.path}; is it a video file in a format FFmpeg reads?")
        return capture


def open_video(target: str, **options: object) -> VideoSource:
    reject_unknown("video", options, ("stereo", "rate_hz", "calibration", "loop"))
    rate = options.get("rate_hz")
    rig = None
    if options.get("calibration"):
        rig = load_rig(str(options["calibration"]))
    return VideoSource(
        target,
        stereo=str(options.get("stereo", "mono")),
        rate_hz=None if rate is None else as_float("rate_hz", rate),
        rig=rig,
        loop=as_bool("loop", options.get("loop", False)),
    )
