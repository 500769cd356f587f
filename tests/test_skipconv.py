"""Skip-convolution engine: exactness, the reference-input invariant, accounting, and errors."""

from __future__ import annotations

import importlib
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from skiptrack_types import InvalidInputError, SkipTrackError
from tracking.skipconv.convert import convert
from tracking.skipconv.errors import UnsupportedOperationError
from tracking.skipconv.kernels import Backend
from tracking.skipconv.layers import CAMERA_WIDE_CHANGE, CAMERA_WIDE_CHANGE_AFTER_MOTION, ConvLayer
from tracking.skipconv.stats import Path

convert_module = importlib.import_module("tracking.skipconv.convert")  # the package's `convert` is the function
BACKENDS = [Backend.CPP, Backend.TORCH]
ATOL = 1e-4


def frames(height: int, width: int, n: int, channels: int = 1, seed: int = 0) -> list[torch.Tensor]:
    """A sequence with the changes a camera sees: small moving patches (often at the borders), still frames,
    and an occasional complete change."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, channels, height, width, generator=gen)
    out = [x]
    for t in range(1, n):
        x = x.clone()
        kind = t % 10
        if kind == 9:
            x = torch.rand(1, channels, height, width, generator=gen)
        elif kind != 4:
            h = int(torch.randint(1, max(2, height // 3), (1,), generator=gen))
            w = int(torch.randint(1, max(2, width // 3), (1,), generator=gen))
            y0 = 0 if kind in (1, 5) else int(torch.randint(0, height - h + 1, (1,), generator=gen))
            x0 = width - w if kind in (2, 5) else int(torch.randint(0, width - w + 1, (1,), generator=gen))
            x[..., y0 : y0 + h, x0 : x0 + w] = torch.rand(1, channels, h, w, generator=gen)
        out.append(x)
    return out


def max_error_over(model: nn.Module, skip, sequence: list[torch.Tensor]) -> float:
    worst = 0.0
    with torch.no_grad():
        for x in sequence:
            got = skip(x)
            want = model(x)
            got = got if isinstance(got, tuple) else (got,)
            want = want if isinstance(want, tuple) else (want,)
            worst = max(worst, *(float((g - w).abs().max()) for g, w in zip(got, want, strict=True)))
    return worst


def randomize_bn(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return model.eval()


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 6, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        return F.relu(y + self.b(y))


class ConcatUp(nn.Module):
    def __init__(self, mode: str, align: bool | None) -> None:
        super().__init__()
        self.mode, self.align = mode, align
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.head = nn.Conv2d(9, 3, 1)

    def forward(self, x):
        a = F.relu(self.a(x))
        d = F.relu(self.down(a))
        u = F.interpolate(d, scale_factor=2, mode=self.mode, align_corners=self.align)
        return self.head(torch.cat([u, a], 1))


class Pools(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3)
        self.max = nn.MaxPool2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(4)  # after a pool: not foldable, runs as a per-channel affine

    def forward(self, x):
        y = self.bn(self.max(torch.sigmoid(self.a(x))))
        return F.avg_pool2d(y, 2) * 2.0 - 1.0


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU6())
        self.h1 = nn.Conv2d(4, 2, 1)
        self.h2 = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        y = self.a(x)
        return self.h1(y), torch.tanh(self.h2(y))


MODELS = {
    "conv3x3_relu": lambda: nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.ReLU()),
    "conv1x1": lambda: nn.Sequential(nn.Conv2d(1, 3, 1), nn.LeakyReLU(0.1), nn.Conv2d(3, 4, 1)),
    "conv5x5_stride2": lambda: nn.Sequential(nn.Conv2d(1, 4, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(4, 3, 3, 2)),
    "conv_no_padding_even_kernel": lambda: nn.Sequential(nn.Conv2d(1, 3, (2, 4), stride=(1, 2))),
    "dilated": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=2, dilation=2), nn.SiLU()),
    "depthwise": lambda: nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1, groups=6)),
    "grouped": lambda: nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 4, 3, padding="same", groups=2)),
    "conv_bn_relu": lambda: randomize_bn(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())),
    "residual": Residual,
    "concat_nearest": lambda: ConcatUp("nearest", None),
    "concat_bilinear": lambda: ConcatUp("bilinear", False),
    "concat_bilinear_align": lambda: ConcatUp("bilinear", True),
    "pools_and_pointwise": lambda: randomize_bn(Pools()),
    "two_heads": lambda: randomize_bn(TwoHeads()),
}


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
@pytest.mark.parametrize("name", list(MODELS))
def test_skipconv_matches_dense_at_zero_threshold(name: str, backend: Backend) -> None:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    skip = convert(model, threshold=0.0, backend=backend, break_even=1.0)
    assert max_error_over(model, skip, frames(18, 22, 50)) <= ATOL


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
def test_skipconv_is_exact_at_odd_sizes_and_borders(backend: Backend) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()
    skip = convert(model, backend=backend, break_even=1.0)
    assert max_error_over(model, skip, frames(17, 23, 50, seed=3)) <= ATOL


def test_skipconv_is_exact_when_layers_switch_to_dense() -> None:
    torch.manual_seed(2)
    model = ConcatUp("bilinear", False).eval()
    skip = convert(model, break_even=0.05)  # most frames exceed 5% active: dense runs and refreshes mixed in
    assert max_error_over(model, skip, frames(20, 24, 50, seed=4)) <= ATOL


def test_measured_break_even_is_a_fraction_per_convolution() -> None:
    model = Residual().eval()
    skip = convert(model)
    assert max_error_over(model, skip, frames(24, 32, 5)) <= ATOL
    evens = skip.break_evens()
    assert set(evens) == {"a", "b"}
    assert all(0.0 <= v <= 1.0 for v in evens.values())


@pytest.mark.parametrize("break_even", [1.0, 0.1], ids=["sparse", "with_refreshes"])
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
def test_reference_invariant_holds_at_positive_threshold(backend: Backend, break_even: float) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Conv2d(4, 2, 1)
    ).eval()
    skip = convert(model, threshold=0.2, backend=backend, break_even=break_even)
    convs = [layer for layer in skip.layers if isinstance(layer, ConvLayer)]
    pending_seen = 0
    for x in frames(16, 20, 50, seed=5):
        skip(x)
        for conv in convs:
            want = F.conv2d(conv.xhat, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
            if conv.act is not None:
                want = conv.act.fn(want)
            assert float((conv.out - want).abs().max()) <= ATOL
            pending_seen += conv.pending_count
    assert pending_seen > 0, "the threshold never held anything back: the test does not exercise the gate"


def test_the_update_floor_spares_the_layer_reading_the_camera() -> None:
    """Deeper convolutions update only inputs above their floor; the first one, whose count of changed outputs is
    the head-motion test, updates every changed input of a fired block (its noise floor keeps the noise out)."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Conv2d(4, 2, 1)
    ).eval()
    skip = convert(model, threshold=0.2, break_even=1.0)
    floors: dict[int, float] = {}
    select_update = skip._ctx.kernels.select_update

    def recording(*args):
        floors[args[0].shape[2]] = args[-1]  # keyed by the layer's input channels
        return select_update(*args)

    skip._ctx.kernels.select_update = recording
    for x in frames(16, 20, 5, seed=5):
        skip(x)
    assert floors[1] == 0.0  # the camera
    assert floors[4] > 0.0


