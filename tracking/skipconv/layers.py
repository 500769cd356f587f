"""The layers of a SkipModel: each keeps its output buffer and updates it only where its input changed.

Every layer holds ``out``, a (1, C, H, W) channels_last tensor whose memory is the NHWC map ``hwc`` (H, W, C).
``key`` recomputes it densely; ``step`` takes the active sets of its inputs (positions whose value may have changed
since the last frame, see ``masks``) and returns its own. Convolutions are the only layers with state beyond
``out``: the reference input X̂, the gate state (the squared residual of every input position still pending below
the threshold and each gate block's summed residual, updated only where the input changed), and the input scale σ
that turns the global threshold into a per-layer one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from tracking.skipconv.errors import UnsupportedOperationError
from tracking.skipconv.kernels import pad_output_channels
from tracking.skipconv.masks import EVERYWHERE, Positions
from tracking.skipconv.stats import LayerStats, Path

if TYPE_CHECKING:
    from tracking.skipconv.kernels import Kernels
    from tracking.skipconv.masks import GridScratch

CL = torch.channels_last

NOISE_FALSE_FIRE = 1e-4
"""Probability that sensor noise alone fires a gate block of a layer reading the camera (where the floor sits)."""

UPDATE_FLOOR = 1.0
"""In a block the gate fires, an input position takes its new value only when its squared residual is at least
this share of the block's threshold per position (``eps2_block / block_field``). The rest stay pending: they add
up to less than the threshold in every block (at most ``block_field`` positions, each below its share), so every
block still ends the frame below it, the same error bound as updating them all, while the outputs recomputed are
those near the inputs that really changed rather than near every input of the block (tiny changes spread by the
layers before would otherwise dilate the active set twice per layer). 0: every pending input of a fired block.

Not applied to a layer reading the camera: its noise floor keeps sensor noise out already, it costs about 1 % of
a network, and its count of changed outputs is what detects head motion (``CAMERA_WIDE_CHANGE``): with the floor it
missed the slow phases of seated head motion, which then ran sparse on a stale image (keypoint agreement 0.995 ->
0.987)."""

CAMERA_WIDE_CHANGE = 0.25
"""A convolution reading the camera whose gate fires on more than this share of its outputs refreshes from the true
input everywhere (exact), whatever its break-even: a change that wide is head motion or a lighting change, not the
local change the gate is for, and the blocks it would hold back have changed too, only by less than ε, under
everything downstream. A first layer costs about 1 % of a network, so the refresh costs little over the sparse
run it replaces. Whenever a layer reading the camera runs dense (this rule, its break-even, or a streak of dense
frames after either), every layer below it whose input changed everywhere runs dense too (``camera_refreshed``): on
seated the gate of the 1x1 fusion layer held blocks back under slow head motion while every other layer ran dense,
and moved 5-7 % of the keypoints by more than a pixel; on a still camera (still_hand, vtest.avi) nothing changes."""

CAMERA_WIDE_CHANGE_AFTER_MOTION = 0.05
"""``CAMERA_WIDE_CHANGE`` for the frames just after head motion (``SkipModel``: within ``RESUME_FRAMES`` of a
folded streak's end). The head rarely stops at once: the frame after the key frame that ends a streak carries one
frame's motion, and the camera layer fired on 3-23 % of its outputs there on seated (seed 1), below 0.25, so the
network ran sparse against the key frame with every held-back block stale, at 0.13-0.71 of the dense MACs: 17-28 %
of its keypoints landed more than 1 px from the dense network's. Those 11 frames in 1200 were all that set the skip
and the dense network's keypoints apart (the rest agree to 1e-4 px), and the head trajectory with them 2.9 mm
(docs/pose.md, stop 13)."""


@dataclass
class Context:
    """What every layer needs on every frame."""

    kernels: Kernels
    scratch: GridScratch
    threshold: float  # global ε: relative RMS change of a block's receptive field that fires it
    block: int | None  # gate block side in output positions, None: per-layer default (see ConvLayer.block)
    timings: dict[str, float] | None = None  # seconds per phase when profiling (SkipModel.profile)
    noise_margin: float = 0.0  # first-layer blocks fire above this multiple of the noise energy (0: no floor)
    noise_energy: float = 0.0  # sensor noise: mean ‖X_t − X_s‖² per input position, two frames of a still scene
    deep_scale: float = 1.0  # ε multiplier of the convolutions that do not read the camera (SkipModel.deep_scale)
    module_scales: dict[str, float] = field(default_factory=dict)  # per source module, instead of deep_scale
    noise_from_caller: bool = False  # the caller sets noise_energy (SkipModel.observe_noise), the input layer not
    camera_wide_change: float = CAMERA_WIDE_CHANGE  # this frame's; SkipModel lowers it just after head motion
    camera_refreshed: bool = False  # a layer reading the camera ran dense this frame (see CAMERA_WIDE_CHANGE)

    def scale_of(self, layer: Layer) -> float:
        """ε multiplier of a convolution: 1 reading the camera, else its source module's (``module_scales``, keyed
        by the module's name in the network: a layer ``ctx8a_0`` is module ``ctx8a``'s), else ``deep_scale``."""
        if layer.reads_camera:
            return 1.0
        for module, scale in self.module_scales.items():
            if layer.name == module or layer.name.startswith(module + "_"):
                return scale
        return self.deep_scale

    def add_time(self, phase: str, since: float) -> float:
        """Charge the time since ``since`` to ``phase`` (when profiling); returns now."""
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[phase] = self.timings.get(phase, 0.0) + now - since
        return now


@dataclass(frozen=True)
class Activation:
    """A pointwise activation fused into the layer before it. ``code`` selects a C++-fused one (1 relu, 2 relu6)."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    code: int = 0


