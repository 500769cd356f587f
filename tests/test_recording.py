"""Recordings: MCAP round trips, crash safety (SIGKILL, truncation, disk full), replay and export."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures.frames import assert_same_frame
from fixtures.moving_source import MovingTextureSource

import hardware
from hardware import export, record
from hardware.recording import Recorder, RecordingError, RecordingReader
from skiptrack_types import Frame, Gap, HandPose, HeadPose, SourceError, TrackingFlags

REPO = Path(__file__).resolve().parents[1]


def record_fixture(path: Path, frames: int = 40, **kwargs) -> MovingTextureSource:
    source = MovingTextureSource(frames)
    record.record_source(source, str(path), **kwargs)
    return source


def test_clean_recording_replays_bit_exactly(tmp_path):
    source = record_fixture(tmp_path / "s.mcap")
    replayed = list(hardware.open_source(f"mcap:{tmp_path / 's.mcap'}", realtime=False))
    expected = list(source)
    assert len(replayed) == len(expected)
    for a, b in zip(expected, replayed, strict=True):
        assert_same_frame(a, b)


def test_replay_carries_rig_rate_and_landmarks(tmp_path):
    source = record_fixture(tmp_path / "s.mcap", frames=3)
    replay = hardware.open_source(f"mcap:{tmp_path / 's.mcap'}?realtime=0")
    assert replay.rate_hz == source.rate_hz
    assert np.array_equal(replay.landmarks_world, source.landmarks_world)
    assert np.array_equal(replay.rig.T_cam0_cam1, source.rig.T_cam0_cam1)
    assert np.array_equal(replay.rig.cam0.K, source.rig.cam0.K)
    assert np.array_equal(replay.rig.cam1.dist, source.rig.cam1.dist)
    assert np.array_equal(replay.rig.T_head_cam0, source.rig.T_head_cam0)


def test_recorder_closes_a_chunk_per_flush_interval_of_data(tmp_path):
    # 60 frames at 60 Hz with 0.25 s of data per chunk: 4 chunks (flushed at 0.25, 0.5, 0.75 s and at the end)
    record_fixture(tmp_path / "s.mcap", frames=60, flush_interval_s=0.25)
    reader = RecordingReader(tmp_path / "s.mcap")
    assert sum(1 for _ in reader.frames()) == 60
    assert reader.complete_chunks == 4
    assert not reader.truncated


def test_truncated_recording_yields_every_frame_of_its_complete_chunks(tmp_path):
    source = record_fixture(tmp_path / "s.mcap", frames=60, flush_interval_s=0.25)
    data = (tmp_path / "s.mcap").read_bytes()
    (tmp_path / "cut.mcap").write_bytes(data[: len(data) * 3 // 5])
    reader = RecordingReader(tmp_path / "cut.mcap")
    frames = list(reader.frames())
    assert reader.truncated
    assert reader.complete_chunks == 2
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert 30 <= len(frames) <= 36  # two chunks of about 0.25 s at 60 Hz each
    for a, b in zip(source, frames, strict=False):
        assert_same_frame(a, b)


def test_recording_cut_inside_the_header_reads_as_empty_with_its_rig(tmp_path):
    record_fixture(tmp_path / "s.mcap", frames=30)
    reader = RecordingReader(tmp_path / "s.mcap")
    header_end = 2000  # inside the first chunk: metadata and attachments come before it
    (tmp_path / "cut.mcap").write_bytes((tmp_path / "s.mcap").read_bytes()[:header_end])
    cut = RecordingReader(tmp_path / "cut.mcap")
    assert list(cut.frames()) == []
    assert cut.rig is not None and np.array_equal(cut.rig.cam0.K, reader.rig.cam0.K)


def test_file_that_is_not_mcap_is_refused(tmp_path):
    (tmp_path / "x.mcap").write_bytes(b"not a recording at all")
    with pytest.raises(SourceError, match="not an MCAP recording"):
        RecordingReader(tmp_path / "x.mcap")


def test_missing_recording_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        hardware.open_source(f"mcap:{tmp_path / 'nope.mcap'}")


def test_unwritable_path_is_a_clear_error(tmp_path):
    with pytest.raises(RecordingError, match="cannot create recording .*does the folder exist"):
        Recorder(tmp_path / "no" / "such" / "dir" / "s.mcap")


def test_gaps_are_recorded_in_order(tmp_path):
    frames = list(MovingTextureSource(3))
    with Recorder(tmp_path / "g.mcap") as rec:
        rec.write_frame(frames[0])
        rec.write_gap(Gap(1, 1, frames[1].t_ns, "dropped by the device"))
        rec.write_frame(frames[2])
    items = list(RecordingReader(tmp_path / "g.mcap").items())
    assert [type(i) for i in items] == [Frame, Gap, Frame]
    assert items[1] == Gap(1, 1, frames[1].t_ns, "dropped by the device")


def test_tracker_poses_round_trip(tmp_path):
    head = HeadPose(5, 123, np.array([0.1, 1.6, -0.2]), np.array([0.0, 0.0, 0.0, 1.0]),
                    flags=TrackingFlags.predicted(), display_t_ns=456, exit_stage=2, active_fraction=0.25)  # fmt: skip
    hand = HandPose(5, 123, "right", np.random.default_rng(0).normal(size=(26, 3)), np.tile([0.0, 0, 0, 1], (26, 1)),
                    np.full(26, 0.01), np.ones(26, bool), np.zeros(26, bool))  # fmt: skip
    with Recorder(tmp_path / "p.mcap") as rec:
        rec.write_pose(head)
        rec.write_pose(hand)
    head2, hand2 = RecordingReader(tmp_path / "p.mcap").poses()
    assert isinstance(head2, HeadPose) and isinstance(hand2, HandPose)
    assert np.array_equal(head2.position, head.position) and head2.flags == head.flags
    assert (head2.display_t_ns, head2.exit_stage, head2.active_fraction) == (456, 2, 0.25)
    assert hand2.side == "right" and np.array_equal(hand2.joint_positions, hand.joint_positions)
    assert np.array_equal(hand2.joint_tracked, hand.joint_tracked)


def test_generic_message_round_trips(tmp_path):
    with Recorder(tmp_path / "m.mcap") as rec:
        rec.write_message("/debug/active", {"layer": "conv3"}, {"mask": np.eye(3, dtype=bool)}, t_ns=7, seq=1)
    (msg,) = RecordingReader(tmp_path / "m.mcap").messages()
    assert (msg.topic, msg.log_time_ns, msg.sequence) == ("/debug/active", 7, 1)
    assert msg.payload.fields == {"layer": "conv3"}
    assert np.array_equal(msg.payload.arrays["mask"], np.eye(3, dtype=bool))


def test_record_cli_rerecords_a_recording_identically(tmp_path, capsys):
    source = record_fixture(tmp_path / "a.mcap", frames=20)
    rc = record.main(["--source", f"mcap:{tmp_path / 'a.mcap'}?realtime=0", "--out", str(tmp_path / "b.mcap")])
    assert rc == 0
    assert "wrote 20 frames" in capsys.readouterr().out
    for a, b in zip(source, RecordingReader(tmp_path / "b.mcap").frames(), strict=True):
        assert_same_frame(a, b)


def test_record_cli_stops_after_seconds_of_source_time(tmp_path):
    record_fixture(tmp_path / "a.mcap", frames=60)
    record.main(["--source", f"mcap:{tmp_path / 'a.mcap'}?realtime=0", "--out", str(tmp_path / "b.mcap"),
                 "--seconds", "0.5"])  # fmt: skip
    assert sum(1 for _ in RecordingReader(tmp_path / "b.mcap").frames()) == 30


def test_record_cli_reports_an_unwritable_output(tmp_path, capsys):
    record_fixture(tmp_path / "a.mcap", frames=2)
    rc = record.main(["--source", f"mcap:{tmp_path / 'a.mcap'}", "--out", str(tmp_path / "no" / "b.mcap")])
    assert rc == 1
    assert "cannot create recording" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------- crashes

_RECORD_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from fixtures.frames import assert_same_frame
from fixtures.moving_source import MovingTextureSource
from hardware.record import record_source
source = MovingTextureSource(frames=100000, rate_hz=100.0, paced=True)
record_source(source, sys.argv[1], flush_interval_s=0.2, on_frame=lambda f: print(f.seq, flush=True))
"""


