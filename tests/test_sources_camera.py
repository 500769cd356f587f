"""The camera: source, driven through its real OpenCV capture path on video files (no camera on CI machines)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import hardware
from hardware import list as list_cli
from hardware.camera import CameraSource, StereoPairer
from hardware.capture import AWAY, Grabbed, Sequencer, TimestampMode
from hardware.profile import DeviceProfile, StereoLayout, available_profiles, load_profile
from skiptrack_types import Frame, Gap, SourceError

FPS = 30.0


def write_video(path: Path, frames: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, size, isColor=False)
    rng = np.random.default_rng(seed)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8))
    writer.release()
    return path


def decoded(path: Path) -> list[np.ndarray]:
    """What OpenCV decodes from a file, as grayscale: the reference the capture path must reproduce."""
    capture = cv2.VideoCapture(str(path))
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            return images
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))


def file_openers(*paths: Path):
    """An opener that opens each path in turn, then a device that never opens (a camera that stays away)."""
    remaining = iter(paths)
    return lambda: cv2.VideoCapture(str(next(remaining, "")), cv2.CAP_FFMPEG)


def profile(layout: StereoLayout = StereoLayout.MONO, size: tuple[int, int] | None = (64, 48)) -> DeviceProfile:
    devices = ("left", "right") if layout is StereoLayout.TWO_DEVICES else ("file",)
    return DeviceProfile("test", devices, layout, *(size or (None, None)), fps=FPS)


def take(source: CameraSource, stop_after_lost: int = 1, timeout_s: float = 20.0) -> list[Frame | Gap]:
    """Items until the ``stop_after_lost``-th 'lost' gap (a closed watchdog ends a hung test)."""
    watchdog = threading.Timer(timeout_s, source.close)
    watchdog.start()
    items = []
    try:
        for item in source:
            items.append(item)
            if sum(isinstance(i, Gap) and i.reason.startswith("lost") for i in items) >= stop_after_lost:
                break
    finally:
        watchdog.cancel()
        source.close()
    return items


def frames_of(items: list[Frame | Gap]) -> list[Frame]:
    return [i for i in items if isinstance(i, Frame)]


def test_camera_delivers_every_frame_of_a_file_through_the_capture_thread(tmp_path):
    video = write_video(tmp_path / "a.avi", 20)
    source = CameraSource(profile(), [file_openers(video)], TimestampMode.STREAM, drop_oldest=False)
    frames = frames_of(take(source))
    assert [f.seq for f in frames] == list(range(20))
    for frame, reference in zip(frames, decoded(video), strict=True):
        assert np.array_equal(frame.images[0], reference)
    assert np.allclose(np.diff([f.t_ns for f in frames]), 1e9 / FPS, atol=1)


def test_camera_stamps_frames_with_the_monotonic_clock_at_grab(tmp_path):
    before = time.monotonic_ns()
    source = CameraSource(profile(), [file_openers(write_video(tmp_path / "a.avi", 5))], drop_oldest=False)
    frames = frames_of(take(source))
    assert all(before < f.t_ns < time.monotonic_ns() for f in frames)
    assert all(b.t_ns > a.t_ns for a, b in zip(frames, frames[1:], strict=False))


def test_camera_that_stops_mid_stream_yields_a_gap_then_only_new_frames(tmp_path):
    full = write_video(tmp_path / "full.avi", 60)
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    later = write_video(tmp_path / "later.avi", 10, seed=1)
    source = CameraSource(profile(), [file_openers(truncated, later)], TimestampMode.STREAM, drop_oldest=False)
    items = take(source, stop_after_lost=2)
    lost = [i for i, item in enumerate(items) if isinstance(item, Gap) and item.reason.startswith("lost")]
    before, after = frames_of(items[: lost[0]]), frames_of(items[lost[0] : lost[1]])
    assert 0 < len(before) < 60  # the cut file ends early
    assert len(after) == 10
    for frame, reference in zip(after, decoded(later), strict=True):
        assert np.array_equal(frame.images[0], reference)
    seqs, times = [f.seq for f in before + after], [f.t_ns for f in before + after]
    assert seqs == sorted(set(seqs)) and times == sorted(set(times))  # nothing repeated, nothing out of order


def test_wrong_frame_size_at_start_is_a_clear_error(tmp_path):
    source = CameraSource(profile(size=(128, 48)), [file_openers(write_video(tmp_path / "a.avi", 5))],
                          drop_oldest=False)  # fmt: skip
    with pytest.raises(SourceError, match="gave 64x48, expected 128x48.*Set width/height in the profile"):
        take(source)


def test_wrong_size_frame_mid_stream_becomes_a_gap(tmp_path):
    for i in range(5):
        shape = (40, 64) if i == 2 else (48, 64)
        cv2.imwrite(str(tmp_path / f"f_{i:04d}.png"), np.full(shape, 10 * i, np.uint8))
    pattern = str(tmp_path / "f_%04d.png")
    opened = iter([pattern])
    source = CameraSource(profile(size=None), [lambda: cv2.VideoCapture(next(opened, ""), cv2.CAP_IMAGES)],
                          drop_oldest=False)  # fmt: skip
    items = take(source)[:-1]
    assert [type(i) for i in items] == [Frame, Frame, Gap, Frame, Frame]
    assert items[2].first_seq == 2 and items[2].count == 1 and "wrong size" in items[2].reason
    assert [i.seq for i in frames_of(items)] == [0, 1, 3, 4]
    assert [int(f.images[0][0, 0]) for f in frames_of(items)] == [0, 10, 30, 40]


def test_side_by_side_device_is_split_into_left_and_right(tmp_path):
    video = write_video(tmp_path / "sbs.avi", 4, size=(128, 48))
    source = CameraSource(profile(StereoLayout.SIDE_BY_SIDE, (128, 48)), [file_openers(video)], drop_oldest=False)
    frames = frames_of(take(source))
    assert len(frames) == 4
    for frame, reference in zip(frames, decoded(video), strict=True):
        assert np.array_equal(frame.images[0], reference[:, :64])
        assert np.array_equal(frame.images[1], reference[:, 64:])


def test_two_devices_are_paired_by_time(tmp_path):
    left, right = write_video(tmp_path / "l.avi", 12, seed=2), write_video(tmp_path / "r.avi", 12, seed=3)
    source = CameraSource(profile(StereoLayout.TWO_DEVICES), [file_openers(left), file_openers(right)],
                          TimestampMode.STREAM, drop_oldest=False, pair_wait_s=30.0)  # fmt: skip
    frames = frames_of(take(source, stop_after_lost=2))  # both files end
    assert [f.seq for f in frames] == list(range(12))
    for frame, ref_l, ref_r in zip(frames, decoded(left), decoded(right), strict=True):
        assert np.array_equal(frame.images[0], ref_l) and np.array_equal(frame.images[1], ref_r)


def test_slow_consumer_drops_are_gaps_covering_every_missing_frame(tmp_path):
    source = CameraSource(profile(), [file_openers(write_video(tmp_path / "a.avi", 40))], TimestampMode.STREAM,
                          drop_oldest=True, max_queued=2)  # fmt: skip
    covered = []
    for item in take(source):
        time.sleep(0.002)  # slower than the file decodes
        if isinstance(item, Frame):
            covered.append(item.seq)
        elif item.count:
            covered.extend(range(item.first_seq, item.first_seq + item.count))
    assert sorted(covered) == list(range(40))


def test_pairer_rejects_pairs_further_apart_than_half_a_frame():
    image = np.zeros((2, 2), np.uint8)
    pairer = StereoPairer(tolerance_ns=16, max_wait_ns=130)
    for seq, t in enumerate([0, 33, 66, 100]):
        pairer.push_left(Grabbed(seq, t, image))
    for seq, t in enumerate([2, 53, 70, 101]):  # 53 is 20 after the left frame at 33: too far
        pairer.push_right(Grabbed(seq, t, image))
    out = pairer.pop_ready(now_ns=101)
    assert [(type(o).__name__, o.seq if isinstance(o, Frame) else o.first_seq) for o in out] == [
        ("Frame", 0), ("Gap", 1), ("Frame", 2), ("Frame", 3)
    ]  # fmt: skip


def test_pairer_waits_for_a_lagging_right_camera_only_so_long():
    image = np.zeros((2, 2), np.uint8)
    pairer = StereoPairer(tolerance_ns=16, max_wait_ns=130)
    for seq in range(4):
        pairer.push_left(Grabbed(seq, seq * 33, image))
    assert pairer.pop_ready(now_ns=120) == []  # all within the wait: the right frames may still come
    out = pairer.pop_ready(now_ns=180)  # frames 0 and 1 waited longer than 130
    assert [(o.first_seq, o.count) for o in out] == [(0, 1), (1, 1)]


def test_pairer_gives_up_at_once_when_the_right_camera_is_lost():
    image = np.zeros((2, 2), np.uint8)
    pairer = StereoPairer(tolerance_ns=16, max_wait_ns=10_000)
    pairer.push_left(Grabbed(0, 0, image))
    pairer.push_right(Gap(0, 0, 5, "lost: right stopped delivering frames"))
    out = pairer.pop_ready(now_ns=10)
    assert [type(o) for o in out] == [Gap, Gap] and out[0].reason.startswith("lost") and out[1].count == 1


def test_sequencer_turns_a_timestamp_going_backwards_into_a_gap():
    seq = Sequencer(fps=100.0)
    assert seq.admit(1_000_000_000, None) == ([], 0)
    gaps, number = seq.admit(999_000_000, None)
    assert number is None and gaps[0].first_seq == 1 and "backwards" in gaps[0].reason
    assert seq.admit(1_010_000_000, None) == ([], 2)


def test_sequencer_finds_frames_the_device_skipped():
    by_index, by_time = Sequencer(fps=100.0), Sequencer(fps=100.0)
    by_index.admit(0, 1)
    gaps, number = by_index.admit(10_000_000, 4)  # device counter jumped from 1 to 4
    assert (gaps[0].first_seq, gaps[0].count, number) == (1, 2, 3)
    by_time.admit(0, None)
    gaps, number = by_time.admit(40_000_000, None)  # 40 ms at 100 Hz: three frames missing
    assert (gaps[0].first_seq, gaps[0].count, number) == (1, 3, 4)


def test_missing_device_reports_a_lost_gap_through_v4l2():
    source = hardware.open_source("camera:/dev/video-that-does-not-exist")
    (gap,) = take(source)
    assert isinstance(gap, Gap) and gap.reason.startswith("lost: cannot open")


def test_shipped_profiles_load():
    assert {"uvc_stereo_sbs", "uvc_two_cameras"} <= set(available_profiles())
    sbs, two = load_profile("uvc_stereo_sbs"), load_profile("uvc_two_cameras")
    assert sbs.layout is StereoLayout.SIDE_BY_SIDE and sbs.camera_count == 2 and sbs.fourcc == "MJPG"
    assert two.layout is StereoLayout.TWO_DEVICES and len(two.devices) == 2


def test_profile_mistakes_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndevices: [0]\nlayout: two_devices\n")
    with pytest.raises(SourceError, match="two_devices needs 2 device"):
        load_profile(str(bad))
    bad.write_text("name: bad\ndevices: [0]\nfsp: 30\n")
    with pytest.raises(SourceError, match="unknown key.*fsp"):
        load_profile(str(bad))
    with pytest.raises(SourceError, match="no camera profile 'nope'.*uvc_stereo_sbs"):
        hardware.open_source("camera:nope")


def test_list_says_which_devices_opencv_can_open(capsys):
    assert list_cli.main([]) == 0
    out = capsys.readouterr().out
    assert ("camera devices OpenCV can open" in out) or ("no camera device" in out)
    assert "camera:uvc_stereo_sbs" in out


def test_a_slow_tracker_skips_stale_camera_frames_when_newer_ones_wait(tmp_path):
    """run_tracker's rule for live cameras, on the real capture path: a frame that waited in the queue while the
    tracker was busy is dropped when a newer one is there; the last frame is tracked however old, and a tracked
    frame's latency starts at its grab time (Frame.t_ns, the monotonic clock), not when the tracker took it."""
    import run_tracker

    source = CameraSource(profile(), [file_openers(write_video(tmp_path / "a.avi", 12))], drop_oldest=False)
    assert source.live_clock
    period_ns = int(1e9 / FPS)
    captured = []
    watchdog = threading.Timer(20.0, source.close)
    watchdog.start()
    try:
        for item in source:
            if isinstance(item, Gap):
                break
            if not captured:
                time.sleep(0.3)  # the tracker is busy: the capture thread fills the queue behind this frame
                assert source.newer_frame_waiting()
            captured.append((item, run_tracker.live_capture_ns(item, source, period_ns)))
    finally:
        watchdog.cancel()
        source.close()
    assert len(captured) == 12
    assert captured[0][1] is None  # 0.3 s old, newer frames waiting
    assert captured[-1][1] == captured[-1][0].t_ns  # nothing newer: tracked
    assert all(ns == frame.t_ns for frame, ns in captured if ns is not None)


def test_run_tracker_says_when_a_camera_is_lost_and_back(caplog):
    """A camera that cannot be opened, then one back after a while: run_tracker warns with what to do and what it
    does (waits), not only the tracker's per-frame problem."""
    import run_tracker

    source = CameraSource(profile(), [file_openers()])  # a device that never opens
    lost = next(item for item in take(source) if isinstance(item, Gap))
    back = Gap(5, 3, lost.t_ns, AWAY)
    with caplog.at_level("WARNING", logger="run_tracker"):
        run_tracker.report_gap(lost)
        run_tracker.report_gap(back)
    messages = [r.getMessage() for r in caplog.records if r.name == "run_tracker"]
    assert len(messages) == 2
    assert messages[0].startswith("lost: cannot open") and "waiting" in messages[0] and "hardware.list" in messages[0]
    assert "3 frame(s) missed" in messages[1]
