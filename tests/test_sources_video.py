"""The video: source: video files and image folders, mono and side-by-side."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import hardware
from skiptrack_types import Frame, Gap, SourceError


def write_video(path: Path, frames: int, size: tuple[int, int], fps: float = 25.0) -> list[np.ndarray]:
    """Write a video and return what OpenCV decodes from it (grayscale), the reference for the source."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size, isColor=False)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8))
    writer.release()
    capture, decoded = cv2.VideoCapture(str(path)), []
    while (result := capture.read())[0]:
        decoded.append(cv2.cvtColor(result[1], cv2.COLOR_BGR2GRAY))
    return decoded


def test_video_file_gives_gray_frames_with_its_timestamps(tmp_path):
    reference = write_video(tmp_path / "a.avi", 10, (64, 48))
    source = hardware.open_source(f"video:{tmp_path / 'a.avi'}")
    frames = list(source)
    assert source.rate_hz == 25.0
    assert [f.seq for f in frames] == list(range(10))
    assert [f.t_ns for f in frames] == [i * 40_000_000 for i in range(10)]
    for frame, image in zip(frames, reference, strict=True):
        assert frame.images[0].dtype == np.uint8 and np.array_equal(frame.images[0], image)


def test_side_by_side_video_splits_into_two_cameras(tmp_path):
    reference = write_video(tmp_path / "sbs.avi", 3, (128, 48))
    frames = list(hardware.open_source(f"video:{tmp_path / 'sbs.avi'}?stereo=sbs"))
    for frame, image in zip(frames, reference, strict=True):
        assert len(frame.images) == 2
        assert np.array_equal(frame.images[0], image[:, :64]) and np.array_equal(frame.images[1], image[:, 64:])


def test_image_folder_plays_in_name_order_at_its_rate(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"img_{i}.png"), np.full((8, 10, 3), 40 * i, np.uint8))  # colour becomes gray
    frames = list(hardware.open_source(f"video:{tmp_path}?rate_hz=10"))
    assert [int(f.images[0][0, 0]) for f in frames] == [0, 40, 80]
    assert [f.t_ns for f in frames] == [0, 100_000_000, 200_000_000]


def test_sixteen_bit_images_become_eight_bit(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((4, 4), 0x8000, np.uint16))
    (frame,) = hardware.open_source(f"video:{tmp_path}")
    assert frame.images[0].dtype == np.uint8 and frame.images[0][0, 0] == 0x80


def test_image_of_the_wrong_size_becomes_a_gap(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((8, 10 if i != 1 else 12), np.uint8))
    items = list(hardware.open_source(f"video:{tmp_path}"))
    assert [type(i) for i in items] == [Frame, Gap, Frame]
    assert (items[1].first_seq, items[1].count) == (1, 1) and "12x8, expected 10x8" in items[1].reason
    assert items[2].seq == 2


def test_looping_video_keeps_time_increasing(tmp_path):
    write_video(tmp_path / "a.avi", 3, (16, 16))
    source = hardware.open_source(f"video:{tmp_path / 'a.avi'}?loop=1")
    frames = [f for _, f in zip(range(7), source, strict=False)]
    assert [f.seq for f in frames] == list(range(7))
    assert all(b.t_ns > a.t_ns for a, b in zip(frames, frames[1:], strict=False))


def test_video_mistakes_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        hardware.open_source(f"video:{tmp_path / 'missing.mp4'}")
    with pytest.raises(SourceError, match="stereo=mono or stereo=sbs"):
        hardware.open_source(f"video:{tmp_path}?stereo=top-bottom")
    with pytest.raises(SourceError, match="does not take option.*fps"):
        hardware.open_source(f"video:{tmp_path}?fps=3")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot open video"):
        hardware.open_source(f"video:{tmp_path / 'junk.mp4'}")
