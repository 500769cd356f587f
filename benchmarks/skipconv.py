"""Skip-convolution engine vs dense on the reference keypoint network: speed, MACs, error, overhead, memory.

    python benchmarks/skipconv.py --json out.json [--video PATH] [--frames N] [--repeats R]

Cases: the synthetic scenarios still_hand, seated and look_around (when hardware.synthetic is present), a moving
patch on a real image, an unchanged frame, a fully changed frame, and real video (vtest.avi, 320x240 grayscale).
The dense baseline is the SkipModel's own dense mode: the same folded weights, channels_last, same threads,
interleaved frame by frame in this process (the order alternates each frame). Per case, at the threshold used:
dense and skip median ms, speedup (median of per-frame dense/skip ratios), MAC ratio, MAC-weighted active
fraction, output error vs dense; plus, at threshold 0, the max abs error (exactness). Error metric for the
threshold search: max over frames and outputs of max|skip - dense| / (max(dense) - min(dense)) ("relative range
error"). Each sequence runs at one operating threshold (--threshold, the same for all) and at its own largest
candidate keeping the error within --tolerance (1%), "within_tolerance".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracking.skipconv.convert import SkipModel, convert  # noqa: E402
from tracking.skipconv.reference_net import ReferenceKeypointNet  # noqa: E402

# OpenCV's sample video (samples/data/vtest.avi), expected beside the checkout; any video works with --video
DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "vtest.avi"
SIZE = (320, 240)
THRESHOLDS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1, 0.12, 0.15)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (240, 320) -> (1, 1, 240, 320) float32 in [0, 1]."""
    return torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]


def video_frames(path: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), SIZE, interpolation=cv2.INTER_AREA))
    cap.release()
    if not frames:
        raise SystemExit(
            f"could not read frames from {path}: pass --video PATH (OpenCV's samples/data/vtest.avi or any video)"
        )
    return frames


def moving_patch_frames(background: np.ndarray, n: int) -> list[np.ndarray]:
    """A static image with a textured 48x48 patch (3% of 320x240, a hand's share) moving about 2 px per frame."""
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    frames = []
    for t in range(n):
        image = background.copy()
        x, y = 40 + 2 * t % 200, 90 + int(20 * np.sin(t / 6))
        image[y : y + 48, x : x + 48] = patch
        frames.append(image)
    return frames


def synthetic_frames(name: str, n: int) -> list[np.ndarray] | None:
    try:
        import hardware

        with hardware.open_source(f"synthetic:{name}", seconds=n / 60.0 + 0.1) as source:
            frames = [f.images[0] for f in source if hasattr(f, "images")]
    except (ImportError, Exception) as exc:  # the synthetic world is optional for this benchmark
        logging.warning("synthetic:%s unavailable (%s); skipping it", name, exc)
        return None
    return frames[:n]


def relative_range_error(skip_out: tuple, dense_out: tuple) -> float:
    pairs = zip(skip_out, dense_out, strict=True)
    return max(float((s - d).abs().max() / (d.max() - d.min()).clamp_min(1e-12)) for s, d in pairs)


def max_abs_error(skip_out: tuple, dense_out: tuple) -> float:
    return max(float((s - d).abs().max()) for s, d in zip(skip_out, dense_out, strict=True))


def run(skip: SkipModel, frames: list[torch.Tensor], timed: bool) -> dict:
    """Key frame on frames[0], then per frame dense and skip interleaved (alternating order)."""
    skip.reset()
    skip.dense = False
    skip(frames[0])
    dense_ms, skip_ms, ratios, mac_ratio, active, rel_err, abs_err = [], [], [], [], [], [], []
    for i, x in enumerate(frames[1:]):
        order = (True, False) if i % 2 == 0 else (False, True)
        times = {}
        for dense in order:
            skip.dense = dense
            t0 = time.perf_counter()
            out = skip(x)
            times[dense] = time.perf_counter() - t0
            if dense:
                dense_out = out
            else:
                stats = skip.stats()
                skip_out = tuple(o.clone() for o in out)
        skip.dense = False
        dense_ms.append(times[True] * 1e3)
        skip_ms.append(times[False] * 1e3)
        ratios.append(times[True] / times[False])
        mac_ratio.append(stats["macs"] / stats["dense_macs"])
        active.append(stats["active_fraction"])
        rel_err.append(relative_range_error(skip_out, dense_out))
        abs_err.append(max_abs_error(skip_out, dense_out))
    result = {
        "frames": len(frames) - 1,
        "mac_ratio": float(np.mean(mac_ratio)),
        "mac_reduction": 1.0 - float(np.mean(mac_ratio)),
        "active_fraction_median": statistics.median(active),
        "max_relative_range_error": max(rel_err),
        "max_abs_error": max(abs_err),
    }
    if timed:
        result |= {
            "dense_ms_median": statistics.median(dense_ms),
            "skip_ms_median": statistics.median(skip_ms),
            "speedup_median_of_ratios": statistics.median(ratios),
        }
    return result


def pick_threshold(skip: SkipModel, frames: list[torch.Tensor], tolerance: float) -> tuple[float, dict]:
    """The largest candidate threshold whose relative range error stays within ``tolerance``."""
    errors = {}
    best = 0.0
    for thr in THRESHOLDS:
        skip.threshold = thr
        errors[thr] = run(skip, frames, timed=False)["max_relative_range_error"]
        if errors[thr] > tolerance:
            break
        best = thr
    return best, errors