def wrap(hwc: torch.Tensor) -> torch.Tensor:
    """(H, W, C) contiguous -> the (1, C, H, W) channels_last view of the same memory."""
    return hwc.permute(2, 0, 1).unsqueeze(0)


def hwc_of(t: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) channels_last -> the (H, W, C) contiguous view of the same memory."""
    return t.permute(0, 2, 3, 1)[0]


def rows(t: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(n, C) values of the (1, C, H, W) map ``t`` at ``positions``."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]).index_select(0, positions)


class Layer:
    """Base: a named node of the converted graph with an output buffer and per-frame stats."""

    op = "layer"
    macs_per_position = 0  # multiply-accumulates per output position (convolutions only)

    def __init__(self, name: str, inputs: list[int]) -> None:
        self.name = name
        self.inputs = inputs
        self._out = self._hwc = torch.empty(0)
        self._size = (0, 0)
        self.shared = False
        self.stats = LayerStats(name, self.op)

    @property
    def out(self) -> torch.Tensor:
        """The output buffer. ``shared`` is set when a consumer adopted it as its reference input (no copy); the
        next in-place write then copies it first (``writable``)."""
        return self._out

    @out.setter
    def out(self, value: torch.Tensor) -> None:
        self._out = value
        self._hwc = hwc_of(value)
        self._size = (value.shape[2], value.shape[3])
        self.shared = False

    def writable(self) -> torch.Tensor:
        """``hwc`` for in-place updates, copied first if a consumer shares the buffer."""
        if self.shared:
            self.out = self._out.clone()
        return self.hwc

    @property
    def hwc(self) -> torch.Tensor:
        """The (H, W, C) view of ``out`` (kept with it: views cost microseconds on every frame)."""
        return self._hwc

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of ``out``."""
        return self._size

    def key(self, xs: list[Layer], ctx: Context) -> None:
        raise NotImplementedError

    def step(self, xs: list[Layer], changes: list[Positions], ctx: Context) -> Positions:
        raise NotImplementedError

    def idle(self) -> None:
        """Record a frame on which nothing reached this layer."""
        if self.stats.path is not Path.IDLE or self.stats.macs:
            self._record(Path.IDLE, 0)

    def _trivial(self, xs: list[Layer], change: Positions, ctx: Context) -> bool:
        """The two trivial cases of a one-input layer: its input changed everywhere (recompute as on a key frame)
        or nowhere (idle). True when ``change`` was one of them and has been handled."""
        if change is EVERYWHERE:
            self.key(xs, ctx)
            return True
        if not change.numel():
            self.idle()
            return True
        return False

    def _record(self, path: Path, active: int, macs: int = 0, dense_macs: int = 0) -> None:
        """This frame's stats, written into the layer's one LayerStats (``SkipModel.stats`` copies them out)."""
        h, w = self._size
        s = self.stats
        s.path, s.active, s.positions, s.macs, s.dense_macs = path, active, h * w, macs, dense_macs
        s.updated_inputs = s.pending_inputs = 0

    def record_dense(self) -> None:
        """Count a frame this layer's output was computed densely elsewhere (the folded graph)."""
        h, w = self._size
        dense_macs = h * w * self.macs_per_position
        self._record(Path.DENSE, h * w, dense_macs, dense_macs)

    def _scatter(self, positions: torch.Tensor, values: torch.Tensor, ctx: Context) -> None:
        ctx.kernels.scatter_rows(self.writable(), positions, values.contiguous())


