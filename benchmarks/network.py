"""Dense vs skip-convolution keypoint network, on synthetic scenarios or on any video file.

    python benchmarks/network.py --json OUT [--scenario still_hand --scenario seated] [--seconds S] [--seed N]
    python benchmarks/network.py --video vtest.avi --start 48 --seconds 20 --json OUT

Each image goes through the dense and the skip model (shipped weights and gate ε); prints and writes JSON per
source: dense_ms, skip_ms (median network wall time per image), speedup, the same in process CPU time (less
disturbed by other processes on a shared machine), mac_ratio (executed over dense MACs), agreement_1px (skip vs
dense keypoints within 1 px) and dense_frame_agreement_1px (the dense keypoints against the previous image's: on a
still camera, the most a skip model that holds back small changes can agree with them), and the skip model's
accuracy where the source knows the truth (synthetic: hand_pck2d_3px, scene_repeatability, desc_match_precision; on
a real video scene_repeatability only, frame to frame, as ``tracking.evaluate_network`` measures them). Images of
other sizes are resized to 320 px wide, as the network was trained.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracking.evaluate_network import evaluate_network  # noqa: E402


def measure(uri: str, seed: int, seconds: float, start_s: float) -> dict:
    r = evaluate_network(uri, seed=seed, seconds=seconds, start_s=start_s)
    return {
        "source": uri,
        "seed": r["seed"],
        "frames": r["frames"],
        "cameras": r["cameras"],
        "threshold": r["threshold"],
        "dense_ms": r["dense_ms"],
        "skip_ms": r["skip_ms"],
        "speedup": r["net_speedup"],
        "dense_cpu_ms": r["dense_cpu_ms"],
        "skip_cpu_ms": r["skip_cpu_ms"],
        "speedup_cpu": r["net_speedup_cpu"],
        "mac_ratio": r["net_mac_ratio"],
        "active_fraction": r["active_fraction"],
        "agreement_1px": r["skip_dense_agreement_1px"],
        "dense_frame_agreement_1px": r["dense_frame_agreement_1px"],
        "hand_pck2d_3px": r["hand_pck2d_3px"],
        "scene_repeatability": r["scene_repeatability"],
        "desc_match_precision": r["desc_match_precision"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", type=Path, help="a video file instead of synthetic scenarios")
    p.add_argument("--scenario", action="append", help="synthetic scenario(s) (default: still_hand and seated)")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--start", type=float, default=0.0, help="seconds of the video to skip first")
    p.add_argument("--seed", type=int, default=7, help="synthetic world seed (held out from training)")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    if args.video is not None:
        uris = [f"video:{args.video}"]
    else:
        uris = [f"synthetic:{s}" for s in (args.scenario or ["still_hand", "seated"])]
    results = [measure(uri, args.seed, args.seconds, args.start) for uri in uris]
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "results": results}
    text = json.dumps(out, indent=1)
    print(text)
    args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