def test_deep_scale_multiplies_epsilon_past_the_layers_reading_the_camera() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Conv2d(4, 2, 1)
    ).eval()
    x = frames(16, 20, 1, seed=5)[0]
    thresholds = []
    for scale in (1.0, 3.0):
        skip = convert(model, threshold=0.2, break_even=1.0, deep_scale=scale)
        skip(x)
        thresholds.append([layer.eps2_block for layer in skip.layers if isinstance(layer, ConvLayer)][:2])
    (first, second), (first_scaled, second_scaled) = thresholds
    assert first_scaled == first and second_scaled == pytest.approx(9.0 * second)  # ε² grows with the scale's square
    skip.deep_scale = 1.0  # settable between frames, as the threshold
    assert [layer.eps2_block for layer in skip.layers if isinstance(layer, ConvLayer)][1] == pytest.approx(second)
    with pytest.raises(InvalidInputError, match="deep_scale"):
        skip.deep_scale = 0.0


def test_module_scales_set_epsilon_of_the_named_modules_convolutions() -> None:
    torch.manual_seed(3)
    convolutions = {"stem": nn.Conv2d(1, 4, 3, padding=1), "relu": nn.ReLU(),
                    "down": nn.Conv2d(4, 4, 3, stride=2, padding=1), "head": nn.Conv2d(4, 4, 3, padding=1)}  # fmt: skip
    model = nn.Sequential(OrderedDict(convolutions)).eval()
    x = frames(16, 20, 1, seed=5)[0]

    def thresholds(skip):
        skip(x)
        return [layer.eps2_block for layer in skip.layers if isinstance(layer, ConvLayer)]

    first, second, third = thresholds(convert(model, threshold=0.2, break_even=1.0, deep_scale=2.0))
    skip = convert(model, threshold=0.2, break_even=1.0, deep_scale=2.0, module_scales={"head": 8.0})
    assert thresholds(skip) == pytest.approx([first, second, 16.0 * third])  # (8 / 2)² the deep scale's
    skip.module_scales = {"stem": 8.0}  # the layer reading the camera keeps ε itself
    assert thresholds(skip) == pytest.approx([first, second, third])
    with pytest.raises(InvalidInputError, match="module 'head'"):
        skip.module_scales = {"head": float("nan")}


