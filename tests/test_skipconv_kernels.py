"""The C++ kernels agree with the pure-PyTorch reference kernels."""

from __future__ import annotations

import pytest
import torch

from tracking.skipconv.kernels import Backend, kernels_for

CPP, REF = kernels_for(Backend.CPP), kernels_for(Backend.TORCH)


def positions(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.sort(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k])[0].int()


@pytest.mark.parametrize("geometry", [(3, 3, 1, 1, 1, 1, 1, 1, 9, 11), (3, 3, 2, 2, 1, 1, 1, 1, 5, 6),
                                      (2, 4, 1, 2, 0, 0, 1, 1, 8, 4), (3, 3, 1, 1, 2, 2, 2, 2, 9, 11)])  # fmt: skip
def test_window_gather_and_dilation_agree(geometry: tuple) -> None:
    x = torch.rand(9, 11, 5)
    n_out = geometry[8] * geometry[9]
    outs = positions(n_out, n_out // 3, 0)
    assert torch.equal(CPP.gather_windows(x, outs, geometry, -1.0), REF.gather_windows(x, outs, geometry, -1.0))
    ins = positions(99, 20, 1)
    stamps = torch.zeros(n_out, dtype=torch.int32)
    assert torch.equal(
        CPP.dilate_positions(ins, 9, 11, stamps, 7, geometry), REF.dilate_positions(ins, 9, 11, stamps, 7, geometry)
    )


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bilinear_align"])
def test_upsampling_at_positions_agrees(mode: str) -> None:
    x = torch.rand(5, 7, 3)
    ins = positions(35, 6, 2)
    stamps = torch.zeros(10 * 14, dtype=torch.int32)
    radius = 0 if mode == "nearest" else 1
    outs = CPP.upsample_positions(ins, 7, 2, radius, 10, 14, stamps, 3)
    assert torch.equal(outs, REF.upsample_positions(ins, 7, 2, radius, 10, 14, stamps, 3))
    z_cpp, z_ref = torch.zeros(10, 14, 3), torch.zeros(10, 14, 3)
    CPP.upsample_at(x, z_cpp, outs, 2, mode != "nearest", mode == "bilinear_align")
    REF.upsample_at(x, z_ref, outs, 2, mode != "nearest", mode == "bilinear_align")
    assert float((z_cpp - z_ref).abs().max()) <= 1e-6


def test_fused_convolution_rows_agree() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(12, 10, 4, generator=gen)
    weight, bias = torch.randn(36, 6, generator=gen), torch.randn(6, generator=gen)
    geometry = (3, 3, 1, 1, 1, 1, 1, 1, 12, 10)
    outs = positions(120, 50, 4)
    z_cpp, z_ref = torch.zeros(12, 10, 6), torch.zeros(12, 10, 6)
    CPP.conv_rows(x, outs, geometry, weight, bias, z_cpp, 1)
    REF.conv_rows(x, outs, geometry, weight, bias, z_ref, 1)
    assert float((z_cpp - z_ref).abs().max()) <= 1e-5
    assert float(z_cpp.min()) == 0.0


def test_changed_positions_agree_and_update_the_previous_frame() -> None:
    prev = torch.rand(6, 8, 2)
    x = prev.clone()
    x[2, 3, 1] += 1.0
    x[5, 7, 0] -= 1.0
    p_cpp, p_ref = prev.clone(), prev.clone()
    assert CPP.changed_positions(x, p_cpp).tolist() == REF.changed_positions(x, p_ref).tolist() == [19, 47]
    assert torch.equal(p_cpp, x) and torch.equal(p_ref, x)