def timed_runs(skip: SkipModel, frames: list[torch.Tensor], threshold: float, repeats: int) -> dict:
    """``repeats`` interleaved runs at ``threshold``; the run with the median speedup is reported."""
    skip.threshold = threshold
    runs = [run(skip, frames, timed=True) for _ in range(repeats)]
    result = sorted(runs, key=lambda r: r["speedup_median_of_ratios"])[len(runs) // 2]
    result = {"threshold": threshold, **result, "speedups_of_repeats": [r["speedup_median_of_ratios"] for r in runs]}
    result["overhead_share"] = overhead(skip, frames)
    skip.threshold = 0.0
    return result


def overhead(skip: SkipModel, frames: list[torch.Tensor]) -> dict[str, float]:
    """Share of the skip frame time per phase (profiling splits the fused kernels to time them);
    "bookkeeping" = mask + gather + scatter."""
    skip.reset()
    skip.dense = False
    skip(frames[0])
    skip.profile = True
    t0 = time.perf_counter()
    for x in frames[1:]:
        skip(x)
    total = time.perf_counter() - t0
    phases = skip.profile or {}
    skip.profile = False
    shares = {k: v / total for k, v in phases.items()}
    shares["python_and_rest"] = max(0.0, 1.0 - sum(shares.values()))
    shares["bookkeeping"] = sum(shares.get(k, 0.0) for k in ("mask", "gather", "scatter"))
    return shares


def dense_jitter(skip: SkipModel, frames: list[torch.Tensor]) -> float:
    """Median frame-to-frame change of the dense output, in the error metric's units (the scene's own jitter)."""
    skip.dense = True
    outs = [tuple(o.clone() for o in skip(x)) for x in frames]
    skip.dense = False
    return statistics.median(relative_range_error(a, b) for a, b in zip(outs[1:], outs[:-1], strict=True))


def show(name: str, label: str, r: dict) -> None:
    print(
        f"{name:13s} {label:9s} thr={r['threshold']:<6g} dense {r['dense_ms_median']:7.2f} ms  "
        f"skip {r['skip_ms_median']:7.2f} ms  speedup {r['speedup_median_of_ratios']:5.2f}x  "
        f"MAC {r['mac_ratio']:.3f}  rel err {r['max_relative_range_error']:.4f}  abs err {r['max_abs_error']:.1e}",
        flush=True,
    )


def case(skip: SkipModel, name: str, images: list[np.ndarray], args: argparse.Namespace) -> dict:
    frames = [to_tensor(im) for im in images]
    result = {"dense_jitter": dense_jitter(skip, frames), "exact": timed_runs(skip, frames, 0.0, args.repeats)}
    show(name, "exact", result["exact"])
    if name not in ("unchanged", "fully_changed"):
        result["thresholded"] = timed_runs(skip, frames, args.threshold, args.repeats)
        show(name, "threshold", result["thresholded"])
        threshold, errors = pick_threshold(skip, frames, args.tolerance)
        result["within_tolerance"] = timed_runs(skip, frames, threshold, args.repeats)
        result["within_tolerance"]["search_errors"] = {str(k): v for k, v in errors.items()}
        show(name, f"<={args.tolerance:.0%}", result["within_tolerance"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, type=Path, help="where to write the results")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="real video (default vtest.avi)")
    parser.add_argument("--frames", type=int, default=40, help="frames per case (after the key frame)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median is reported)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative range error allowed (0.01 = 1%%)")
    parser.add_argument("--threshold", type=float, default=0.05, help="one operating threshold for every sequence")
    parser.add_argument("--cases", default="", help="comma-separated subset of cases to run")
    parser.add_argument("--block", type=int, default=None, help="gate block for every layer (default: per stride)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(os.cpu_count() or 1)

    net = ReferenceKeypointNet()
    skip = convert(net, threshold=0.0, block=args.block)
    video = video_frames(args.video, args.frames + 1)
    skip(to_tensor(video[0]))  # key frame at 320x240: measures each layer's break-even
    stats = skip.stats()
    n = args.frames + 1
    inverted = 255 - video[0]
    sequences: dict[str, list[np.ndarray] | None] = {
        "still_hand": synthetic_frames("still_hand", n),
        "seated": synthetic_frames("seated", n),
        "look_around": synthetic_frames("look_around", n),
        "moving_patch": moving_patch_frames(video[0], n),
        "unchanged": [video[0]] * n,
        "fully_changed": [video[0] if i % 2 == 0 else inverted for i in range(n)],
        "video": video,
    }
    wanted = {c for c in args.cases.split(",") if c}
    results = {}
    for name, images in sequences.items():
        if images is None or (wanted and name not in wanted):
            continue
        results[name] = case(skip, name, images, args)
    memory = skip.memory()
    report = {
        "network": "ReferenceKeypointNet (tracking/skipconv/reference_net.py)",
        "dense_gmac": stats["dense_macs"] / 1e9,
        "threads": torch.get_num_threads(),
        "block": args.block or "per stride (1 at stride 1, 2 at stride 2)",
        "break_even_active_fraction": skip.break_evens(),
        "cache_memory_multiple_of_activations": memory["cache"] / memory["activations"],
        "memory_bytes": memory,
        "tolerance": args.tolerance,
        "cases": results,
    }
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "cases"}, indent=2))


if __name__ == "__main__":
    main()