def test_the_noise_floor_comes_from_the_callers_frames_once_it_gives_them() -> None:
    """A caller that steadies the frames first (tracking.network.deadband) hands the engine the camera's own frames
    for the noise estimate; the engine's estimate from the steadied input would be zero."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    scene = _noisy_scene(12, moving_patch=False)  # σ = 2 grey levels
    skip = convert(model, threshold=0.05, break_even=1.0)
    for x in [scene[0]] * 9:  # a steadied still image: the engine sees no noise
        skip(x)
    assert skip.noise_energy == 0.0
    skip.observe_noise(scene[1][0, 0].numpy(), scene[0][0, 0].numpy())
    assert skip.noise_energy == pytest.approx(2 * (2.0 / 255.0) ** 2, rel=0.3)
    for x in [scene[0]] * 9:  # no longer estimated from the input
        skip(x)
    assert skip.noise_energy == pytest.approx(2 * (2.0 / 255.0) ** 2, rel=0.3)
    skip.observe_noise(scene[3][0, 0].numpy() * 255.0, scene[2][0, 0].numpy() * 255.0, scale=1.0 / 255.0)
    assert skip.noise_energy == pytest.approx(2 * (2.0 / 255.0) ** 2, rel=0.3)
    skip.reset(new_camera=True)
    assert skip.noise_energy == 0.0


def test_error_does_not_drift_over_1000_frames_of_slow_change() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)).eval()
    skip = convert(model, threshold=0.05, break_even=1.0)
    gen = torch.Generator().manual_seed(6)
    base = torch.rand(1, 1, 8, 10, generator=gen)
    drift = torch.randn(1, 1, 8, 10, generator=gen)
    errors = []
    with torch.no_grad():
        for t in range(1000):
            x = base + 0.3 * torch.sin(torch.tensor(t / 150.0)) * drift  # slow: a small step per frame
            errors.append(float((skip(x) - model(x)).abs().max()))
        swing = float((model(base + 0.3 * drift) - model(base - 0.3 * drift)).abs().max())
    early, late = max(errors[100:300]), max(errors[-300:])
    assert late <= 1.5 * early + 1e-6  # no accumulation: the reference input catches up whenever a block fires
    assert max(errors) <= 0.3 * swing  # bounded well below the change the sequence makes


def test_unchanged_frame_executes_no_convolution_macs() -> None:
    model = ConcatUp("nearest", None).eval()
    skip = convert(model, break_even=1.0)
    x = torch.rand(1, 1, 16, 16)
    skip(x)
    skip(x.clone())
    stats = skip.stats()
    assert stats["dense_macs"] > 0
    assert stats["macs"] <= 0.05 * stats["dense_macs"]
    assert stats["macs"] == 0


def test_stats_count_exactly_the_recomputed_positions() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1)).eval()
    skip = convert(model, break_even=1.0)
    x = torch.rand(1, 2, 10, 10)
    skip(x)
    x = x.clone()
    x[0, 1, 5, 5] += 1.0  # one input pixel reaches a 3x3 block of outputs
    skip(x)
    layer = skip.stats()["per_layer"][1]
    assert layer["active"] == 9
    assert layer["macs"] == 9 * (3 * 3 * 2) * 3
    assert layer["dense_macs"] == 100 * (3 * 3 * 2) * 3
    assert skip.stats()["active_fraction"] == pytest.approx(0.09)


def test_subthreshold_change_waits_then_fires_when_it_accumulates() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)).eval()
    skip = convert(model, threshold=0.5, break_even=1.0)
    x = torch.full((1, 1, 8, 8), 0.5)
    skip(x)
    small = x.clone()
    small[0, 0, 4, 4] += 0.05
    skip(small)
    assert skip.stats()["macs"] == 0
    assert skip.stats()["per_layer"][1]["pending_inputs"] == 1
    big = x.clone()
    big[0, 0, 4, 4] += 5.0
    out = skip(big)
    assert skip.stats()["macs"] > 0
    assert float((out - model(big)).abs().max()) <= ATOL


def test_reset_and_new_resolution_are_key_frames() -> None:
    model = Residual().eval()
    skip = convert(model, break_even=1.0)
    skip(torch.rand(1, 1, 12, 12))
    skip.reset()
    skip(torch.rand(1, 1, 12, 12))
    assert skip.stats()["active_fraction"] == 1.0
    x = torch.rand(1, 1, 14, 10)
    out = skip(x)
    assert skip.stats()["active_fraction"] == 1.0
    assert float((out - model(x)).abs().max()) <= ATOL


def test_dense_mode_runs_the_folded_weights() -> None:
    model = randomize_bn(TwoHeads())
    skip = convert(model)
    skip.dense = True
    x = torch.rand(1, 1, 12, 14)
    for got, want in zip(skip(x), model(x), strict=True):
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert float((got - want).abs().max()) <= ATOL


def test_bf16_precision_runs_the_whole_model_passes_in_bfloat16_with_float32_outputs() -> None:
    """``precision = "bf16"``: dense mode and the folded streaks run a bfloat16 copy of the folded graph (close to
    the fp32 result, float32 channels_last outputs); the gated per-layer path stays fp32 and exact."""
    torch.manual_seed(17)
    model = randomize_bn(TwoHeads())
    skip = convert(model)
    x = torch.rand(1, 1, 12, 14)
    with pytest.raises(InvalidInputError, match="precision"):
        skip.precision = "fp16"
    skip.precision = "bf16"
    skip.dense = True
    with torch.no_grad():
        for got, want in zip(skip(x), model(x), strict=True):
            assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last)
            scale = float(want.abs().max())
            assert 0.0 < float((got - want).abs().max()) <= 0.03 * scale  # bfloat16 arithmetic, not fp32's
        skip.dense = False
        for got, want in zip(skip(x), model(x), strict=True):  # a key frame: per-layer fp32
            assert float((got - want).abs().max()) <= ATOL


def test_folded_streaks_run_at_the_model_precision() -> None:
    torch.manual_seed(15)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)).eval()
    skip = convert(model, threshold=0.01, break_even=0.5, noise_margin=0.0)
    skip.precision = "bf16"
    gen = torch.Generator().manual_seed(16)
    handover = 1 + convert_module.ALL_DENSE_FRAMES
    errors = []
    with torch.no_grad():
        for _ in range(handover + 2):
            x = torch.rand(1, 1, 12, 12, generator=gen)
            errors.append(float((skip(x) - model(x)).abs().max()))
    assert max(errors[:handover]) <= ATOL  # gated frames: fp32
    assert min(errors[handover:]) > ATOL  # folded frames: bfloat16
    assert max(errors[handover:]) <= 0.03 * float(model(x).abs().max())


def test_batchnorm_is_folded_into_the_preceding_convolution() -> None:
    model = randomize_bn(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()))
    skip = convert(model, break_even=1.0)
    assert [layer.op for layer in skip.layers] == ["input", "conv"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in skip.folded.modules())
    assert max_error_over(model, skip, frames(10, 12, 5)) <= ATOL


def test_wrong_channel_count_is_rejected() -> None:
    skip = convert(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(InvalidInputError, match="1 channels"):
        skip(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_infinite_input_is_rejected(bad: float) -> None:
    skip = convert(nn.Sequential(nn.Conv2d(1, 2, 3)))
    x = torch.rand(1, 1, 8, 8)
    x[0, 0, 2, 2] = bad
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        skip(x)


def test_batch_of_frames_is_rejected() -> None:
    skip = convert(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(InvalidInputError, match="one frame per call"):
        skip(torch.rand(2, 1, 8, 8))


def test_input_too_small_for_the_model_is_a_clear_error() -> None:
    skip = convert(nn.Sequential(nn.Conv2d(1, 2, 5)))
    with pytest.raises(SkipTrackError, match="cannot run through this model"):
        skip(torch.rand(1, 1, 3, 3))


def test_unsupported_operation_error_names_the_node() -> None:
    class WithLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.conv(x))

    with pytest.raises(UnsupportedOperationError, match="node 'fc'.*Linear"):
        convert(WithLinear())


def test_unsupported_function_error_names_the_node() -> None:
    class Padded(nn.Module):
        def forward(self, x):
            return F.pad(x, (1, 1, 1, 1), mode="reflect")

    with pytest.raises(UnsupportedOperationError, match="node 'pad'"):
        convert(Padded())


def _noisy_scene(n: int, moving_patch: bool, seed: int = 8) -> list[torch.Tensor]:
    """A still 48x64 scene with per-frame sensor noise (σ = 2 grey levels), optionally a bright patch moving in."""
    gen = torch.Generator().manual_seed(seed)
    scene = torch.rand(1, 1, 48, 64, generator=gen)
    out = []
    for t in range(n):
        x = scene + (2.0 / 255.0) * torch.randn(1, 1, 48, 64, generator=gen)
        if moving_patch and t >= n // 2:
            x[..., 10:20, 4 + t : 14 + t] = 1.0
        out.append(x)
    return out


def test_first_layer_does_not_fire_on_sensor_noise_but_fires_on_real_change() -> None:
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()
    skip = convert(model, threshold=0.005, break_even=1.0)  # below the noise: without a floor it fires everywhere
    ratios = []
    for x in _noisy_scene(40, moving_patch=True):
        skip(x)
        stats = skip.stats()
        ratios.append(stats["macs"] / stats["dense_macs"])
    still, moving = ratios[5:20], ratios[20:]
    assert max(still) <= 0.05
    assert min(moving) > max(still)
    with torch.no_grad():
        assert float((skip(x) - model(x)).abs().max()) <= 0.1 * float(model(x).abs().max())


def test_threshold_zero_stays_exact_after_running_with_a_threshold() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)).eval()
    skip = convert(model, threshold=0.05, break_even=1.0)
    sequence = _noisy_scene(20, moving_patch=True)
    for x in sequence[:10]:
        skip(x)
    skip.threshold = 0.0
    with torch.no_grad():
        for x in sequence[10:]:
            assert float((skip(x) - model(x)).abs().max()) <= ATOL


def test_noise_floor_can_be_switched_off() -> None:
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()
    skip = convert(model, threshold=0.005, break_even=1.0, noise_margin=0.0)
    ratios = []
    for x in _noisy_scene(12, moving_patch=False):
        skip(x)
        stats = skip.stats()
        ratios.append(stats["macs"] / stats["dense_macs"])
    assert min(ratios[5:]) > 0.5  # every block sees the noise above so small a threshold
    with pytest.raises(InvalidInputError, match="noise_margin"):
        convert(model, noise_margin=-1.0)


def test_break_evens_are_measured_once_per_machine_and_reused(tmp_path, monkeypatch) -> None:
    from tracking.skipconv import break_even_cache

    monkeypatch.setattr(break_even_cache, "path", lambda: tmp_path / "break_even.json")
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)).eval()
    x = torch.rand(1, 1, 24, 32)
    first = convert(model)
    first(x)
    assert (tmp_path / "break_even.json").is_file()
    measured = first.break_evens()

    calls = []
    monkeypatch.setattr(ConvLayer, "measure_break_even", lambda self, *a, **k: calls.append(self.name) or 0.5)
    second = convert(model)
    second(x)
    assert calls == [] and second.break_evens() == measured
    second(torch.rand(1, 1, 16, 16))  # another resolution is measured (and recorded) on its own
    assert len(calls) == 2


def test_a_corrupt_break_even_record_is_measured_again(tmp_path, monkeypatch) -> None:
    from tracking.skipconv import break_even_cache

    record = tmp_path / "break_even.json"
    record.write_text("{not json")
    monkeypatch.setattr(break_even_cache, "path", lambda: record)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)).eval()
    skip = convert(model)
    skip(torch.rand(1, 1, 12, 12))
    assert set(skip.break_evens()) == {c.name for c in skip.layers if isinstance(c, ConvLayer)}
    assert record.read_text().startswith("{\n")


def test_cheap_pointwise_tail_follows_its_input_exactly() -> None:
    """1x1 heads at the end of the graph run without a gate, and so does a cheap 1x1 whose output the next 3x3 reads
    at the same positions (that 3x3's gate holds back the same small changes): at ε > 0 their output is exactly
    conv(current input). A cheap 1x1 before an upsampling keeps its gate (each change it let through would spread
    over four positions of the 3x3's input)."""
    torch.manual_seed(11)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Upsample(scale_factor=2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(), nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1),
    ).eval()  # fmt: skip
    skip = convert(model, threshold=0.2, break_even=1.0)
    convs = [layer for layer in skip.layers if isinstance(layer, ConvLayer)]
    assert [c.follows_input for c in convs] == [False, False, False, True, False, True, True]
    producer = {id(c): skip.layers[c.inputs[0]] for c in convs}
    for x in frames(16, 20, 30, seed=12):
        skip(x)
        for conv in convs[3:4] + convs[5:]:
            x_in = producer[id(conv)].out
            want = F.conv2d(x_in, conv.weight, conv.bias)
            if conv.act is not None:
                want = conv.act.fn(want)
            assert float((conv.out - want).abs().max()) <= ATOL
    assert any(convs[i].pending_count > 0 for i in (0, 2, 4)), "the gated layers never held anything back"


def gate_runs(skip) -> tuple[list[int], list[int]]:
    """Record the frames on which ``skip`` runs its gate: returns (those frames, a one-item frame counter that the
    caller advances)."""
    gated, frame = [], [0]
    select_update = skip._ctx.kernels.select_update

    def counting(*args):
        gated.append(frame[0])
        return select_update(*args)

    skip._ctx.kernels.select_update = counting
    return gated, frame


def test_dense_streaks_double_while_the_input_keeps_changing_everywhere(monkeypatch) -> None:
    """Every frame changes everywhere (head motion): the gate asks for a refresh each time it runs, and the frames
    between gate runs grow 3, 6, 12, 12 (the whole-model handover to the folded graph switched off here)."""
    monkeypatch.setattr(convert_module, "ALL_DENSE_FRAMES", 10**9)
    torch.manual_seed(13)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1)).eval()
    skip = convert(model, threshold=0.01, break_even=0.5, noise_margin=0.0)  # random frames would read as noise
    conv = next(layer for layer in skip.layers if isinstance(layer, ConvLayer))
    gated, frame = gate_runs(skip)
    gen = torch.Generator().manual_seed(14)
    for frame[0] in range(40):
        skip(torch.rand(1, 1, 12, 12, generator=gen))
    assert gated == [1, 5, 12, 25, 38]
    assert conv.stats.path.value == "dense"


