"""Gates of the skip-convolution engine: the learned Gumbel gate trains, the norm gate is what the engine runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tracking.skipconv.gates import GumbelGate, gated_skip_conv, norm_gate, sparsity_loss
from tracking.skipconv.kernels import Backend, kernels_for


def test_gumbel_gate_passes_gradients_to_its_parameters() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    gate = GumbelGate(conv, block=2).train()
    x_ref = torch.rand(2, 3, 8, 8)
    x = x_ref + 0.1 * torch.randn(2, 3, 8, 8)
    z_ref = conv(x_ref).detach()
    z, g = gated_skip_conv(conv, gate, x, x_ref, z_ref)
    loss = (z - conv(x).detach()).pow(2).mean() + 0.1 * sparsity_loss([g], [3 * 9 * 4])
    loss.backward()
    assert float(torch.minimum(g, 1 - g).abs().max()) <= 1e-6  # hard forward: every gate 0 or 1
    assert gate.logits.weight.grad is not None and float(gate.logits.weight.grad.abs().sum()) > 0
    assert gate.logits.bias.grad is not None and float(gate.logits.bias.grad.abs()) > 0


def test_gumbel_gate_is_deterministic_in_eval() -> None:
    conv = nn.Conv2d(1, 2, 3, padding=1)
    gate = GumbelGate(conv).eval()
    r = torch.randn(1, 1, 6, 6)
    assert torch.equal(gate(r), gate(r))


def test_open_gates_reproduce_the_dense_convolution() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1)
    gate = GumbelGate(conv, init_bias=100.0).eval()  # every gate open
    x_ref, x = torch.rand(1, 2, 7, 9), torch.rand(1, 2, 7, 9)
    z, _ = gated_skip_conv(conv, gate, x, x_ref, conv(x_ref))
    assert float((z - conv(x)).abs().max()) <= 1e-5


def test_sparsity_loss_weights_layers_by_their_macs() -> None:
    open_cheap, closed_costly = torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    assert float(sparsity_loss([open_cheap, closed_costly], [1, 9])) == pytest.approx(0.1)


@pytest.mark.parametrize("update_floor", [0.0, 0.05])
@pytest.mark.parametrize("backend", [Backend.CPP, Backend.TORCH], ids=lambda b: b.value)
@pytest.mark.parametrize("stride", [1, 2])
def test_engine_updates_exactly_the_inputs_of_blocks_the_norm_gate_fires(
    backend: Backend, stride: int, update_floor: float
) -> None:
    gen = torch.Generator().manual_seed(stride)
    h, w, c, block, eps2 = 13, 17, 3, 2, 0.4
    x_hat = torch.rand(h, w, c, generator=gen)
    x = x_hat.clone()
    changed = torch.rand(h, w, generator=gen) < 0.3
    x[changed] += 0.3 * torch.randn(int(changed.sum()), c, generator=gen)
    geometry = (3, 3, stride, stride, 1, 1, 1, 1, (h - 1) // stride + 1, (w - 1) // stride + 1)
    fired = norm_gate((x - x_hat).permute(2, 0, 1)[None], (3, 3), (stride,) * 2, (1, 1), (1, 1), block, eps2)
    assert 0 < int(fired.sum()) < fired.numel()

    ho, wo = geometry[8], geometry[9]
    expected = torch.zeros(h, w, dtype=torch.bool)
    for by, bx in fired.nonzero().tolist():  # the input rectangle of each fired block
        y0, y1 = by * block * stride - 1, min(ho - 1, (by + 1) * block - 1) * stride - 1 + 2
        x0, x1 = bx * block * stride - 1, min(wo - 1, (bx + 1) * block - 1) * stride - 1 + 2
        expected[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = True
    expected &= changed & ((x - x_hat).pow(2).sum(2) >= update_floor)  # the floor keeps small residuals waiting

    kernels = kernels_for(backend)
    changes = torch.arange(h * w, dtype=torch.int32)
    reference = x_hat.clone()
    r2, energy = torch.zeros(h * w), torch.zeros(((ho + 1) // 2) * ((wo + 1) // 2), dtype=torch.float64)
    stamps_blocks = torch.zeros(energy.numel(), dtype=torch.int32)
    _, n_updated, n_pending, refreshed = kernels.select_update(
        x, reference, changes, False, r2, energy, stamps_blocks, 1, geometry, eps2, block, 1.0, 0,
        update_floor,
    )  # fmt: skip
    updated = (reference != x_hat).any(2)
    assert not refreshed
    assert torch.equal(updated, expected)
    assert n_updated == int(expected.sum())
    assert n_pending == int((changed & ~expected).sum())
    pending = torch.nonzero(r2 > 0).flatten()
    assert set(pending.tolist()) == set((changed & ~expected).flatten().nonzero().flatten().tolist())
    if update_floor:
        unfloored = (x - x_hat).pow(2).sum(2) > 0  # what the same blocks would update without the floor
        assert int(expected.sum()) < int((unfloored & (updated | (changed & ~expected))).sum())


@pytest.mark.parametrize("backend", [Backend.CPP, Backend.TORCH], ids=lambda b: b.value)
def test_the_update_floor_keeps_every_block_below_the_threshold_and_recomputes_less(backend: Backend) -> None:
    """One strong change among faint ones: with the layer's floor (the threshold's share per position) the fired
    blocks update only the strong input, every block ends below the threshold, and fewer outputs recompute."""
    h, w, c, block, eps2 = 12, 12, 2, 1, 0.09
    field = 9  # a 3x3 stride-1 window: one block's receptive field
    geometry = (3, 3, 1, 1, 1, 1, 1, 1, h, w)
    x_hat = torch.zeros(h, w, c)
    x = x_hat.clone()
    x[2:10, 2:10] += 0.03  # faint: 0.0018 a position, far below the threshold's share (0.01)
    x[6, 6] += 0.5  # strong: fires every block around it
    kernels = kernels_for(backend)
    results = {}
    for update_floor in (0.0, eps2 / field):
        reference = x_hat.clone()
        r2, energy = torch.zeros(h * w), torch.zeros(h * w, dtype=torch.float64)
        stamps = torch.zeros(h * w, dtype=torch.int32)
        outputs, n_updated, _, _ = kernels.select_update(
            x, reference, torch.arange(h * w, dtype=torch.int32), False, r2, energy, stamps, 1, geometry, eps2,
            block, 1.0, 0, update_floor,
        )  # fmt: skip
        results[update_floor] = (len(outputs), n_updated, float(energy.max()))
    (all_outputs, all_updated, _), (floor_outputs, floor_updated, floor_energy) = results.values()
    assert floor_updated == 1 and all_updated == 25  # the strong input, or every changed one in 5x5
    assert floor_outputs == 9 < all_outputs == 49
    assert floor_energy <= eps2
