"""After training: the fp16 weights file, the gate ε tuned for temporal sparsity, held-out metrics, the model card."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hardware.synthetic import open_synthetic
from tracking.network import metrics
from tracking.network.api import GATE_FILE, WEIGHTS_FILE, KeypointModel
from tracking.network.model import KeypointNet

log = logging.getLogger(__name__)

THRESHOLD_CANDIDATES = (0.01, 0.02, 0.03, 0.05, 0.08)
"""Global gate ε values tried, smallest first (ε = 0 is exact by construction, so needs no trial)."""
REQUIRED_AGREEMENT = 0.995
"""Skip vs dense keypoints within 1 px that the chosen ε must keep (the target is 99%; the margin absorbs the
difference between the tuning sequences and the held-out ones)."""
TUNING_SEQUENCES = (("still_hand", 100), ("seated", 100))
"""(scenario, world seed) the ε is tuned on: training worlds, never the held-out evaluation seeds."""
EVALUATION_RUNS = (("synthetic:seated", 7), ("synthetic:still_hand", 7))
"""Held-out (source, seed) runs whose metrics go into the model card."""


@dataclass(frozen=True)
class ThresholdTrial:
    threshold: float
    agreement: float
    mac_ratio: float


def save_weights(model: KeypointNet, path: Path = WEIGHTS_FILE) -> Path:
    """Write the state dict with floating tensors in fp16 (half the size; fp16 keeps ~3 significant digits, far
    finer than the trained weights' own noise)."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def tune_threshold(model: KeypointNet, seconds: float = 1.0) -> tuple[float, list[ThresholdTrial]]:
    """The largest ε of ``THRESHOLD_CANDIDATES`` whose skip keypoints agree with the dense ones (within 1 px) at
    least ``REQUIRED_AGREEMENT`` of the time on every tuning sequence (camera 0)."""
    sequences = []
    for scenario, seed in TUNING_SEQUENCES:
        source = open_synthetic(scenario, seconds=seconds, seed=seed)
        images = [frame.images[0] for frame in source]
        dense = KeypointModel(model, skip=False)
        sequences.append((images, [dense.infer(image) for image in images]))
    trials, chosen = [], 0.0
    # One skip model for every trial: it measures its layers' break-even fractions once, on its first key frame.
    skip = KeypointModel(model, skip=True)
    for threshold in THRESHOLD_CANDIDATES:
        skip.threshold = threshold
        worst, macs, dense_macs = 1.0, 0, 0
        for images, reference in sequences:
            skip.reset()
            agree = total = 0
            for i, image in enumerate(images):
                result = skip.infer(image)
                if i == 0:
                    continue
                a, t = metrics.agreement(reference[i], result, 1.0)
                agree, total = agree + a, total + t
                stats = skip.stats()
                macs, dense_macs = macs + stats["macs"], dense_macs + stats["dense_macs"]
            worst = min(worst, agree / total if total else 1.0)
        trial = ThresholdTrial(threshold, worst, macs / dense_macs if dense_macs else 1.0)
        log.info("gate threshold %.3f: agreement %.4f, MAC ratio %.3f", threshold, trial.agreement, trial.mac_ratio)
        trials.append(trial)
        if trial.agreement >= REQUIRED_AGREEMENT:
            chosen = threshold
    return chosen, trials


def finish(
    model: KeypointNet, summary: dict, weights_dir: Path, tune: bool = True, eval_video: Path | None = None
) -> None:
    """Save the weights, tune and save ε, evaluate on held-out data, and write the model card."""
    weights_path = save_weights(model, weights_dir / WEIGHTS_FILE.name)
    gate_path = weights_dir / GATE_FILE.name
    if tune:
        threshold, trials = tune_threshold(model)
        gate = {
            "threshold": threshold,
            "rule": f"largest ε with skip vs dense agreement (1 px) >= {REQUIRED_AGREEMENT} on {TUNING_SEQUENCES}",
            "trials": [t.__dict__ for t in trials],
        }
        gate_path.write_text(json.dumps(gate, indent=1) + "\n")
    gate = json.loads(gate_path.read_text())
    from tracking.evaluate_network import evaluate_network

    evaluations = []
    for uri, seed in EVALUATION_RUNS:
        t0 = time.perf_counter()
        result = evaluate_network(uri, seed=seed, seconds=1.0, weights=weights_path)
        log.info("evaluated %s seed %d in %.0f s", uri, seed, time.perf_counter() - t0)
        evaluations.append(result)
    if eval_video is not None:
        evaluations.append(evaluate_network(f"video:{eval_video}", seconds=10.0, start_s=48.0, weights=weights_path))
    summary["weights_bytes"] = weights_path.stat().st_size
    (weights_dir / "README.md").write_text(model_card(summary, gate, evaluations))


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def model_card(summary: dict, gate: dict, evaluations: list[dict]) -> str:
    """The model card (Markdown): what the network is, how it was trained, what it measures."""
    columns = ("hand_pck2d_3px", "scene_repeatability", "desc_match_precision", "skip_dense_agreement_1px",
               "net_mac_ratio", "net_speedup", "active_fraction", "classical_repeatability")  # fmt: skip
    rows = [
        "| source | seed | frames | " + " | ".join(columns) + " |",
        "|" + "---|" * (3 + len(columns)),
    ]
    for e in evaluations:
        rows.append(f"| {e['source']} | {_fmt(e['seed'])} | {e['frames']} | "
                    + " | ".join(_fmt(e.get(c)) for c in columns) + " |")  # fmt: skip
    losses = summary.get("final_losses", {})
    trials = "\n".join(
        f"| {t['threshold']:.3f} | {t['agreement']:.4f} | {t['mac_ratio']:.3f} |" for t in gate.get("trials", [])
    )
    return f"""# Keypoint network weights (tracking/weights/keypoint_net.pt)

`KeypointNet` (tracking/network/model.py): one grayscale image -> scene interest points (SuperPoint-style cell
logits at stride 4), {32}-D L2-normalised descriptors, and 2 x 21 hand joint heatmaps (left, right; MediaPipe order)
with sub-pixel soft-argmax. {summary.get("macs_320x240", 0) / 1e9:.3f} GMAC per 320x240 frame, fp16 state dict of
{summary.get("weights_bytes", 0) / 1e6:.2f} MB. Files: `keypoint_net.pt` (weights), `keypoint_net_gate.json` (the
skip gate's ε and how it was chosen). Load with `tracking.network.load_default()`.

## Data
Rendered on the fly (tracking/network/data.py): the synthetic world (hardware/synthetic), all scenarios, world
seeds 100..123 (evaluation uses other seeds), scripted head paths and random look-around (yaw ±70°, pitch
-20..15°); pairs of views (the two cameras of a frame, or one camera 3..40 frames apart) share landmark ids.
15% of pairs are real frames (tests/data/vtest_frames: 12 frames of the first 60% of OpenCV's vtest.avi) under
two random warps, with Shi-Tomasi corners (OpenCV) as the teacher's detector targets. Augmentation per view:
affine warp (rotation ±5°, zoom 1..1.2, shift), gamma 0.6..1.6, gain, vignetting, Gaussian blur, sensor noise.
Training crops are 192x160 px, centred near a hand 70% of the time.

Supervision: scene cells: cross-entropy to the pixel of the landmark (or "no point"); descriptors: symmetric
InfoNCE between the two views' landmarks (temperature 0.07); hands: CenterNet focal loss on Gaussian heatmaps
(σ = 3 px) plus smooth-L1 of the 5x5-cell soft-argmax to the true joint.

## Training
`{summary.get("command", "python -m tracking.train")}`: {summary.get("steps")} steps of {summary.get("pairs_per_step")}
pairs (AdamW, cosine schedule, seed 0), {summary.get("train_seconds", 0) / 60:.1f} min of wall time on this 2-core
machine (shared with other jobs). Final losses (mean of the last 20 steps):
{", ".join(f"{k} {v:.3f}" for k, v in losses.items() if k != "step")}.

## Skip gate
Global ε = {gate["threshold"]} ({gate.get("rule", "")}).

| ε | worst agreement (1 px) | MAC ratio |
|---|---|---|
{trials}

## Held-out metrics
`python -m tracking.evaluate_network --source URI --seed N --seconds 1 --json OUT` (skip model's keypoints;
real video: `--seconds 10 --start 48`, the part of vtest.avi not used in training).

{chr(10).join(rows)}
"""
