"""SkipModel.active_mask: where the first convolution recomputed, for the live view's heat overlay."""

import torch
from torch import nn

from tracking.skipconv import convert


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1)).eval()


def test_active_mask_is_full_on_a_key_frame_empty_when_unchanged_and_local_for_a_patch():
    skip = convert(_model(), threshold=0.0, break_even=1.0)
    assert skip.active_mask() is None
    frame = torch.rand(1, 1, 40, 48)
    skip(frame)
    assert skip.active_mask().all()
    skip(frame.clone())
    assert not skip.active_mask().any()
    moved = frame.clone()
    moved[..., 10:14, 20:24] += 0.5
    skip(moved)
    mask = skip.active_mask()
    assert mask.shape == (40, 48)
    assert mask[10:14, 20:24].all()
    assert mask.sum() <= 6 * 6