def test_model_hands_over_to_the_folded_graph_while_every_convolution_runs_dense() -> None:
    """After ALL_DENSE_FRAMES frames on which every convolution refreshed, the next FOLDED_FRAMES frames run the
    folded graph (no gate at all, exact output, counted dense), and the frame after them is a key frame."""
    torch.manual_seed(15)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)).eval()
    skip = convert(model, threshold=0.01, break_even=0.5, noise_margin=0.0)
    gated, frame = gate_runs(skip)
    gen = torch.Generator().manual_seed(16)
    handover = 1 + convert_module.ALL_DENSE_FRAMES  # frame 0 is the key frame
    with torch.no_grad():
        for frame[0] in range(handover + convert_module.FOLDED_FRAMES + 2):
            x = torch.rand(1, 1, 12, 12, generator=gen)
            out = skip(x)
            assert float((out - model(x)).abs().max()) <= ATOL
            stats = skip.stats()
            assert stats["macs"] == stats["dense_macs"]
    folded = range(handover, handover + convert_module.FOLDED_FRAMES)
    assert not set(gated) & set(folded)
    assert gated[0] == 1 and max(gated) == handover + convert_module.FOLDED_FRAMES + 1  # key frame, then gating


def test_folded_streaks_double_while_the_motion_goes_on() -> None:
    """Streaks of the folded graph grow 12, 24, 48 while the model hands over again within RESUME_FRAMES of the
    last one's end, even when the frame after the key frame runs sparse (slow motion: one frame's change against
    the key frame); after a longer stretch of sparse frames the next streak is FOLDED_FRAMES again."""
    assert (convert_module.FOLDED_FRAMES, convert_module.MAX_FOLDED_FRAMES, convert_module.ALL_DENSE_FRAMES) == (
        12, 48, 3)  # fmt: skip
    torch.manual_seed(17)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)).eval()
    skip = convert(model, threshold=0.01, break_even=0.5, noise_margin=0.0)
    first = next(layer for layer in skip.layers if isinstance(layer, ConvLayer))
    gen = torch.Generator().manual_seed(18)
    little = {17, 46, *range(99, 109)}  # after the key frames 16 and 45, and a stretch after the key frame 98
    x = torch.rand(1, 1, 24, 32, generator=gen)
    folded = []
    with torch.no_grad():
        for frame in range(126):
            if frame in little:
                x = x.clone()
                x[..., 10:12, 10:12] += 0.5  # a small spot changes: sparse work
            else:
                x = torch.rand(1, 1, 24, 32, generator=gen)  # changes everywhere: every convolution runs dense
            out = skip(x)
            assert float((out - model(x)).abs().max()) <= ATOL
            if frame in little:
                assert skip.stats()["macs"] < skip.stats()["dense_macs"]
            # the folded graph leaves the layers' own outputs as they were
            want = F.conv2d(x, first.weight, first.bias, padding=1)
            want = first.act.fn(want) if first.act is not None else want
            if float((first.out - want).abs().max()) > ATOL:
                folded.append(frame)
    # key frames 0, 16, 45, 98 and 124; three dense frames before each streak (one sparse frame first at 17 and 46)
    assert folded == [*range(4, 16), *range(21, 45), *range(50, 98), *range(112, 124)]


