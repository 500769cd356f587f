"""Gates that decide which blocks of a skip convolution's output are recomputed.

- The norm gate (used by the engine): a block of ``block`` x ``block`` output positions fires when the squared L2
  norm of the residual ``R = X - X̂`` over the block's receptive field exceeds ``eps2``. ``norm_gate`` is its
  definition in plain PyTorch; the engine's kernels compute the same on compact position lists.
- The learned Gumbel gate of Habibian et al., "Skip-Convolutions for Efficient Video Processing" (CVPR 2021,
  arXiv 2104.11487): a light convolution of the residual gives one logit per output position; during training a
  Gumbel-sigmoid sample is thresholded with a straight-through estimator, and ``sparsity_loss`` pushes the MAC-
  weighted fraction of open gates down.
"""

from __future__ import annotations

import enum

import torch
import torch.nn as nn
import torch.nn.functional as F


class GateKind(enum.Enum):
    NORM = "norm"
    GUMBEL = "gumbel"


def norm_gate(
    residual: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    block: int,
    eps2: float,
) -> torch.Tensor:
    """Fired blocks (nbh, nbw) bool for ``residual`` (1, C, H, W) and a convolution's geometry.

    A block's receptive field is the input rectangle covering the windows of all its output positions; its energy
    is the sum of squared residuals inside (each input pixel once). Fires when energy > eps2 (any nonzero
    residual fires when eps2 <= 0).
    """
    _, _, h, w = residual.shape
    r2 = residual.double().pow(2).sum(1)[0]
    integral = F.pad(r2.cumsum(0).cumsum(1), (1, 0, 1, 0))
    ho = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1

    def spans(n_out: int, n_in: int, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = torch.arange(0, n_out, block)
        last = (first + block - 1).clamp_max(n_out - 1)
        lo = (first * stride[axis] - padding[axis]).clamp(0, n_in)
        hi = (last * stride[axis] - padding[axis] + (kernel[axis] - 1) * dilation[axis] + 1).clamp(0, n_in)
        return lo, hi

    y0, y1 = spans(ho, h, 0)
    x0, x1 = spans(wo, w, 1)
    energy = (
        integral[y1][:, x1] - integral[y0][:, x1] - integral[y1][:, x0] + integral[y0][:, x0]
    )  # (nbh, nbw) rectangle sums
    return energy > max(eps2, 0.0)


class GumbelGate(nn.Module):
    """Learned gate for one convolution: (N, C, H, W) residual -> (N, 1, Ho, Wo) gate in {0, 1}.

    Training: hard Gumbel-sigmoid sample with a straight-through gradient (forward is binary, backward is the
    gradient of the relaxed sigmoid at temperature ``tau``). Eval: deterministic ``logit > 0``. With ``block`` > 1
    the gate is shared by each block of output positions (max of its logits), as the engine computes blocks.
    """

    def __init__(self, conv: nn.Conv2d, block: int = 1, tau: float = 2.0 / 3.0, init_bias: float = 1.0) -> None:
        super().__init__()
        self.logits = nn.Conv2d(
            conv.in_channels, 1, conv.kernel_size, conv.stride, conv.padding, conv.dilation, bias=True
        )
        nn.init.constant_(self.logits.bias, init_bias)
        self.block, self.tau = block, tau

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        logit = self.logits(residual)
        if self.block > 1:
            size = logit.shape[-2:]
            logit = F.max_pool2d(logit, self.block, ceil_mode=True)
            logit = F.interpolate(logit, scale_factor=self.block, mode="nearest")[..., : size[0], : size[1]]
        if not self.training:
            return (logit > 0).to(residual.dtype)
        u = torch.rand_like(logit).clamp(1e-6, 1 - 1e-6)
        soft = torch.sigmoid((logit + torch.log(u) - torch.log1p(-u)) / self.tau)
        hard = (soft > 0.5).to(soft.dtype)
        return hard + soft - soft.detach()


def gated_skip_conv(
    conv: nn.Conv2d, gate: GumbelGate, x: torch.Tensor, x_ref: torch.Tensor, z_ref: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time skip convolution: ``z = z_ref + g * conv_nobias(x - x_ref)``; returns (z, g).

    ``z_ref`` is ``conv(x_ref)`` from the previous frame; by linearity ``z`` equals ``conv(x)`` where ``g`` = 1.
    """
    residual = x - x_ref
    g = gate(residual)
    update = F.conv2d(residual, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return z_ref + g * update, g


def sparsity_loss(gates: list[torch.Tensor], macs_per_position: list[int]) -> torch.Tensor:
    """MAC-weighted fraction of open gates over the layers: the paper's budget term (add it times a weight β)."""
    if len(gates) != len(macs_per_position) or not gates:
        raise ValueError("sparsity_loss needs one MACs-per-position count for each gate tensor")
    weights = torch.tensor([float(m) for m in macs_per_position])
    used = torch.stack([g.mean() * m for g, m in zip(gates, weights, strict=True)]).sum()
    return used / (weights.sum() if len(gates) else 1.0)