class InputLayer(Layer):
    """The frame: its active set is the pixels that differ from the previous frame."""

    op = "input"
    _frame_hwc: torch.Tensor | None = None

    def set_frame(self, x: torch.Tensor) -> None:
        """This frame, (1, C, H, W) float32 in any memory format (a frame plan takes it as it is)."""
        self.frame = x
        self._frame_hwc = None

    @property
    def frame_hwc(self) -> torch.Tensor:
        """The frame as (H, W, C) contiguous, made on first use (a view of a channels_last frame)."""
        if self._frame_hwc is None:
            self._frame_hwc = hwc_of(self.frame.contiguous(memory_format=CL))
        return self._frame_hwc

    def key(self, xs: list[Layer], ctx: Context) -> None:
        self.out = self.frame.clone(memory_format=CL)
        self._record(Path.DENSE, self.size[0] * self.size[1])

    # Above this fraction of changed pixels (sensor noise) the frame counts as changed everywhere: the first
    # convolutions then scan their whole input, cheaper than building and walking a list of every pixel.
    DENSE_FRACTION = 0.5

    # Share of the input that may move without disturbing the noise estimate (it uses the 25th percentile).
    NOISE_QUANTILE = 0.25
    # Frames between noise estimates (a camera's noise changes slowly; an estimate costs a pass over the frame).
    NOISE_EVERY = 8
    frames_since_estimate = NOISE_EVERY  # the first step estimates

    def step(self, xs: list[Layer], changes: list[Positions], ctx: Context) -> Positions:
        self.before_compare(ctx)
        changed, count = ctx.kernels.changed_positions(self.frame_hwc, self.writable(), self.DENSE_FRACTION)
        self.record_compare(count)
        if count and not changed.numel():
            return ctx.scratch.everywhere(*self.size)
        return changed

    def before_compare(self, ctx: Context) -> None:
        """What the step does before comparing the frame with the last one (a frame plan compares them itself)."""
        self.frames_since_estimate += 1
        if ctx.noise_from_caller:
            return
        if ctx.threshold > 0 and ctx.noise_margin > 0 and self.frames_since_estimate >= self.NOISE_EVERY:
            self._estimate_noise(ctx)
            self.frames_since_estimate = 0

    def record_compare(self, count: int) -> None:
        """This frame's stats, from the count of changed pixels."""
        self._record(Path.SPARSE if count else Path.IDLE, count)

    def _estimate_noise(self, ctx: Context) -> None:
        """Update ``ctx.noise_energy`` from this frame's difference to the last one (``sensor_noise_energy``)."""
        estimate = sensor_noise_energy(self.frame_hwc.numpy(), self.hwc.numpy())
        ctx.noise_energy = smoothed_noise(ctx.noise_energy, estimate)


def sensor_noise_energy(current: np.ndarray, previous: np.ndarray, scale: float = 1.0) -> float:
    """Sensor noise of two frames of a camera, (H, W) or (H, W, C): the mean ‖X_t − X_s‖² per position (times
    ``scale``²), from their difference on every 4th pixel a side.

    In a still part of the scene ‖ΔX‖² per position is the sensor noise (2σ² per channel, chi-square distributed);
    a low quantile of it, scaled by the chi-square quantile, estimates its mean even when most of the image moves.
    """
    # numpy, not torch: on a few thousand values torch's kernels cost more in dispatch and thread-pool wake-ups
    # than in arithmetic (in the engine 255 µs a call against 194; the same value)
    d = current[::4, ::4].astype(np.float32) - previous[::4, ::4]
    d = d[..., None] if d.ndim == 2 else d
    energy = np.square(d).sum(axis=2).ravel()
    k = max(1, int(InputLayer.NOISE_QUANTILE * energy.size))
    low = float(np.partition(energy, k - 1)[k - 1]) / _chi2_quantile(InputLayer.NOISE_QUANTILE, d.shape[2])
    return low * scale * scale


def smoothed_noise(previous: float, estimate: float) -> float:
    """A camera's noise energy after a new estimate: its noise changes slowly, so estimates are smoothed."""
    return estimate if previous == 0.0 else 0.8 * previous + 0.2 * estimate


@functools.cache
def _chi2_quantile(q: float, dof: int) -> float:
    """The q-quantile of a chi-square variable with ``dof`` degrees of freedom, divided by its mean (``dof``)."""
    import scipy.special  # imported here: only models run at ε > 0 need it (scipy.stats would cost a second)

    return float(scipy.special.chdtri(dof, 1.0 - q)) / dof  # chdtri inverts the upper tail: chi2.ppf(q, dof)