def _patch_and_drift(x: torch.Tensor) -> torch.Tensor:
    """``x`` with a 6x6 patch changed (the first layer fires on about 8 % of its outputs: more than
    CAMERA_WIDE_CHANGE_AFTER_MOTION, less than CAMERA_WIDE_CHANGE) and everything else by 0.2 % (under ε)."""
    x = x * 1.002
    x[..., 4:10, 4:10] += 0.3
    return x


def test_just_after_head_motion_a_wide_change_refreshes_the_first_layer_exactly() -> None:
    """The frame after a folded streak's key frame carries the head's motion on: a change over 8 % of the first
    layer's outputs refreshes it from the true input everywhere (exact), where the same change on a still camera
    runs sparse and leaves the drift under ε stale."""
    assert CAMERA_WIDE_CHANGE_AFTER_MOTION < 0.08 < CAMERA_WIDE_CHANGE
    torch.manual_seed(19)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)).eval()
    gen = torch.Generator().manual_seed(20)
    paths = {}
    for moving in (True, False):
        skip = convert(model, threshold=0.01, break_even=0.5, noise_margin=0.0)
        first = next(layer for layer in skip.layers if isinstance(layer, ConvLayer))
        x = torch.rand(1, 1, 24, 32, generator=gen)
        with torch.no_grad():
            # moving: key frame, 3 dense frames, the folded streak, and its closing key frame
            for _ in range(1 + convert_module.ALL_DENSE_FRAMES + convert_module.FOLDED_FRAMES + 1 if moving else 1):
                x = torch.rand(1, 1, 24, 32, generator=gen)
                skip(x)
            x = _patch_and_drift(x)
            skip(x)
        want = F.relu(F.conv2d(x, first.weight, first.bias, padding=1))
        paths[moving] = (first.stats.path.name, float((first.out - want).abs().max()) <= ATOL)
    assert paths == {True: ("DENSE", True), False: ("SPARSE", False)}


