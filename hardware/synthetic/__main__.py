"""Preview a synthetic scenario as a side-by-side stereo video with the truth drawn.

python -m hardware.synthetic --scenario seated --seconds 5 --out preview.mp4 [--seed N] [--size WxH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

from hardware.synthetic.preview import draw_truth
from hardware.synthetic.scenarios import SCENARIOS
from hardware.synthetic.source import open_synthetic
from skiptrack_types import SkipTrackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hardware.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="seated", choices=sorted(SCENARIOS), help="scenario to render")
    parser.add_argument("--seconds", default="5", help="duration in seconds (default 5)")
    parser.add_argument("--rate", default="60", help="frames per second (default 60)")
    parser.add_argument("--size", default="320x240", help="image size per camera, WxH (default 320x240)")
    parser.add_argument("--seed", default="0", help="world seed (default 0)")
    parser.add_argument("--out", type=Path, default=Path("preview.mp4"), help="output .mp4 (default preview.mp4)")
    args = parser.parse_args(argv)
    try:
        source = open_synthetic(args.scenario, seconds=args.seconds, rate=args.rate, size=args.size, seed=args.seed)
    except SkipTrackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out.is_dir():
        print(f"error: cannot write {args.out}: it is a folder; give a file name such as preview.mp4", file=sys.stderr)
        return 2
    if not args.out.parent.is_dir():
        print(f"error: cannot write {args.out}: folder {args.out.parent} does not exist", file=sys.stderr)
        return 2
    width, height = source.rig.cam0.size
    writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*"mp4v"), source.rate_hz, (2 * width, height))
    if not writer.isOpened():
        print(
            f"error: cannot write {args.out}: OpenCV could not open an mp4v video there "
            "(check the path is writable and ends in .mp4)",
            file=sys.stderr,
        )
        return 2
    try:
        for frame in tqdm(source, total=source.num_frames, desc=f"synthetic:{args.scenario}", unit="frame"):
            writer.write(draw_truth(frame))
    finally:
        writer.release()
    print(f"wrote {source.num_frames} frames ({2 * width}x{height}, {source.rate_hz:g} fps) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
