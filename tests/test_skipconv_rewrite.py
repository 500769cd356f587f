"""The graph rewrite before skip conversion: a 1x1 convolution over a concatenation holding an upsampled map."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tracking.skipconv import convert
from tracking.skipconv.layers import ConcatLayer, ConvLayer, UpsampleLayer


class Decoder(nn.Module):
    """Coarse features upsampled and fused with fine ones by a 1x1 convolution, as the keypoint network does."""

    def __init__(self, upsampled_first: bool = True, functional: bool = False, mode: str = "bilinear") -> None:
        super().__init__()
        self.fine = nn.Conv2d(1, 6, 3, padding=1)
        self.coarse = nn.Conv2d(6, 10, 3, stride=2, padding=1)
        self.fuse = nn.Conv2d(16, 5, 1)
        self.bn = nn.BatchNorm2d(5)
        self.up = nn.Upsample(scale_factor=2, mode=mode, align_corners=False if mode == "bilinear" else None)
        self.upsampled_first, self.functional, self.mode = upsampled_first, functional, mode
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine = torch.relu(self.fine(x))
        coarse = torch.relu(self.coarse(fine))
        up = F.interpolate(coarse, scale_factor=2, mode=self.mode) if self.functional else self.up(coarse)
        parts = [up, fine] if self.upsampled_first else [fine, up]
        return torch.relu(self.bn(self.fuse(torch.cat(parts, 1))))


class SharedConcat(Decoder):
    """The concatenation is also an output: it must stay."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fine = torch.relu(self.fine(x))
        both = torch.cat([self.up(torch.relu(self.coarse(fine))), fine], 1)
        return self.fuse(both), both


def frames(count: int = 6) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, 1, 24, 32, generator=gen)
    out = [x]
    for k in range(1, count):
        x = x.clone()
        x[..., 4 + k : 9 + k, 10:16] += 0.3 * torch.rand(1, 1, 5, 6, generator=gen)  # a patch moving down
        out.append(x)
    return out


@pytest.mark.parametrize(
    "options",
    [{}, {"upsampled_first": False}, {"functional": True}, {"mode": "nearest"}],
    ids=["module", "fine_first", "interpolate", "nearest"],
)
def test_the_fusion_runs_before_the_upsampling_and_stays_exact(options: dict) -> None:
    model = Decoder(**options).eval()
    skip = convert(model, threshold=0.0, break_even=1.0)
    assert not any(isinstance(layer, ConcatLayer) for layer in skip.layers)
    convs = {layer.name: layer for layer in skip.layers if isinstance(layer, ConvLayer)}
    pieces = [layer for name, layer in convs.items() if name.startswith("fuse_part")]
    assert sorted(p.in_channels for p in pieces) == [6, 10]
    upsample = next(layer for layer in skip.layers if isinstance(layer, UpsampleLayer))
    assert skip.layers[upsample.inputs[0]] in pieces  # the 10 coarse channels are fused at the coarse resolution
    for x in frames():
        with torch.no_grad():
            expected = model(x)
        assert float((skip(x) - expected).abs().max()) <= 1e-5


def test_dense_mode_runs_the_network_as_written() -> None:
    model = Decoder().eval()
    skip = convert(model, threshold=0.0)
    skip.dense = True
    assert any(n.target is torch.cat for n in skip.as_written.graph.nodes)
    assert not any(n.target is torch.cat for n in skip.folded.graph.nodes)
    x = frames(1)[0]
    with torch.no_grad():
        assert float((skip(x) - model(x)).abs().max()) <= 1e-5


def test_a_concatenation_used_elsewhere_is_kept() -> None:
    model = SharedConcat().eval()
    skip = convert(model, threshold=0.0, break_even=1.0)
    assert any(isinstance(layer, ConcatLayer) for layer in skip.layers)
    for x in frames(3):
        with torch.no_grad():
            expected = model(x)
        assert all(float((a - b).abs().max()) <= 1e-5 for a, b in zip(skip(x), expected, strict=True))


def test_a_network_with_nothing_to_rewrite_keeps_one_graph() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    skip = convert(model, threshold=0.0)
    assert skip.folded is skip.as_written
    skip.precision = "bf16"
    assert skip._bf16["folded"] is skip._bf16["as_written"]