def _two_frames(seed: int, threshold: float, break_even: float, change) -> tuple[nn.Module, object, torch.Tensor]:
    """A 3x3-ReLU-3x3 model converted at ``threshold``/``break_even``, run on a frame and then on ``change(frame)``;
    returns (model, skip model, second frame)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)).eval()
    skip = convert(model, threshold=threshold, break_even=break_even)
    x = 0.5 + 0.5 * torch.rand(1, 1, 24, 32)
    skip(x)
    moved = x.clone()
    change(moved)
    skip(moved)
    return model, skip, moved


def _first_and_second(skip) -> tuple[ConvLayer, ConvLayer]:
    convs = [layer for layer in skip.layers if isinstance(layer, ConvLayer)]
    return convs[0], convs[1]


def _half_moves(x: torch.Tensor) -> None:
    x[..., :16] *= 1.05
    x[..., 16:] *= 1.005


def test_a_camera_wide_change_refreshes_the_first_layer_exactly() -> None:
    """Half the image changes by 5 %, the other half by 0.5 % (under ε): the first layer fires on more than
    CAMERA_WIDE_CHANGE of its outputs, so it recomputes from the true input everywhere, the held-back half too."""
    # break_even 1.0: without the rule the first layer would stay sparse
    _, skip, moved = _two_frames(7, 0.02, 1.0, _half_moves)
    first, _ = _first_and_second(skip)
    assert first.stats.path.name == "DENSE"
    want = F.relu(F.conv2d(moved, first.weight, first.bias, padding=1))
    assert float((first.out - want).abs().max()) <= ATOL
    assert torch.equal(first.xhat, moved.contiguous(memory_format=torch.channels_last))


def test_a_camera_wide_change_refreshes_the_layers_below_too() -> None:
    """Below a first layer that refreshed everywhere, a layer whose input changed everywhere runs dense too rather
    than holding back the blocks that changed by less than ε: the whole model's output is exact."""
    model, skip, moved = _two_frames(7, 0.02, 1.0, _half_moves)
    _, second = _first_and_second(skip)
    assert second.stats.path.name == "DENSE"
    with torch.no_grad():
        assert float((skip.layers[skip.outputs[0]].out - model(moved)).abs().max()) <= ATOL


