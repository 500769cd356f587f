"""Record any frame source to an MCAP file: ``python -m hardware.record --source URI --out session.mcap``.

Stops after ``--seconds`` of source time (or ``--frames``), at the end of the source, or on Ctrl-C; the file is
readable even if the recorder is killed (at most the last second is lost).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from tqdm import tqdm

import hardware
from hardware.recording import Recorder
from hardware.sources import FrameSource
from skiptrack_types import Frame, SkipTrackError


def record_source(
    source: FrameSource,
    out: str,
    seconds: float | None = None,
    frames: int | None = None,
    uri: str = "",
    flush_interval_s: float = 1.0,
    on_frame: Callable[[Frame], None] | None = None,
    progress: bool = False,
) -> int:
    """Write ``source`` to ``out`` until ``seconds`` of source time or ``frames`` frames; return frames written.

    ``on_frame`` is called after each frame is handed to the recorder.
    """
    limit_ns = None if seconds is None else int(seconds * 1e9)
    total = frames if frames is not None else (int(seconds * source.rate_hz) if seconds and source.rate_hz else None)
    landmarks = getattr(source, "landmarks_world", None)
    t0_ns = None
    with (
        Recorder(out, source.rig, landmarks, source.rate_hz, uri, flush_interval_s) as recorder,
        tqdm(total=total, unit="frame", disable=not progress, desc="recording") as bar,
    ):
        for item in source:
            if not isinstance(item, Frame):
                recorder.write_gap(item)
                continue
            t0_ns = item.t_ns if t0_ns is None else t0_ns
            if limit_ns is not None and item.t_ns - t0_ns >= limit_ns:
                break
            recorder.write_frame(item)
            bar.update()
            if on_frame is not None:
                on_frame(item)
            if frames is not None and recorder.frames_written >= frames:
                break
        return recorder.frames_written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hardware.record", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="source URI, e.g. synthetic:seated or camera:uvc_stereo_sbs")
    parser.add_argument("--out", required=True, help="the .mcap file to write")
    parser.add_argument("--seconds", type=float, help="stop after this much source time")
    parser.add_argument("--frames", type=int, help="stop after this many frames")
    parser.add_argument("--flush-interval", type=float, default=1.0, help="seconds of data per chunk at most")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with hardware.open_source(args.source) as source:
            n = record_source(
                source, args.out, args.seconds, args.frames, args.source, args.flush_interval, progress=True
            )
    except KeyboardInterrupt:
        print("interrupted; the recording is closed and readable", file=sys.stderr)
        return 130
    except SkipTrackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {n} frames to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
