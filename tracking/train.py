"""Train the keypoint network on data rendered on the fly: ``python -m tracking.train``.

The default run reproduces the shipped weights (tracking/weights/keypoint_net.pt): it trains from scratch on the
synthetic world (all scenarios, world seeds ``TRAIN_WORLD_SEEDS``) mixed with real frames (tests/data/vtest_frames)
that carry a classical detector's corners as targets, checkpoints every ``--checkpoint-every`` steps into
``--work-dir`` (``--resume`` continues from there, bit for bit), then exports fp16 weights, tunes the skip gate's
ε for temporal sparsity, and writes the model card (tracking/weights/README.md). ``--retune-gate`` only tunes ε
again for the weights already there (``--eval-video`` as for training).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tracking.network.data import TrainingData
from tracking.network.losses import LossWeights, total_loss
from tracking.network.model import KeypointNet, count_macs

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = REPO / "tracking" / "weights"
REAL_FRAMES_DIR = REPO / "tests" / "data" / "vtest_frames"
DEFAULT_WORK_DIR = Path(os.environ.get("SKIPTRACK_CACHE", Path.home() / ".cache" / "skiptrack")) / "train"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tracking.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10000, help="optimizer steps (default: %(default)s)")
    p.add_argument("--pairs", type=int, default=4, help="view pairs per step (2 images each; default: %(default)s)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the cosine schedule")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights' init and of the data")
    p.add_argument("--real-frames", type=Path, default=REAL_FRAMES_DIR, help="folder of real grayscale frames")
    p.add_argument("--real-fraction", type=float, default=0.15, help="share of pairs made from real frames")
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="checkpoints (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --work-dir")
    p.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="where the weights and card go")
    p.add_argument("--eval-video", type=Path, help="also evaluate on this real video's held-out part (vtest.avi)")
    p.add_argument("--skip-tuning", action="store_true", help="do not tune the gate threshold after training")
    p.add_argument(
        "--retune-gate",
        action="store_true",
        help="no training: tune the gate threshold again for the weights in --weights-dir (after an engine "
        "change) and rewrite the gate file and the model card's gate and metrics sections",
    )
    return p.parse_args(argv)


def learning_rate(step: int, steps: int, peak: float, warmup: int = 60) -> float:
    """Linear warm-up then cosine decay to 2% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def load_real_frames(folder: Path) -> np.ndarray | None:
    import cv2

    files = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not files:
        log.warning("no real frames in %s: training on synthetic data only", folder)
        return None
    return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])


def train(args: argparse.Namespace) -> tuple[KeypointNet, dict]:
    """Run (or resume) the optimisation; returns the model and a summary for the model card."""
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    model = KeypointNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.work_dir / "checkpoint.pt"
    start, seconds, history = 0, 0.0, []
    if args.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, seconds, history = state["step"], state["seconds"], state["history"]
        log.info("resuming at step %d of %d", start, args.steps)
    data = TrainingData(args.seed, real_frames=load_real_frames(args.real_frames), real_fraction=args.real_fraction)
    weights = LossWeights()
    model.train()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="training", unit="step")
    window: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr)
        batch = data.batch(step * args.pairs, args.pairs)
        loss, parts = total_loss(model(batch.images), batch, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        window = (window + [parts])[-20:]
        mean = {k: float(np.mean([w[k] for w in window])) for k in parts}
        bar.set_postfix({k[:8]: f"{v:.3f}" for k, v in mean.items()})
        done = step + 1
        if done % args.checkpoint_every == 0 or done == args.steps:
            history.append({"step": done, **mean})
            elapsed = seconds + time.perf_counter() - t0
            _save_checkpoint(checkpoint_path, model, optimizer, done, elapsed, history)
    seconds += time.perf_counter() - t0
    summary = {"steps": args.steps, "pairs_per_step": args.pairs, "train_seconds": round(seconds, 1),
               "final_losses": history[-1] if history else {}, "loss_weights": asdict(weights)}  # fmt: skip
    return model, summary


def _save_checkpoint(path: Path, model, optimizer, step: int, seconds: float, history: list) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "seconds": seconds, "history": history}, tmp)  # fmt: skip
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.retune_gate:
        from tracking.network.export import retune

        gate = retune(args.weights_dir, args.eval_video)
        print(json.dumps({k: v for k, v in gate.items() if k != "trials"}, indent=1))
        return 0
    model, summary = train(args)
    from tracking.network.export import finish

    summary["macs_320x240"] = count_macs(model)
    summary["command"] = "python -m tracking.train " + " ".join(sys.argv[1:] if argv is None else argv)
    finish(model.eval(), summary, args.weights_dir, tune=not args.skip_tuning, eval_video=args.eval_video)
    print(json.dumps({k: v for k, v in summary.items() if k != "final_losses"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
