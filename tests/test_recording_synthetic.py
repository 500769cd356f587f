"""Recording the synthetic headset world: clean round trips and a SIGKILLed recorder (the issue's done-when)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from fixtures.frames import assert_same_frame

import hardware
from hardware import record
from hardware.recording import RecordingReader

REPO = Path(__file__).resolve().parents[1]


def test_synthetic_recording_replays_bit_exactly(tmp_path):
    with hardware.open_source("synthetic:seated", seconds=0.25) as source:
        record.record_source(source, str(tmp_path / "s.mcap"), uri="synthetic:seated?seconds=0.25")
        landmarks = source.landmarks_world
    replay = hardware.open_source(f"mcap:{tmp_path / 's.mcap'}", realtime=False)
    expected = list(hardware.open_source("synthetic:seated", seconds=0.25))
    frames = list(replay)
    assert len(frames) == len(expected) == 15
    for a, b in zip(expected, frames, strict=True):
        assert_same_frame(a, b)
    assert np.array_equal(replay.landmarks_world, landmarks)
    assert replay.reader.source == "synthetic:seated?seconds=0.25"


def test_sigkilled_synthetic_recording_replays_up_to_its_last_complete_chunk(tmp_path):
    out = tmp_path / "killed.mcap"
    cmd = [sys.executable, "-m", "hardware.record", "--source", "synthetic:seated?seconds=30", "--out", str(out),
           "--flush-interval", "0.1"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.stat().st_size > 2_000_000:  # a few chunks of 320x240 stereo frames
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    reader = RecordingReader(out)
    frames = list(reader.frames())
    assert reader.truncated and reader.complete_chunks >= 2
    assert [f.seq for f in frames] == list(range(len(frames)))
    expected = hardware.open_source("synthetic:seated", seconds=30)
    for a, b in zip(expected, frames, strict=False):
        assert_same_frame(a, b)
    assert reader.rig is not None and reader.rig.baseline_m == expected.rig.baseline_m