def test_sigkilled_recorder_loses_at_most_the_chunk_in_progress(tmp_path):
    out = tmp_path / "killed.mcap"
    script = _RECORD_SCRIPT.format(tests=str(REPO / "tests"))
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if int(line) >= 70:
                break
        proc.send_signal(signal.SIGKILL)
        last_written = max([int(line)] + [int(x) for x in proc.stdout.read().split()])
    finally:
        proc.kill()
        proc.wait()
    reader = RecordingReader(out)
    frames = list(reader.frames())
    assert reader.truncated
    # a chunk closes once it holds 0.2 s of data: at 100 Hz at most 21 frames are in the chunk in progress
    assert len(frames) >= last_written + 1 - 21
    expected = MovingTextureSource(frames=len(frames), rate_hz=100.0)
    for a, b in zip(expected, frames, strict=True):
        assert_same_frame(a, b)


_DISK_FULL_SCRIPT = """
import resource, signal, sys
sys.path.insert(0, {tests!r})
from fixtures.frames import assert_same_frame
from fixtures.moving_source import MovingTextureSource
from hardware.record import record_source
from hardware.recording import RecordingError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # exceeding the limit then fails the write with EFBIG, like ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
try:
    record_source(MovingTextureSource(frames=2000), sys.argv[1], flush_interval_s=0.1)
except RecordingError as exc:
    print(exc)
    sys.exit(3)
"""


