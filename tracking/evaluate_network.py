"""Evaluate the keypoint network on a source: accuracy against the synthetic world's truth, and skip vs dense.

``python -m tracking.evaluate_network --source synthetic:seated --seed 7 --seconds 2 --json out.json``

Every camera image goes through the skip model and the dense model (the same folded weights); accuracy metrics
are measured on the skip model's keypoints (``--dense``: on the dense model's). Synthetic sources give
``hand_pck2d_3px``, ``scene_repeatability`` and ``desc_match_precision`` (see tracking/network/metrics.py; pairs are
the two cameras of a frame and one camera ``TEMPORAL_GAP`` frames apart). Sources without truth (a real video)
give ``scene_repeatability`` between consecutive frames of a static camera, next to OpenCV's Shi-Tomasi corners
(``classical_repeatability``) with as many corners. Both give ``skip_dense_agreement_1px``,
``dense_frame_agreement_1px`` (the dense network's keypoints against its own on the camera's previous image, as
``skip_dense_agreement_1px`` counts them: on a still camera, how steady the dense keypoints are, the most a skip model
that holds back small changes can agree with them; docs/network.md, "Steady input"), ``net_mac_ratio``
(executed over dense MACs after the first key frame), ``active_fraction`` (mean per frame), ``dense_ms``,
``skip_ms`` (median network wall time per image) and ``net_speedup`` (their ratio), and the same in CPU time of
this process (``*_cpu_ms``, ``net_speedup_cpu``), which other processes on a shared machine disturb less.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import deque
from pathlib import Path

import cv2
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from hardware import open_source
from skiptrack_types import Frame, Gap
from tracking.evaluate import emit_json
from tracking.keypoints import Keypoints
from tracking.network import metrics
from tracking.network.api import GATE_FILE, GateSettings, KeypointModel, load_weights
from tracking.network.data import teacher_corners

log = logging.getLogger(__name__)

TEMPORAL_GAP = 10
"""Frames between the two views of a temporal pair (1/6 s at 60 Hz)."""
NETWORK_WIDTH = 320
"""Images of other widths are resized to this width (height rounded to a multiple of 8), as the network was trained."""


def network_image(image: np.ndarray) -> np.ndarray:
    """``image`` at the network's working size: unchanged at 320 px wide, else resized (area) to 320 x 8k."""
    h, w = image.shape
    if w == NETWORK_WIDTH and h % 8 == 0:
        return image
    height = max(8, int(round(h * NETWORK_WIDTH / w / 8)) * 8)
    return cv2.resize(image, (NETWORK_WIDTH, height), interpolation=cv2.INTER_AREA)