def _patch_moves(x: torch.Tensor) -> None:
    x[..., 4:8, 4:8] *= 1.5


def test_a_local_change_keeps_the_first_layer_sparse() -> None:
    _, skip, _ = _two_frames(7, 0.02, 1.0, _patch_moves)
    first, _ = _first_and_second(skip)
    assert first.stats.path.name == "SPARSE"
    assert first.stats.active_fraction < 0.25


def _left_moves(x: torch.Tensor) -> None:
    x[..., :, :20] += 0.3 * torch.rand(1, 1, 24, 20)
    x[..., :, 20:] *= 1.002  # under ε: the gate alone would hold these inputs back


def test_a_layer_past_break_even_recomputes_from_its_true_input() -> None:
    """A dense run past break-even adopts the true input as its reference: nothing the gate held back stays stale."""
    model, skip, moved = _two_frames(8, 0.05, 0.05, _left_moves)
    first, second = _first_and_second(skip)
    assert second.stats.path.name == "DENSE"
    assert float((second.xhat - first.out).abs().max()) == 0.0
    with torch.no_grad():
        assert float((skip(moved) - model(moved)).abs().max()) <= ATOL


PLANNED = ["conv3x3_relu", "conv5x5_stride2", "conv_bn_relu", "residual", "concat_bilinear", "concat_nearest"]


