"""The skip engine's frame plan against its Python layers, on the shipped keypoint network.

    python benchmarks/frame_plan.py --json OUT [--source synthetic:still_hand] [--source video:PATH --start 48]
                                    [--frames 100] [--repeats 3]

Per source: every image goes through the dense model, the skip model with the frame plan (tracking/skipconv/plan.py)
and the same skip model with the Python layers (``SkipModel.use_plan = False``), the two skip models' order
alternating image by image, each repeat from a key frame. Reports the medians of the network wall time per image
(``KeypointModel.last_network_s``): dense_ms, plan_ms, python_ms, plan_gain (python_ms / plan_ms) and each one's
speedup over dense, whether the two skip models' outputs were bit-identical on every image, and on a synthetic
(stereo) source the same for a stereo frame with the two cameras' models in threads, one torch thread each, as
``NetworkKeypointProvider`` runs them (engine only: the images are steadied and converted first).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hardware import open_source  # noqa: E402
from skiptrack_types import Gap  # noqa: E402
from tracking.evaluate_network import network_image  # noqa: E402
from tracking.network import load_default  # noqa: E402
from tracking.network.deadband import Deadband  # noqa: E402
from tracking.network.model import to_input  # noqa: E402

MODES = ("dense", "plan", "python")


def read_frames(uri: str, frames: int, start_s: float) -> list[list[np.ndarray]]:
    """Up to ``frames`` frames of ``uri`` (each a list of the cameras' network-sized images)."""
    synthetic = uri.startswith("synthetic:")
    source = open_source(uri, **({"seed": 7, "seconds": frames / 60 + 1} if synthetic else {}))
    out, first = [], None
    try:
        for frame in source:
            if isinstance(frame, Gap):
                continue
            first = frame.t_ns if first is None else first
            if synthetic or (frame.t_ns - first) * 1e-9 >= start_s:
                out.append([network_image(image) for image in frame.images])
            if len(out) >= frames:
                break
    finally:
        source.close()
    return out


def models() -> dict[str, object]:
    out = {"dense": load_default(skip=False), "plan": load_default(), "python": load_default()}
    out["python"].engine.use_plan = False
    return out


def per_image(frames: list[list[np.ndarray]], repeats: int) -> dict:
    """Network time per image of the first camera, the three modes on each image in turn."""
    times = {mode: [] for mode in MODES}
    identical = True
    for _ in range(repeats):
        m = models()
        for i, images in enumerate(frames):
            m["dense"].run(images[0])
            outputs = {}
            for mode in ("plan", "python") if i % 2 else ("python", "plan"):
                outputs[mode] = [o.clone() for o in m[mode].run(images[0])]
            identical &= all(torch.equal(a, b) for a, b in zip(outputs["plan"], outputs["python"], strict=True))
            if i:
                for mode in MODES:
                    times[mode].append(m[mode].last_network_s)
    return {**summary(times), "identical_outputs": identical}


def stereo_in_threads(frames: list[list[np.ndarray]], repeats: int) -> dict:
    """Wall time of a stereo frame, the two cameras' engines in threads with one torch thread each."""
    deadbands = [Deadband() for _ in frames[0]]
    inputs = [
        [to_input(db.steady(image).copy()) for db, image in zip(deadbands, images, strict=True)] for images in frames
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = {mode: [] for mode in MODES}
    try:
        with ThreadPoolExecutor(len(frames[0])) as pool:
            for _ in range(repeats):
                cameras = [models() for _ in frames[0]]
                engines = {mode: [camera[mode].engine for camera in cameras] for mode in MODES}
                for i, xs in enumerate(inputs):
                    for mode in MODES if i % 2 else MODES[::-1]:
                        start = time.perf_counter()
                        list(pool.map(lambda engine, x: engine(x), engines[mode], xs))
                        if i:
                            times[mode].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return {f"stereo_{k}": v for k, v in summary(times).items()}


def summary(times: dict[str, list[float]]) -> dict:
    ms = {mode: 1e3 * float(np.median(times[mode])) for mode in MODES}
    return {
        **{f"{mode}_ms": round(ms[mode], 3) for mode in MODES},
        "plan_gain": round(ms["python"] / ms["plan"], 3),
        "plan_speedup": round(ms["dense"] / ms["plan"], 3),
        "python_speedup": round(ms["dense"] / ms["python"], 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", action="append", help="source URI(s) (default: synthetic:still_hand)")
    p.add_argument("--frames", type=int, default=100, help="frames per repeat (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--start", type=float, default=0.0, help="seconds of a video to skip first (not synthetic)")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    results = []
    for uri in args.source or ["synthetic:still_hand"]:
        frames = read_frames(uri, args.frames, args.start)
        if len(frames) < 2:
            raise SystemExit(f"{uri}: fewer than 2 frames to time (check --start and --frames)")
        result = {"source": uri, "frames": len(frames), **per_image(frames, args.repeats)}
        if len(frames[0]) > 1:
            result.update(stereo_in_threads(frames, args.repeats))
        print(json.dumps(result), flush=True)
        results.append(result)
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "results": results}
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