class _Tally:
    """Sums of (hits, total) per metric."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def add(self, name: str, hits_total: tuple[int, int]) -> None:
        c = self.counts.setdefault(name, [0, 0])
        c[0] += hits_total[0]
        c[1] += hits_total[1]

    def ratio(self, name: str) -> float | None:
        hits, total = self.counts.get(name, (0, 0))
        return hits / total if total else None


# NumPy's OpenBLAS threads keep spinning for a while after each matrix product of the metrics (descriptor matching)
# and take the cores from the networks timed next: on 2 cores both networks measured 2.5x slower with them.
@threadpool_limits.wrap(limits=1, user_api="blas")
def evaluate_network(
    source_uri: str,
    seed: int = 0,
    seconds: float = 2.0,
    dense: bool = False,
    threshold: float | None = None,
    start_s: float = 0.0,
    weights: Path | None = None,
) -> dict:
    """Run the network over ``source_uri`` and return the metrics (see the module docstring).

    ``seed`` and ``seconds`` are passed to synthetic sources; for others ``seconds`` limits the frames read
    after skipping the first ``start_s`` seconds. ``threshold`` None: the shipped gate ε.
    """
    torch.set_num_threads(os.cpu_count() or 1)
    synthetic = source_uri.startswith("synthetic:")
    options = {"seed": seed, "seconds": seconds} if synthetic else {}
    source = open_source(source_uri, **options)
    # The gate settings chosen with these weights: the file beside them, else the shipped one.
    beside = None if weights is None else Path(weights).with_name(GATE_FILE.name)
    settings = GateSettings.load(beside if beside is not None and beside.is_file() else GATE_FILE)
    threshold = settings.threshold if threshold is None else threshold
    network = load_weights(weights) if weights is not None else load_weights()
    skip_models: list[KeypointModel] = []
    dense_models: list[KeypointModel] = []
    tally = _Tally()
    times: dict[str, list[float]] = {"skip": [], "dense": [], "skip_cpu": [], "dense_cpu": []}
    macs = [0, 0]
    active: list[float] = []
    history: deque[tuple[Frame, list[Keypoints], list[np.ndarray]]] = deque(maxlen=TEMPORAL_GAP + 1)
    classical: list[float] = []
    network_rep: list[float] = []
    previous: list[tuple[np.ndarray, np.ndarray]] = []
    previous_dense: dict[int, Keypoints] = {}
    frames = 0
    first_t: int | None = None
    try:
        for frame in source:
            if isinstance(frame, Gap):
                continue
            if not synthetic:
                first_t = frame.t_ns if first_t is None else first_t
                if (frame.t_ns - first_t) * 1e-9 < start_s:
                    continue
                if (frame.t_ns - first_t) * 1e-9 >= start_s + seconds:
                    break
            images = [network_image(img) for img in frame.images]
            if not skip_models:
                skip_models = [
                    KeypointModel(
                        network,
                        skip=True,
                        threshold=threshold,
                        noise_margin=settings.noise_margin,
                        deep_scale=settings.deep_scale,
                        block=settings.block,
                        module_scales=settings.module_scales,
                    )  # fmt: skip
                    for _ in images
                ]
                dense_models = [KeypointModel(network, skip=False) for _ in images]
            results = []
            for cam, image in enumerate(images):
                kd = dense_models[cam].infer(image)
                ks = skip_models[cam].infer(image)
                if frames > 0:
                    times["dense"].append(dense_models[cam].last_network_s)
                    times["skip"].append(skip_models[cam].last_network_s)
                    times["dense_cpu"].append(dense_models[cam].last_network_cpu_s)
                    times["skip_cpu"].append(skip_models[cam].last_network_cpu_s)
                    stats = skip_models[cam].stats(per_layer=False)
                    macs[0] += stats["macs"]
                    macs[1] += stats["dense_macs"]
                    active.append(stats["active_fraction"])
                    tally.add("agreement", metrics.agreement(kd, ks, 1.0))
                    tally.add("dense_frame_agreement", metrics.agreement(previous_dense[cam], kd, 1.0))
                previous_dense[cam] = kd
                results.append(kd if dense else ks)
            if synthetic and frame.truth is not None:
                _score_synthetic(frame, results, history, tally)
            elif not synthetic:
                _score_static(images[0], results[0], previous, network_rep, classical)
            frames += 1
    finally:
        source.close()
    dense_ms, skip_ms, dense_cpu_ms, skip_cpu_ms = (
        1e3 * float(np.median(times[k])) if times[k] else None for k in ("dense", "skip", "dense_cpu", "skip_cpu")
    )
    out = {
        "source": source_uri,
        "seed": seed if synthetic else None,
        "frames": frames,
        "cameras": len(skip_models),
        "metrics_from": "dense" if dense else "skip",
        "threshold": threshold,
        "hand_pck2d_3px": tally.ratio("pck"),
        "scene_repeatability": tally.ratio("repeatability") if synthetic else _mean(network_rep),
        "desc_match_precision": tally.ratio("descriptors"),
        "skip_dense_agreement_1px": tally.ratio("agreement"),
        "dense_frame_agreement_1px": tally.ratio("dense_frame_agreement"),
        "net_mac_ratio": macs[0] / macs[1] if macs[1] else None,
        "net_speedup": dense_ms / skip_ms if dense_ms and skip_ms else None,
        "active_fraction": _mean(active),
        "dense_ms": dense_ms,
        "skip_ms": skip_ms,
        "net_speedup_cpu": dense_cpu_ms / skip_cpu_ms if dense_cpu_ms and skip_cpu_ms else None,
        "dense_cpu_ms": dense_cpu_ms,
        "skip_cpu_ms": skip_cpu_ms,
    }
    if not synthetic:
        out["classical_repeatability"] = _mean(classical)
        out["classical_detector"] = "cv2.goodFeaturesToTrack (Shi-Tomasi), as many corners as the network's points"
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _score_synthetic(frame: Frame, results: list[Keypoints], history: deque, tally: _Tally) -> None:
    truth = frame.truth
    ids = [metrics.landmark_ids(kp.points_px, truth, cam) for cam, kp in enumerate(results)]
    for cam, kp in enumerate(results):
        tally.add("pck", metrics.hand_pck(kp, truth, cam))
    pairs = []
    if len(results) > 1:
        pairs.append(((results[0], ids[0], truth, 0), (results[1], ids[1], truth, 1)))
    history.append((frame, results, ids))
    if len(history) > TEMPORAL_GAP:
        old_frame, old_results, old_ids = history[0]
        for cam in range(len(results)):
            pairs.append(((old_results[cam], old_ids[cam], old_frame.truth, cam), (results[cam], ids[cam], truth, cam)))
    for (ka, ia, ta, ca), (kb, ib, tb, cb) in pairs:
        tally.add("repeatability", metrics.repeatability(ia, tb.landmarks_visible[cb], ib, ta.landmarks_visible[ca]))
        tally.add("descriptors", metrics.descriptor_precision(ka, ia, kb, ib))


def _score_static(image: np.ndarray, result: Keypoints, previous: list, network_rep: list, classical: list) -> None:
    corners = teacher_corners(image, max(len(result), 1))
    if previous:
        prev_points, prev_corners = previous[0]
        network_rep.append(metrics.point_repeatability(prev_points, result.points_px))
        classical.append(metrics.point_repeatability(prev_corners, corners))
    previous[:] = [(result.points_px, corners)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tracking.evaluate_network", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="source URI, e.g. synthetic:seated or video:path/to/vtest.avi")
    p.add_argument("--seed", type=int, default=0, help="synthetic world seed (training uses 100..123)")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds of the source to evaluate")
    p.add_argument("--start", type=float, default=0.0, help="skip this many seconds first (real videos)")
    p.add_argument("--dense", action="store_true", help="measure accuracy on the dense model's keypoints")
    p.add_argument("--threshold", type=float, default=None, help="gate ε (default: the shipped one)")
    p.add_argument("--json", type=Path, help="write the metrics here as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = evaluate_network(args.source, args.seed, args.seconds, args.dense, args.threshold, args.start)
    emit_json(result, args.json, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
