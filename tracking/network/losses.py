"""Training losses of the keypoint network (see tracking/network/data.py for the targets)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tracking.network.data import Batch
from tracking.network.decode import sample_descriptors_torch, window_soft_argmax
from tracking.network.model import STRIDE

SOFT_ARGMAX_RADIUS = 2
"""Half-size in cells of the soft-argmax window, the same at training and inference (DecodeConfig)."""


@dataclass(frozen=True)
class LossWeights:
    scene: float = 1.0
    hand_heatmap: float = 1.0
    hand_position: float = 0.2
    descriptor: float = 1.0


def scene_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the (B, 17, h, w) cell logits against the (B, h, w) target classes (SuperPoint)."""
    return F.cross_entropy(logits, classes)


def hand_heatmap_loss(logits: torch.Tensor, heat: torch.Tensor, peaks: torch.Tensor) -> torch.Tensor:
    """Penalty-reduced focal loss on (B, 42, h, w) joint logits (CenterNet, Zhou et al. 2019, eq. 1): each visible
    joint's cell is a positive, its Gaussian neighbourhood a softened negative, every other cell (a hidden joint's
    included) a negative. Normalised by the number of positives."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = peaks.float()
    positive = -((1 - p) ** 2) * torch.log(p) * pos
    negative = -((1 - heat) ** 4) * p**2 * torch.log(1 - p) * (1 - pos)
    return (positive + negative).sum() / pos.sum().clamp_min(1.0)


def hand_position_loss(logits: torch.Tensor, joints_px: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 in pixels between each visible joint and the soft-argmax of its heatmap in the window around its
    true cell: trains the heatmap's shape to give sub-pixel positions."""
    if not visible.any():
        return logits.sum() * 0.0
    _, _, h, w = logits.shape
    target = joints_px[visible]
    cells = torch.round((target - (STRIDE - 1) / 2) / STRIDE).long()
    cells[:, 0].clamp_(0, w - 1)
    cells[:, 1].clamp_(0, h - 1)
    predicted = window_soft_argmax(logits[visible], cells, SOFT_ARGMAX_RADIUS)
    return F.smooth_l1_loss(predicted, target, beta=1.0)


def descriptor_loss(descriptors: torch.Tensor, matches: list[tuple[torch.Tensor, torch.Tensor]],
                    temperature: float = 0.07, max_points: int = 160) -> torch.Tensor:  # fmt: skip
    """Symmetric InfoNCE over each pair's matched points: the descriptor of a point in one view must be nearer to
    the same point's descriptor in the other view than to every other point's (descriptors (B, D, h, w), pairs
    are views 2k, 2k+1)."""
    size = (descriptors.shape[3] * STRIDE, descriptors.shape[2] * STRIDE)
    losses = []
    for k, (pa, pb) in enumerate(matches):
        if len(pa) < 2:
            continue
        if len(pa) > max_points:
            keep = torch.linspace(0, len(pa) - 1, max_points).long()
            pa, pb = pa[keep], pb[keep]
        da = sample_descriptors_torch(descriptors[2 * k : 2 * k + 1], pa[None], size)[0]
        db = sample_descriptors_torch(descriptors[2 * k + 1 : 2 * k + 2], pb[None], size)[0]
        similarity = da @ db.T / temperature
        labels = torch.arange(len(pa))
        losses.append(0.5 * (F.cross_entropy(similarity, labels) + F.cross_entropy(similarity.T, labels)))
    if not losses:
        return descriptors.sum() * 0.0
    return torch.stack(losses).mean()


def total_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch: Batch,
               weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """Weighted sum of the four losses, and each one's value for the progress bar."""
    scene, descriptors, hands = outputs
    parts = {
        "scene": scene_loss(scene, batch.scene_classes),
        "hand_heatmap": hand_heatmap_loss(hands, batch.hand_heat, batch.hand_peaks),
        "hand_position": hand_position_loss(hands, batch.joints_px, batch.joints_visible),
        "descriptor": descriptor_loss(descriptors, batch.matches),
    }
    total = sum(getattr(weights, name) * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}