class ConvLayer(Layer):
    """A Conv2d (BatchNorm folded in) with an optional fused activation, run as a skip convolution.

    Invariant after every frame: ``out == act(conv(xhat))`` (up to fp32 rounding of the two code paths).
    """

    op = "conv"
    # Frames after a dense run (a gate-requested refresh, or more active outputs than break-even) that refresh
    # without running the gate while the input keeps changing broadly (camera motion comes in runs of frames; the
    # gate would only confirm it at its own cost, a full pass over the input). Each dense run that follows a streak
    # doubles the next one, up to MAX_DENSE_STREAK; a sparse frame resets it.
    DENSE_STREAK = 3
    MAX_DENSE_STREAK = 12

    def __init__(self, name: str, inputs: list[int], conv: torch.nn.Conv2d, act: Activation | None) -> None:
        super().__init__(name, inputs)
        w = conv.weight.detach().float()
        # .to() sets true NHWC strides even for one input channel, where .contiguous() keeps the ambiguous NCHW
        # ones: oneDNN then returns an NCHW output for a one-channel input and every dense run pays a conversion.
        self.weight = w.to(memory_format=CL)
        self.bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(w.shape[0])
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.groups = conv.groups
        self.act = act
        cout, cin_g, kh, kw = w.shape
        self.kernel = (kh, kw)
        self.in_channels = cin_g * self.groups
        self.macs_per_position = kh * kw * cin_g * cout
        if self.groups == 1:
            self.wmat = w.permute(2, 3, 1, 0).reshape(kh * kw * cin_g, cout).contiguous()
            self.wmat_lanes, self.bias_lanes = pad_output_channels(self.wmat, self.bias)
        else:
            g = self.groups
            self.wgroups = w.view(g, cout // g, cin_g, kh, kw).permute(0, 3, 4, 2, 1).reshape(g, kh * kw, cin_g, -1)
        self.pointwise = (kh, kw) == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0) and self.groups == 1
        self.follows_input = False  # set by the converter: see FOLLOW_MAX_MACS
        self.break_even = 1.0
        self.xhat_shared = False
        self.pending_count = 0
        self.r2 = torch.zeros(0)
        self.energy = torch.zeros(0, dtype=torch.float64)
        self.energy_stale = False
        self.gate_dirty = False  # r2 or energy may hold nonzero values (only a gate run at ε > 0 leaves any)
        self.dense_frames_left = 0
        self.next_streak = self.DENSE_STREAK
        self.sigma = 0.0
        self.eps2_block = 0.0

    @property
    def reads_camera(self) -> bool:
        """Whether this convolution reads the model's input (its gate has the sensor-noise floor)."""
        return self.inputs == [0]

    @property
    def block(self) -> int:
        """Default gate block: 1 output position at stride 1, 2 at stride 2 (docs/skipconv.md, "Block size")."""
        return max(self.stride)

    def geometry(self, hi: int, wi: int) -> tuple[int, ...]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        ho = (hi + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (wi + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        return (kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)

    def _dense(self, ctx: Context) -> torch.Tensor:
        if self.pointwise:
            # oneDNN cannot tell a 1x1 weight's layout and falls back to NCHW copies; a GEMM on NHWC has none.
            hi, wi = self.xhat.shape[2], self.xhat.shape[3]
            z = torch.addmm(self.bias, self.xhat_hwc.reshape(hi * wi, -1), self.wmat)
            z = wrap(z.view(hi, wi, -1))
        else:
            z = F.conv2d(self.xhat, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.act is not None:
            z = self.act.fn(z) if not self.act.code else z.clamp_(0.0, 6.0 if self.act.code == 2 else None)
        return z.contiguous(memory_format=CL)

    def _sparse(self, positions: torch.Tensor, out_hwc: torch.Tensor, ctx: Context) -> None:
        xhat = self.xhat_hwc
        if ctx.timings is not None and self.groups == 1:
            self._sparse_profiled(xhat, positions, out_hwc, ctx)
            return
        if self.groups == 1 and (self.act is None or self.act.code):
            ctx.kernels.conv_rows(
                xhat, positions, self.geom, self.wmat_lanes, self.bias_lanes, out_hwc, self.act.code if self.act else 0
            )
            return
        cols = ctx.kernels.gather_windows(xhat, positions, self.geom, 0.0)
        if self.groups == 1:
            z = torch.addmm(self.bias, cols, self.wmat)
        else:
            g, taps, cin_g, _ = self.wgroups.shape
            z = torch.einsum("ntgc,gtco->ngo", cols.view(-1, taps, g, cin_g), self.wgroups).reshape(len(cols), -1)
            z = z + self.bias
        if self.act is not None:
            z = self.act.fn(z)
        ctx.kernels.scatter_rows(out_hwc, positions, z.contiguous())

    def _sparse_profiled(self, xhat: torch.Tensor, positions: torch.Tensor, out_hwc: torch.Tensor, ctx: Context):
        """The fused path split into its phases, each timed (same results)."""
        t = time.perf_counter()
        cols = ctx.kernels.gather_windows(xhat, positions, self.geom, 0.0)
        t = ctx.add_time("gather", t)
        z = torch.addmm(self.bias, cols, self.wmat)
        if self.act is not None:
            z = self.act.fn(z)
        t = ctx.add_time("gemm", t)
        ctx.kernels.scatter_rows(out_hwc, positions, z)
        ctx.add_time("scatter", t)

    def configure(self, ctx: Context) -> None:
        """Per-layer threshold: ε·σ as an RMS over a gate block's receptive field, squared and summed (ε times
        ``ctx.deep_scale`` for a convolution that does not read the camera)."""
        if self.follows_input:
            return  # no gate
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        b = ctx.block or self.block
        rf = ((b - 1) * sh + (kh - 1) * dh + 1) * ((b - 1) * sw + (kw - 1) * dw + 1)
        self.block_used = b
        self.block_field = rf
        eps = ctx.threshold * ctx.scale_of(self)
        self.eps2_block = (eps * self.sigma) ** 2 * rf * self.in_channels
        blocks = self.blocks_shape()
        self.block_stamps = ctx.scratch.stamps(*blocks)
        if self.energy.numel() != blocks[0] * blocks[1]:
            # A new block grid: the next step rebuilds every block's energy from the whole input.
            self.energy = torch.zeros(blocks[0] * blocks[1], dtype=torch.float64)
            self.energy_stale = True

    def blocks_shape(self) -> tuple[int, int]:
        """(rows, columns) of gate blocks on the output grid."""
        b = self.block_used
        return (self.geom[8] + b - 1) // b, (self.geom[9] + b - 1) // b

    @property
    def pending(self) -> torch.Tensor:
        """Input positions whose change is still below the threshold (sorted int32; for inspection)."""
        return torch.nonzero(self.r2 > 0).flatten().int()

    def key(self, xs: list[Layer], ctx: Context) -> None:
        x = xs[0]
        self.geom = self.geometry(*x.size)
        if self.follows_input:
            self.xhat, self.xhat_hwc = x.out, x.hwc
            self.out = self._dense(ctx)
            n = self.geom[8] * self.geom[9]
            self._record(Path.DENSE, n, n * self.macs_per_position, n * self.macs_per_position)
            return
        self.dense_frames_left, self.next_streak = 0, self.DENSE_STREAK
        self._refresh(x, ctx)
        self.sigma = float(self.xhat.pow(2).mean().sqrt())
        self.configure(ctx)
        n = self.geom[8] * self.geom[9]
        self._record(Path.DENSE, n, n * self.macs_per_position, n * self.macs_per_position)

    def _refresh(self, x: Layer, ctx: Context) -> None:
        """X̂ = X everywhere and a dense run. X̂ adopts the producer's buffer instead of copying it; whichever of
        the two writes into it first makes its own copy."""
        self.xhat, self.xhat_hwc = x.out, x.hwc
        x.shared = True
        self.xhat_shared = True
        hi, wi = x.size
        if self.r2.numel() != hi * wi:
            self.r2 = torch.zeros(hi * wi)
            self.energy.zero_()
        elif self.gate_dirty:
            self.r2.zero_()
            self.energy.zero_()
        self.gate_dirty = False
        self.energy_stale = False
        self.pending_count = 0
        self.out = self._dense(ctx)

    def idle(self) -> None:
        stats = self.stats
        if stats.path is not Path.IDLE or stats.pending_inputs != self.pending_count or stats.updated_inputs:
            self._record(Path.IDLE, 0, 0, self.geom[8] * self.geom[9] * self.macs_per_position)
            self.stats.pending_inputs = self.pending_count

    def step(self, xs: list[Layer], changes: list[Positions], ctx: Context) -> Positions:
        ho, wo = self.geom[8], self.geom[9]
        dense_macs = ho * wo * self.macs_per_position
        change = changes[0]
        if self.follows_input:
            return self._follow(xs[0], change, dense_macs, ctx)
        if change is not EVERYWHERE and change.numel() == 0:
            self._record(Path.IDLE, 0, 0, dense_macs)
            self.stats.pending_inputs = self.pending_count
            return change
        x = xs[0]
        hi, wi = x.size
        t = time.perf_counter()
        exact = self.eps2_block == 0.0
        broad = change is EVERYWHERE or change.numel() > self.break_even * hi * wi
        if change is EVERYWHERE and ctx.camera_refreshed:
            # the whole image changed: a block held back here would be as stale as those the camera layer refreshed
            return self._refresh_dense(x, ctx, t, ho * wo, dense_macs)
        if broad and (exact or self.dense_frames_left > 0):
            # Without a threshold every changed input updates X̂, and right after the gate itself asked for a
            # refresh the next frames most likely will too: past break-even, skip the bookkeeping.
            self.dense_frames_left = max(0, self.dense_frames_left - 1)
            return self._refresh_dense(x, ctx, t, ho * wo, dense_macs)
        self.own_reference()
        scratch = ctx.scratch
        eps2 = self.eps2_block
        if eps2 > 0.0 and self.reads_camera and ctx.noise_margin > 0.0:
            # Reading the camera: a block must not fire on sensor noise alone (ε > 0 only; ε = 0 stays exact).
            # Noise alone gives a block an energy of noise_energy · field on average, chi-square distributed with
            # field · C degrees of freedom: the floor sits at its 1-in-10⁴ tail, which a block of few pixels
            # reaches at a larger multiple of the mean than a block of many.
            eps2 = max(eps2, ctx.noise_margin * self.noise_tail() * ctx.noise_energy * self.block_field)
        everywhere = change is EVERYWHERE or self.energy_stale
        self.energy_stale = False
        self.gate_dirty = self.gate_dirty or eps2 > 0.0
        active, n_updated, self.pending_count, refresh = ctx.kernels.select_update(
            x.hwc,
            self.xhat_hwc,
            scratch.none if everywhere else change,
            everywhere,
            self.r2,
            self.energy,
            self.block_stamps,
            scratch.stamp(),
            self.geom,
            eps2,
            self.block_used,
            self.break_even,
            self.pending_count,
            UPDATE_FLOOR * eps2 / self.block_field if eps2 > 0.0 and not self.reads_camera else 0.0,
        )
        t = ctx.add_time("mask", t)
        return self.after_gate(x, ctx, t, active, n_updated, refresh)

    def own_reference(self) -> None:
        """Give X̂ a buffer of its own if it still shares its producer's (before the gate writes into it)."""
        if self.xhat_shared:
            self.xhat_hwc = self.xhat_hwc.clone()
            self.xhat = wrap(self.xhat_hwc)
            self.xhat_shared = False

    def noise_tail(self) -> float:
        """The sensor-noise energy of a gate block at its 1-in-10⁴ tail, as a multiple of its mean (``step``)."""
        return _chi2_quantile(1.0 - NOISE_FALSE_FIRE, self.block_field * self.in_channels)

    def after_gate(
        self, x: Layer, ctx: Context, t: float, active: torch.Tensor, n_updated: int, refresh: bool
    ) -> Positions:
        """The rest of ``step`` once the gate has chosen ``active`` (``FramePlan`` hands a frame back here when a
        layer's gate asks for more than a sparse update)."""
        ho, wo = self.geom[8], self.geom[9]
        dense_macs = ho * wo * self.macs_per_position
        n = active.numel()
        dense_above = min(self.break_even, ctx.camera_wide_change) if self.reads_camera else self.break_even
        if refresh or n > dense_above * ho * wo:
            # Past break-even a dense run costs less than the sparse one, and it might as well read the true input
            # everywhere: the same MACs, and no block the gate held back stays stale (under head motion those held
            # blocks decide which weak keypoint peaks win). The consumers recompute densely too.
            self._start_streak()
            return self._refresh_dense(x, ctx, t, ho * wo if refresh else n, dense_macs)
        if n == 0:
            self.next_streak = self.DENSE_STREAK
            self._record(Path.IDLE, 0, 0, dense_macs)
        else:
            self.next_streak = self.DENSE_STREAK
            self._sparse(active, self.writable(), ctx)
            self._record(Path.SPARSE, n, n * self.macs_per_position, dense_macs)
        self.stats.updated_inputs = n_updated
        self.stats.pending_inputs = self.pending_count
        return active

    def _follow(self, x: Layer, change: Positions, dense_macs: int, ctx: Context) -> Positions:
        """Exact and gate-free: X̂ is X itself, and the outputs at the changed inputs are recomputed (a pointwise
        convolution's output grid is its input grid)."""
        self.xhat, self.xhat_hwc = x.out, x.hwc
        n = self.geom[8] * self.geom[9]
        if change is EVERYWHERE or change.numel() > self.break_even * n:
            self.out = self._dense(ctx)
            self._record(Path.DENSE, n, dense_macs, dense_macs)
            return EVERYWHERE
        count = change.numel()
        if count:
            self._sparse(change, self.writable(), ctx)
        self._record(Path.SPARSE if count else Path.IDLE, count, count * self.macs_per_position, dense_macs)
        self.stats.updated_inputs = count
        return change

    def _refresh_dense(self, x: Layer, ctx: Context, since: float, active: int, dense_macs: int) -> Positions:
        """X̂ = X everywhere and a dense run, recorded with ``active`` outputs; every output changed."""
        self._refresh(x, ctx)
        if self.reads_camera:
            ctx.camera_refreshed = True
        ctx.add_time("dense", since)
        self._record(Path.DENSE, active, dense_macs, dense_macs)
        self.stats.updated_inputs = x.size[0] * x.size[1]
        return EVERYWHERE

    def _start_streak(self) -> None:
        self.dense_frames_left = self.next_streak
        self.next_streak = min(2 * self.next_streak, self.MAX_DENSE_STREAK)

    def measure_break_even(self, ctx: Context, fractions: tuple[float, ...], repeats: int = 3) -> float:
        """The active fraction above which a dense run is faster, timed on this layer's own buffers.

        Runs after a key frame (needs ``xhat``); writes only into a scratch copy of the output.
        """
        ho, wo = self.geom[8], self.geom[9]
        scratch = self.hwc.clone()
        gen = torch.Generator().manual_seed(0)
        order = torch.randperm(ho * wo, generator=gen)

        def timed(fn: Callable[[], object]) -> float:
            fn()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times)

        candidates = []
        for f in fractions:
            positions = torch.sort(order[: max(1, int(f * ho * wo))])[0].int()
            dense_s, sparse_s = (
                timed(lambda: self._dense(ctx)),
                timed(lambda p=positions: self._sparse(p, scratch, ctx)),
            )
            candidates.append((f, sparse_s < dense_s))
        faster = [f for f, ok in candidates if ok]
        self.break_even = max(faster) if faster else 0.0
        return self.break_even


class PointwiseLayer(Layer):
    """An elementwise function of one input (activation, scalar arithmetic, unfolded BatchNorm as affine)."""

    op = "pointwise"

    def __init__(self, name: str, inputs: list[int], fn: Callable[[torch.Tensor], torch.Tensor], what: str) -> None:
        super().__init__(name, inputs)
        self.fn = fn
        self.op = what

    def key(self, xs: list[Layer], ctx: Context) -> None:
        self.out = wrap(self.fn(xs[0].hwc).contiguous())
        if self.out.data_ptr() == xs[0].out.data_ptr():
            self.out = self.out.clone()
        self._record(Path.DENSE, self.size[0] * self.size[1])

    def step(self, xs: list[Layer], changes: list[Positions], ctx: Context) -> Positions:
        change = changes[0]
        if not self._trivial(xs, change, ctx):
            self._scatter(change, self.fn(rows(xs[0].out, change)), ctx)
            self._record(Path.SPARSE, change.numel())
        return change


class BinaryLayer(Layer):
    """An elementwise function of two same-shape inputs (add, sub, mul), with an optional fused activation."""

    op = "binary"
    CODES = {"add": 0, "sub": 1, "mul": 2}

    def __init__(self, name: str, inputs: list[int], fn: Callable, what: str, act: Activation | None) -> None:
        super().__init__(name, inputs)
        self.fn, self.op, self.act = fn, what, act

    def _apply(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        z = self.fn(a, b)
        return self.act.fn(z) if self.act is not None else z

    def key(self, xs: list[Layer], ctx: Context) -> None:
        a, b = xs
        if a.out.shape != b.out.shape:
            raise UnsupportedOperationError(
                f"{self.name} ({self.op}) needs two inputs of the same shape, got {tuple(a.out.shape)} and "
                f"{tuple(b.out.shape)}; broadcasting is not supported by skip layers"
            )
        self.out = wrap(self._apply(a.hwc, b.hwc).contiguous())
        self._record(Path.DENSE, self.size[0] * self.size[1])

    def step(self, xs: list[Layer], changes: list[Positions], ctx: Context) -> Positions:
        if any(c is EVERYWHERE for c in changes):
            self.key(xs, ctx)
            return EVERYWHERE
        active = _union(changes, self.size, ctx)
        if not active.numel():
            self._record(Path.IDLE, 0)
            return active
        a, b = xs
        if self.act is None or self.act.code:
            code = self.act.code if self.act else 0
            ctx.kernels.binary_positions(a.hwc, b.hwc, self.writable(), active, self.CODES[self.op], code)
        else:
            self._scatter(active, self._apply(rows(a.out, active), rows(b.out, active)), ctx)
        self._record(Path.SPARSE, active.numel())
        return active


def _union(changes: list[torch.Tensor], size: tuple[int, int], ctx: Context) -> torch.Tensor:
    live = [c for c in changes if c.numel()]
    if len(live) == 0:
        return changes[0]
    if len(live) == 1:
        return live[0]
    return ctx.kernels.union_positions(live, size[0] * size[1])


class ConcatLayer(Layer):
    """Channel concatenation: each input's changed positions are copied into its channel slice."""

    op = "concat"

    def key(self, xs: list[Layer], ctx: Context) -> None:
        sizes = {x.size for x in xs}
        if len(sizes) != 1:
            raise UnsupportedOperationError(
                f"{self.name} (concat) needs inputs of one spatial size, got {sorted(sizes)}"
            )
        self.out = wrap(torch.cat([x.hwc for x in xs], dim=2))
        self._record(Path.DENSE, self.size[0] * self.size[1])

    def step(self, xs: list[Layer], changes: list[Positions], ctx: Context) -> Positions:
        if any(c is EVERYWHERE for c in changes):
            self.key(xs, ctx)
            return EVERYWHERE
        offset = 0
        for x, c in zip(xs, changes, strict=True):
            if c.numel():
                ctx.kernels.copy_positions(x.hwc, self.writable(), c, offset)
            offset += x.out.shape[1]
        active = _union(changes, self.size, ctx)
        self._record(Path.SPARSE if active.numel() else Path.IDLE, active.numel())
        return active


class PoolLayer(Layer):
    """Max or average pooling (no ceil_mode; average counts padding, as PyTorch's default)."""

    op = "pool"

    def __init__(self, name: str, inputs: list[int], kind: str, kernel, stride, padding, dilation) -> None:
        super().__init__(name, inputs)
        self.kind, self.kernel, self.stride, self.padding, self.dilation = kind, kernel, stride, padding, dilation
        self.op = f"{kind}_pool"

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            z = F.max_pool2d(x, self.kernel, self.stride, self.padding, self.dilation)
        else:
            z = F.avg_pool2d(x, self.kernel, self.stride, self.padding)
        return z.contiguous(memory_format=CL)

    def key(self, xs: list[Layer], ctx: Context) -> None:
        self.out = self._dense(xs[0].out)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        self.geom = (kh, kw, sh, sw, ph, pw, dh, dw, *self.size)
        self._record(Path.DENSE, self.size[0] * self.size[1])

    def step(self, xs: list[Layer], changes: list[Positions], ctx: Context) -> Positions:
        change = changes[0]
        if self._trivial(xs, change, ctx):
            return change
        x = xs[0]
        active = ctx.kernels.dilate_positions(change, x.size[0], x.size[1], self.geom)
        if not active.numel():  # the changes lie where no window reaches (a border row a stride leaves out)
            self._record(Path.IDLE, 0)
            return active
        pad = float("-inf") if self.kind == "max" else 0.0
        cols = ctx.kernels.gather_windows(x.hwc, active, self.geom, pad).view(active.numel(), -1, x.out.shape[1])
        values = cols.amax(1) if self.kind == "max" else cols.mean(1)
        self._scatter(active, values, ctx)
        self._record(Path.SPARSE, active.numel())
        return active


class UpsampleLayer(Layer):
    """Nearest or bilinear upsampling by an integer factor (the same formulas as F.interpolate)."""

    op = "upsample"

    def __init__(self, name: str, inputs: list[int], mode: str, factor: int, align_corners: bool) -> None:
        super().__init__(name, inputs)
        self.mode, self.factor, self.align_corners = mode, factor, bool(align_corners)
        self.op = f"upsample_{mode}"

    def key(self, xs: list[Layer], ctx: Context) -> None:
        hi, wi = xs[0].size
        out = torch.empty(hi * self.factor, wi * self.factor, xs[0].out.shape[1])
        everywhere = ctx.scratch.everywhere(out.shape[0], out.shape[1])
        ctx.kernels.upsample_at(xs[0].hwc, out, everywhere, self.factor, self.mode == "bilinear", self.align_corners)
        self.out = wrap(out)
        self._record(Path.DENSE, self.size[0] * self.size[1])

    def step(self, xs: list[Layer], changes: list[Positions], ctx: Context) -> Positions:
        change = changes[0]
        if self._trivial(xs, change, ctx):
            return change
        x = xs[0]
        wi = x.size[1]
        ho, wo = self.size
        radius = 1 if self.mode == "bilinear" else 0
        active = ctx.kernels.upsample_positions(change, wi, self.factor, radius, ho, wo)
        ctx.kernels.upsample_at(
            x.hwc, self.writable(), active, self.factor, self.mode == "bilinear", self.align_corners
        )
        self._record(Path.SPARSE, active.numel())
        return active
