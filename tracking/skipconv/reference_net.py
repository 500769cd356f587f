"""A keypoint-style reference network for measuring the skip-convolution engine (until the trained one lands).

1-channel grayscale input (1, 1, 240, 320) -> heatmaps (1, 21, 120, 160) and offsets (1, 2, 120, 160) at half
resolution; 0.48 GMAC at 320x240. Stride-1/2 3x3 convolutions with BatchNorm and ReLU, a residual block,
an upsample + concat skip connection and 1x1 heads: the operations a small hand/keypoint network uses.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def pointwise_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ReferenceKeypointNet(nn.Module):
    """Random-weight keypoint network (BatchNorm statistics randomised so folding is exercised)."""

    def __init__(self, keypoints: int = 21, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = conv_bn(1, 16, 2)  # 120x160
        self.enc1 = conv_bn(16, 32)  # 120x160
        self.down2 = conv_bn(32, 48, 2)  # 60x80
        self.res_a = conv_bn(48, 48)
        self.res_b = nn.Sequential(nn.Conv2d(48, 48, 3, 1, 1, bias=False), nn.BatchNorm2d(48))
        self.down3 = conv_bn(48, 64, 2)  # 30x40
        self.fuse = pointwise_bn(64 + 48, 48)  # 60x80
        self.up_fuse = pointwise_bn(48 + 32, 32)  # 120x160
        self.heatmaps = nn.Conv2d(32, keypoints, 1)
        self.offsets = nn.Conv2d(32, 2, 1)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.1, 0.1)
                nn.init.uniform_(m.running_mean, -0.1, 0.1)
                nn.init.uniform_(m.running_var, 0.5, 1.5)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s1 = self.enc1(self.stem(x))
        d2 = self.down2(s1)
        r = F.relu(d2 + self.res_b(self.res_a(d2)))
        d3 = self.down3(r)
        f = self.fuse(torch.cat([F.interpolate(d3, scale_factor=2, mode="nearest"), r], 1))
        u = self.up_fuse(torch.cat([F.interpolate(f, scale_factor=2, mode="bilinear", align_corners=False), s1], 1))
        return self.heatmaps(u), self.offsets(u)