def _plan_and_python(
    model: nn.Module, sequence: list[torch.Tensor], stats_every: int = 1, **options
) -> tuple[int, int]:
    """Run ``sequence`` through a SkipModel with the frame plan and one without, asserting the same outputs on every
    frame and the same stats and gate state every ``stats_every`` frames (the plan keeps them until asked); returns
    (frames the plan ran whole, frames it handed back to Python)."""
    planned, python = convert(model, **options), convert(model, **options)
    python.use_plan = False
    assert planned.use_plan
    whole = handed_back = 0
    with torch.no_grad():
        for i, x in enumerate(sequence):
            had_plan = planned._plan is not None
            got = planned(x)
            want = python(x)
            got = got if isinstance(got, tuple) else (got,)
            want = want if isinstance(want, tuple) else (want,)
            assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
            if i % stats_every == 0:
                assert planned.stats() == python.stats()
                for a, b in zip(planned._convs, python._convs, strict=True):
                    state = (a.pending_count, a.next_streak, a.gate_dirty)
                    assert state == (b.pending_count, b.next_streak, b.gate_dirty)
            if had_plan:
                whole += planned._plan is not None
                handed_back += planned._plan is None
    return whole, handed_back


@pytest.mark.parametrize("threshold", [0.0, 0.05])
@pytest.mark.parametrize("name", PLANNED)
def test_the_frame_plan_gives_what_the_python_layers_give(name: str, threshold: float) -> None:
    torch.manual_seed(3)
    whole, handed_back = _plan_and_python(MODELS[name]().eval(), frames(24, 32, 60), threshold=threshold)
    assert whole >= 10  # the sparse frames ran in C++
    assert handed_back >= 1  # and a complete change went back to the Python layers


@pytest.mark.parametrize("stats_every", [3, 7])
def test_the_frame_plan_keeps_stats_and_gate_state_until_asked(stats_every: int) -> None:
    """Whole frames leave their stats and gate state in the plan; asked for after several, or when a frame goes
    back to Python, the layers hold what they would have held stepping every frame themselves."""
    torch.manual_seed(3)
    whole, handed_back = _plan_and_python(
        MODELS["concat_bilinear"]().eval(), frames(24, 32, 60), stats_every=stats_every, threshold=0.05
    )
    assert whole >= 10 and handed_back >= 1


def test_the_frame_plan_matches_on_a_noisy_camera_with_the_noise_floor() -> None:
    from tracking.skipconv.reference_net import ReferenceKeypointNet

    model = ReferenceKeypointNet()
    whole, _ = _plan_and_python(model, _noisy_scene(40, moving_patch=True), threshold=0.04, deep_scale=2.0)
    assert whole >= 15


def test_layers_the_plan_does_not_cover_run_in_python() -> None:
    assert not convert(MODELS["pools_and_pointwise"]()).use_plan  # pooling, an unfused activation
    assert not convert(MODELS["depthwise"]()).use_plan  # grouped convolution
    assert not convert(MODELS["residual"](), backend=Backend.TORCH).use_plan  # the reference kernels have none


def test_a_frame_plan_missing_a_layer_raises_instead_of_crashing() -> None:
    from tracking.skipconv.kernels import load_cpp

    plan = load_cpp().FramePlan(2)  # the input and one layer, which was never added
    plan.add_input(torch.zeros(4, 4, 1), torch.arange(16, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="never added"):
        plan.run(torch.ones(4, 4, 1), 0.5, 1, 0.0, 0.0, 0.25, 1)


@pytest.mark.parametrize("name", ["residual", "pools_and_pointwise"])
def test_outputs_carry_no_autograd_graph(name: str) -> None:
    """Sparse frames of a model the frame plan runs skip torch.no_grad() (their layers hold detached weights); the
    others keep it. Neither builds a graph, even from an input that requires gradients, on key, sparse and dense
    frames alike."""
    model = MODELS[name]()
    skip = convert(model, threshold=0.05, break_even=0.3)
    for x in frames(20, 24, 12, seed=5):
        out = skip(x.requires_grad_())
        for o in out if isinstance(out, tuple) else (out,):
            assert not o.requires_grad and o.grad_fn is None


def test_a_change_where_no_pooling_window_reaches_leaves_the_pool_idle() -> None:
    """2x2 pooling of a 5-row map leaves its last row out: a frame that changes only there changes nothing past
    the pool (it used to fail reshaping the empty set of windows)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.AvgPool2d(2)).eval()
    skip = convert(model, break_even=1.0)
    x = torch.rand(1, 1, 5, 6)
    skip(x)
    x = x.clone()
    x[0, 0, 4] += 0.5
    with torch.no_grad():
        assert torch.equal(skip(x), model(x))
    assert skip.layers[-1].stats.path is Path.IDLE
