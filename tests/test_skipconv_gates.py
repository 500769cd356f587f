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


@pytest.mark.parametrize("backend", [Backend.CPP, Backend.TORCH], ids=lambda b: b.value)
@pytest.mark.parametrize("stride", [1, 2])
def test_engine_updates_exactly_the_inputs_of_blocks_the_norm_gate_fires(backend: Backend, stride: int) -> None:
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
    expected &= changed

    kernels = kernels_for(backend)
    changes = torch.arange(h * w, dtype=torch.int32)
    reference = x_hat.clone()
    r2, energy = torch.zeros(h * w), torch.zeros(((ho + 1) // 2) * ((wo + 1) // 2), dtype=torch.float64)
    stamps_in, stamps_out = torch.zeros(h * w, dtype=torch.int32), torch.zeros(ho * wo, dtype=torch.int32)
    stamps_blocks = torch.zeros(energy.numel(), dtype=torch.int32)
    _, n_updated, n_pending, refreshed = kernels.select_update(
        x, reference, changes, False, r2, energy, stamps_in, stamps_out, stamps_blocks, 1, geometry, eps2, block, 1.0, 0
    )
    updated = (reference != x_hat).any(2)
    assert not refreshed
    assert torch.equal(updated, expected)
    assert n_updated == int(expected.sum())
    assert n_pending == int((changed & ~expected).sum())
    pending = torch.nonzero(r2 > 0).flatten()
    assert set(pending.tolist()) == set((changed & ~expected).flatten().nonzero().flatten().tolist())
