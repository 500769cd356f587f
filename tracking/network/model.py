"""The keypoint network: a small encoder-decoder with three heads at stride 4, built only of operations the
skip-convolution engine runs sparsely (3x3/1x1 convolutions, BatchNorm, ReLU, add, concat, bilinear upsampling).

Input (B, 1, H, W) float, made by ``to_input`` from uint8 grayscale. Outputs at stride ``STRIDE`` (H/4, W/4):

- ``scene`` (B, 17, H/4, W/4): SuperPoint-style cell logits, 16 classes for the pixel of the 4x4 cell holding an
  interest point (row-major ``dy * 4 + dx``) and one "no point" class;
- ``descriptors`` (B, DESCRIPTOR_DIM, H/4, W/4): raw descriptors, L2-normalised after sampling (decode);
- ``hands`` (B, 42, H/4, W/4): joint heatmap logits, channels 0..20 the left hand's 21 joints (MediaPipe order),
  21..41 the right hand's.

At 320x240 the network executes about 0.30 GMAC (``count_macs``), under the 0.6 GMAC budget.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from tracking.keypoints import DESCRIPTOR_DIM

STRIDE = 4
"""Output stride of every head, pixels per cell."""
CELL_CLASSES = STRIDE * STRIDE + 1
"""Scene head classes per cell: one per pixel of the cell plus the "no point" class (last)."""
HAND_JOINTS = 21
HAND_CHANNELS = 2 * HAND_JOINTS
"""Hand head channels: left hand's 21 joints, then the right hand's."""
CONTEXT_MODULES = ("down8", "ctx8a", "ctx8b")
"""The /8 context: the scene points do not depend on it, the descriptors and the hands do, through the decoder. A
skip model gates it with its own ε (``KeypointModel(module_scales=...)``, ``GateSettings``)."""
DECODER_MODULES = ("fuse4", "dec4")
"""The decoder at /4 that the descriptor and hand heads read: the scene points do not depend on it either."""


def conv_bn(
    cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1, relu: bool = True
) -> nn.Sequential:
    """Convolution + BatchNorm (+ ReLU); BatchNorm is folded into the convolution when converted to skip layers."""
    padding = dilation * (kernel - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class KeypointNet(nn.Module):
    """Scene points, descriptors and two hands' joints from one grayscale image; see the module docstring."""

    def __init__(self, descriptor_dim: int = DESCRIPTOR_DIM) -> None:
        super().__init__()
        self.stem = conv_bn(1, 16, stride=2)  # /2
        self.down4 = conv_bn(16, 32, stride=2)  # /4
        self.enc4 = conv_bn(32, 32)
        self.down8 = conv_bn(32, 64, stride=2)  # /8
        self.ctx8a = conv_bn(64, 64, dilation=2)  # dilation widens the context descriptors need
        self.ctx8b = conv_bn(64, 64, relu=False)
        self.relu = nn.ReLU()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.fuse4 = conv_bn(64 + 32, 32, kernel=1)
        self.dec4 = conv_bn(32, 32)
        # The scene points' own branch at /4, without the /8 context: a point's position then depends on the
        # image within 23 px of it, and a skip model can compute that path nearly exactly while it gates the
        # context coarsely (docs/network.md, "Architecture").
        self.scene4 = conv_bn(32, 32)
        self.scene = nn.Conv2d(32, CELL_CLASSES, 1)
        self.descriptors = nn.Conv2d(32, descriptor_dim, 1)
        self.hands = nn.Conv2d(32, HAND_CHANNELS, 1)
        # Start from "no joint anywhere" and "no point in this cell", as CenterNet and SuperPoint do: the sparse
        # positives then do not drown in the loss of thousands of negatives at the first steps.
        nn.init.constant_(self.hands.bias, -4.6)
        nn.init.zeros_(self.scene.bias)
        with torch.no_grad():
            self.scene.bias[-1] = 4.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f4 = self.enc4(self.down4(self.stem(x)))
        d8 = self.down8(f4)
        f8 = self.relu(d8 + self.ctx8b(self.ctx8a(d8)))
        d4 = self.dec4(self.fuse4(torch.cat([self.up(f8), f4], 1)))
        return self.scene(self.scene4(f4)), self.descriptors(d4), self.hands(d4)


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 grayscale (H, W) or (B, H, W) -> the network's (B, 1, H, W) float32 input, grey levels / 255."""
    batch = images[None] if images.ndim == 2 else images
    return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32) / 255.0)[:, None]


def count_macs(model: nn.Module, height: int = 240, width: int = 320) -> int:
    """Multiply-accumulates of every Conv2d of one dense forward pass on a (1, 1, height, width) input."""
    total = 0

    def hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        per_position = kh * kw * (module.in_channels // module.groups) * module.out_channels
        total += per_position * output.shape[2] * output.shape[3]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, height, width))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total