def test_disk_full_is_a_clear_error_and_keeps_what_was_flushed(tmp_path):
    out = tmp_path / "full.mcap"
    script = _DISK_FULL_SCRIPT.format(tests=str(REPO / "tests"))
    proc = subprocess.run([sys.executable, "-c", script, str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "disk full" in proc.stdout and "stay readable" in proc.stdout
    flushed = int(proc.stdout.split("the ")[1].split(" frames")[0])
    frames = list(RecordingReader(out).frames())
    assert flushed > 0 and len(frames) >= flushed
    for a, b in zip(MovingTextureSource(frames=len(frames)), frames, strict=True):
        assert_same_frame(a, b)


def test_disk_full_at_start_is_a_clear_error():
    with pytest.raises(RecordingError, match="No space left on device .*disk full"):
        Recorder("/dev/full")  # a real device whose every write fails with ENOSPC


# --------------------------------------------------------------------------------------------------- export


def test_export_cli_writes_euroc_that_reads_back_identically(tmp_path):
    source = record_fixture(tmp_path / "a.mcap", frames=12)
    assert export.main(["--source", f"mcap:{tmp_path / 'a.mcap'}", "--euroc", str(tmp_path / "ds")]) == 0
    euroc = hardware.open_source(f"euroc:{tmp_path / 'ds'}")
    frames = list(euroc)
    assert len(frames) == 12
    for a, b in zip(source, frames, strict=True):
        assert a.t_ns == b.t_ns
        assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))
        assert np.array_equal(a.imu, b.imu)
        assert np.allclose(a.truth.T_world_head, b.truth.T_world_head, atol=1e-12)


def test_export_cli_writes_tum_truth_in_seconds(tmp_path):
    source = record_fixture(tmp_path / "a.mcap", frames=5)
    assert export.main(["--source", f"mcap:{tmp_path / 'a.mcap'}", "--tum", str(tmp_path / "t.txt")]) == 0
    rows = np.loadtxt(tmp_path / "t.txt")
    assert rows.shape == (5, 8)
    frames = list(source)
    assert np.allclose(rows[:, 0], [f.t_ns / 1e9 for f in frames], atol=1e-9)
    assert np.allclose(rows[:, 1:4], [f.truth.T_world_head[:3, 3] for f in frames], atol=1e-9)
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(frames[3].truth.T_world_head[:3, :3]).as_quat()
    assert np.allclose(rows[3, 4:], q, atol=1e-9)
