"""Crash safety of recordings, the issue's done-when: record 30 s of synthetic:seated, SIGKILL the
recorder after ~10 s, replay what survived and compare it bit for bit with the regenerated synthetic frames; then
check that a clean recording replays bit-exactly. Prints one JSON object.

    python benchmarks/recording_crash.py [--kill-after 10] [--clean-seconds 2]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import hardware  # noqa: E402
from hardware.recording import RecordingReader  # noqa: E402


def same(a, b) -> bool:
    """Bit-exact equality of two frames: seq, time, images, IMU and truth (NaN equals NaN)."""
    truth_a, truth_b = a.truth, b.truth
    pixels = zip(truth_a.landmarks_px, truth_b.landmarks_px, strict=True)
    hands = zip(truth_a.hands, truth_b.hands, strict=True)
    return (
        (a.seq, a.t_ns) == (b.seq, b.t_ns)
        and all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))
        and np.array_equal(a.imu, b.imu)
        and np.array_equal(truth_a.T_world_head, truth_b.T_world_head)
        and all(np.array_equal(x, y, equal_nan=True) for x, y in pixels)
        and all(np.array_equal(x.joints_world, y.joints_world) for x, y in hands)
    )


def first_difference(frames, uri: str) -> int | None:
    """The seq of the first frame that differs from a fresh run of the source, or None when all are identical."""
    with hardware.open_source(uri) as source:
        return next((a.seq for a, b in zip(source, frames, strict=False) if not same(a, b)), None)


# what `python -m hardware.record --source URI --out FILE --seconds 30` runs, printing each frame's seq once the
# recorder has taken it, so that the frames lost to the kill can be counted exactly
_RECORDER = """
import sys
import hardware
from hardware.record import record_source
with hardware.open_source(sys.argv[1]) as source:
    record_source(source, sys.argv[2], seconds=30, uri=sys.argv[1], on_frame=lambda f: print(f.seq, flush=True))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-after", type=float, default=10.0)
    parser.add_argument("--clean-seconds", type=float, default=2.0)
    args = parser.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "killed.mcap"
        uri = "synthetic:seated?seconds=30"
        proc = subprocess.Popen([sys.executable, "-c", _RECORDER, uri, str(out)], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        time.sleep(args.kill_after)
        proc.send_signal(signal.SIGKILL)
        written = [int(line) for line in proc.communicate()[0].split()]
        reader = RecordingReader(out)
        frames = list(reader.frames())
        differs = first_difference(frames, uri)
        result["killed"] = {
            "killed_after_s": args.kill_after,
            "frames_handed_to_recorder": len(written),
            "frames_recovered": len(frames),
            "frames_lost": len(written) - len(frames),
            "lost_data_s": (len(written) - len(frames)) / reader.rate_hz,
            "recovered_data_s": (frames[-1].t_ns - frames[0].t_ns) / 1e9 if frames else 0.0,
            "complete_chunks": reader.complete_chunks,
            "truncated": reader.truncated,
            "file_bytes": out.stat().st_size,
            "identical_to_source": differs is None,
            "first_differing_seq": differs,
            "seqs_contiguous": [f.seq for f in frames] == list(range(len(frames))),
        }
        clean = Path(tmp) / "clean.mcap"
        clean_uri = f"synthetic:seated?seconds={args.clean_seconds}"
        subprocess.run([sys.executable, "-m", "hardware.record", "--source", clean_uri, "--out", str(clean)],
                       cwd=REPO, check=True, capture_output=True)  # fmt: skip
        reader = RecordingReader(clean)
        frames = list(hardware.open_source(f"mcap:{clean}", realtime=False))
        differs = first_difference(frames, clean_uri)
        result["clean"] = {
            "seconds": args.clean_seconds,
            "frames": len(frames),
            "truncated": reader.truncated,
            "identical_to_source": differs is None,
            "file_bytes": clean.stat().st_size,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
