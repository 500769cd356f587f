"""Conversion of a trained nn.Module into a SkipModel (torch.fx graph, BatchNorm folded), and the SkipModel itself.

Example::

    skip = convert(model, threshold=0.02)
    for image in frames:                       # (1, C, H, W) float32, one frame at a time
        heatmaps = skip(image)                 # same as model(image) up to the threshold's error
        print(skip.stats()["active_fraction"])
"""

from __future__ import annotations

import copy
import logging
import math
import operator
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.experimental.optimization import fuse as fold_batchnorm

from skiptrack_types import InvalidInputError
from tracking.skipconv import break_even_cache, plan
from tracking.skipconv.errors import UnsupportedOperationError
from tracking.skipconv.gates import GateKind
from tracking.skipconv.kernels import Backend, kernels_for
from tracking.skipconv.layers import (
    CAMERA_WIDE_CHANGE,
    CAMERA_WIDE_CHANGE_AFTER_MOTION,
    CL,
    Activation,
    BinaryLayer,
    ConcatLayer,
    Context,
    ConvLayer,
    InputLayer,
    Layer,
    PointwiseLayer,
    PoolLayer,
    UpsampleLayer,
    sensor_noise_energy,
    smoothed_noise,
)
from tracking.skipconv.masks import EVERYWHERE, GridScratch, Positions
from tracking.skipconv.rewrite import split_pointwise_over_upsample
from tracking.skipconv.stats import Path, summarize

log = logging.getLogger(__name__)

FOLLOW_MAX_MACS = 4096
"""A pointwise (1x1) convolution with at most this many MACs per output position runs without a gate, recomputing
exactly where its input changed (``ConvLayer._follow``), when only such convolutions lie downstream of it, or when
the convolutions after it read its output at the positions it changed (through elementwise layers, no resampling).
The norm gate costs 50-100 ns per changed input on this machine (residual, block energies, X̂ copy, output
marking), as much as 2500-5000 MACs of the sparse convolution: below that a gate cannot save what it costs. Past
such a layer either no expensive convolution is left whose work a threshold would spare, or the next gates hold
back the same small changes at the same positions; an upsampling in between would spread each change it lets
through over several positions (docs/skipconv.md)."""

ALL_DENSE_FRAMES = 3
"""Frames in a row on which every convolution ran dense (head motion, a noisy camera at a small ε) before the whole
model hands over to the folded graph for FOLDED_FRAMES frames: the graph runs the same dense work without the
per-layer bookkeeping. The frame after that is a key frame, and the layers gate again. A handover within
RESUME_FRAMES frames of the end of the last streak doubles the next streak (up to MAX_FOLDED_FRAMES, 0.8 s at
60 Hz); a later one starts again at FOLDED_FRAMES. Within RESUME_FRAMES of a streak's end the camera layer
refreshes exactly above CAMERA_WIDE_CHANGE_AFTER_MOTION instead of CAMERA_WIDE_CHANGE (the head's motion goes on);
under slower motion the frame after the key frame still runs sparse (one frame's motion against the key frame), so
a sparse frame alone does not end the doubling: the motion goes on when the frames after it are dense again."""
FOLDED_FRAMES = 12
MAX_FOLDED_FRAMES = 48
RESUME_FRAMES = 2 * (1 + ALL_DENSE_FRAMES)

PRECISIONS = ("fp32", "bf16")
"""Arithmetic of the whole-model dense runs (``SkipModel.precision``); the per-layer paths are always fp32."""

BREAK_EVEN_FRACTIONS = (0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8)
"""Active fractions at which each layer's sparse path is timed against its dense run."""

SUPPORTED = (
    "Conv2d (any kernel, stride, padding, dilation, groups; zeros padding), BatchNorm2d, pointwise activations "
    "(ReLU, ReLU6, LeakyReLU, Sigmoid, Tanh, SiLU, Hardswish, Hardsigmoid, GELU, ELU), add/sub/mul, "
    "torch.cat on channels, max/avg pooling, nearest/bilinear upsampling by an integer scale_factor, "
    "Identity/Dropout"
)

_ACT_MODULES: dict[type, Callable[[nn.Module], Activation]] = {
    nn.ReLU: lambda m: Activation("relu", torch.relu, 1),
    nn.ReLU6: lambda m: Activation("relu6", F.relu6, 2),
    nn.LeakyReLU: lambda m: Activation("leaky_relu", partial(F.leaky_relu, negative_slope=m.negative_slope)),
    nn.Sigmoid: lambda m: Activation("sigmoid", torch.sigmoid),
    nn.Tanh: lambda m: Activation("tanh", torch.tanh),
    nn.SiLU: lambda m: Activation("silu", F.silu),
    nn.Hardswish: lambda m: Activation("hardswish", F.hardswish),
    nn.Hardsigmoid: lambda m: Activation("hardsigmoid", F.hardsigmoid),
    nn.GELU: lambda m: Activation("gelu", partial(F.gelu, approximate=m.approximate)),
    nn.ELU: lambda m: Activation("elu", partial(F.elu, alpha=m.alpha)),
}
_ACT_FUNCTIONS: dict[Callable, tuple[str, Callable, int]] = {
    F.relu: ("relu", torch.relu, 1),
    torch.relu: ("relu", torch.relu, 1),
    F.relu6: ("relu6", F.relu6, 2),
    torch.sigmoid: ("sigmoid", torch.sigmoid, 0),
    F.sigmoid: ("sigmoid", torch.sigmoid, 0),
    torch.tanh: ("tanh", torch.tanh, 0),
    F.tanh: ("tanh", torch.tanh, 0),
    F.silu: ("silu", F.silu, 0),
    F.hardswish: ("hardswish", F.hardswish, 0),
    F.hardsigmoid: ("hardsigmoid", F.hardsigmoid, 0),
    F.gelu: ("gelu", F.gelu, 0),
    F.leaky_relu: ("leaky_relu", F.leaky_relu, 0),
    F.elu: ("elu", F.elu, 0),
}
_ACT_METHODS = {
    "relu": ("relu", torch.relu, 1),
    "sigmoid": ("sigmoid", torch.sigmoid, 0),
    "tanh": ("tanh", torch.tanh, 0),
}
_BINARY = {
    operator.add: ("add", torch.add),
    torch.add: ("add", torch.add),
    operator.sub: ("sub", torch.sub),
    torch.sub: ("sub", torch.sub),
    operator.mul: ("mul", torch.mul),
    torch.mul: ("mul", torch.mul),
}
_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class SkipModel:
    """A converted network run one frame at a time with skip convolutions.

    Call with a (1, C, H, W) float tensor per frame. Returns the output tensor(s) of the original model, as
    channels_last (1, C, H, W) views of the engine's own buffers: valid until the next call (clone to keep them).
    The first frame, the first frame after ``reset()`` and a frame with a new resolution are key frames (dense).
    ``dense = True`` runs the same folded weights densely (channels_last), returning fresh tensors: the network's
    graph as written (``as_written``), while the layers and the whole-model streaks under head motion run ``folded``,
    the same graph after ``tracking.skipconv.rewrite`` (equal up to float rounding, cheaper to run sparsely).
    ``precision = "bf16"`` runs those whole-model dense passes (dense mode, and the folded streaks under head
    motion) in bfloat16 (outputs still float32); see ``precision``.
    """

    def __init__(
        self,
        folded: torch.fx.GraphModule,
        layers: list[Layer],
        outputs: list[int],
        tuple_output: bool,
        threshold: float,
        block: int | None,
        backend: Backend,
        break_even: float | None,
        as_written: torch.fx.GraphModule | None = None,
    ) -> None:
        self.folded = folded
        self.as_written = as_written if as_written is not None else folded
        self.layers = layers
        self.outputs = outputs
        self.tuple_output = tuple_output
        self.backend = backend
        self.dense = False
        self.fixed_break_even = break_even
        self._ctx = Context(kernels_for(backend), GridScratch(), float(threshold), block)
        self._resolution: tuple[int, int] | None = None
        self._break_evens: dict[tuple[int, int], dict[str, float]] = {}
        self._convs = [layer for layer in layers if isinstance(layer, ConvLayer)]
        fed = [c for c in self._convs if c.reads_camera]
        self.in_channels = fed[0].in_channels if fed else None
        self._first_conv = layers.index(self._convs[0]) if self._convs else None
        self._first_changes: Positions = EVERYWHERE
        self._all_dense_frames = 0
        self._folded_frames_left = 0
        self._next_folded = FOLDED_FRAMES
        self._since_streak: int | None = None  # per-layer frames since the last folded streak ended
        self._precision = "fp32"
        self._bf16: dict[str, torch.fx.GraphModule] = {}
        # The layers a plan can run compute with detached weights on the detached input: no autograd graph can form,
        # and a sparse frame skips torch.no_grad(), whose context cost 4 % of a still_hand skip frame (stop 23, the
        # interpreter's state cold after the dense model's run).
        self._autograd_free = plan.supported(layers)
        # Sparse frames in one C++ call (tracking/skipconv/plan.py) where the kernels and the layers allow;
        # ``use_plan = False`` runs every layer's step in Python (the same results: the tests compare the two).
        self.use_plan = hasattr(self._ctx.kernels, "FramePlan") and self._autograd_free
        self._plan: object | None = None
        self._plan_ready = False  # the last frame ran no layer dense: the next may build a plan
        self._stats_in_plan = False  # the layers' stats and gate state of the last frames are the plan's to hand over

    @property
    def precision(self) -> str:
        """The arithmetic, "fp32" or "bf16", of the whole-model dense passes (``dense = True``, and the folded
        streaks of head motion). With bfloat16 oneDNN runs them about twice as fast on a CPU with bfloat16
        instructions (AVX512-BF16, AMX), 1-2 % of the output range off the fp32 result; the sparse path, the key
        frames and every per-layer dense run stay fp32 (the skip state and its exactness are fp32). On a CPU without
        them bfloat16 is emulated and slower: ``tracking.network.api.resolve_precision("auto")`` picks."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
        if value == "bf16" and not self._bf16:
            folded = copy.deepcopy(self.folded).to(torch.bfloat16)
            same = self.as_written is self.folded
            self._bf16 = {
                "folded": folded,
                "as_written": folded if same else copy.deepcopy(self.as_written).to(torch.bfloat16),
            }
        self._precision = value

    def _run_folded(self, x: torch.Tensor, graph: str = "folded") -> torch.Tensor | tuple[torch.Tensor, ...]:
        """``graph`` ("folded": the layers' graph, or "as_written") on ``x`` at ``precision``; float32 channels_last
        outputs either way."""
        x = x.contiguous(memory_format=CL)
        if self._precision == "fp32":
            return getattr(self, graph)(x)
        out = self._bf16[graph](x.to(torch.bfloat16))
        if isinstance(out, torch.Tensor):
            return out.float()
        return tuple(o.float() for o in out)

    @property
    def threshold(self) -> float:
        """Global ε: a gate block fires when the RMS of its residual over its receptive field exceeds ε times the
        layer input's RMS (measured at the last key frame). 0 = exact."""
        return self._ctx.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        if not (value >= 0.0 and math.isfinite(value)):
            raise InvalidInputError(f"threshold must be a finite number >= 0, got {value}")
        self._ctx.threshold = float(value)
        self._configure()

    @property
    def deep_scale(self) -> float:
        """Multiplier of ε for the convolutions that do not read the model's input (1: one ε everywhere). The
        layers reading the camera see every pixel change and decide what changed (and, with
        ``CAMERA_WIDE_CHANGE``, whether the head moved); the deeper ones only whether a change is big enough to
        recompute, and a change a layer spreads into the ring around it is small there."""
        return self._ctx.deep_scale

    @deep_scale.setter
    def deep_scale(self, value: float) -> None:
        if not (value > 0.0 and math.isfinite(value)):
            raise InvalidInputError(f"deep_scale must be a finite number > 0, got {value}")
        self._ctx.deep_scale = float(value)
        self._configure()

    @property
    def module_scales(self) -> dict[str, float]:
        """ε multipliers of the convolutions of named modules of the source network (a layer ``ctx8a_0`` is module
        ``ctx8a``'s), in place of ``deep_scale``: a network whose outputs depend on some layers more finely than on
        others gates them apart (tracking.network: the scene points' path exact, the context coarse)."""
        return dict(self._ctx.module_scales)

    @module_scales.setter
    def module_scales(self, value: dict[str, float]) -> None:
        for module, scale in value.items():
            if not (scale > 0.0 and math.isfinite(scale)):
                raise InvalidInputError(
                    f"the ε multiplier of module {module!r} must be a finite number > 0, got {scale}"
                )
        self._ctx.module_scales = {str(k): float(v) for k, v in value.items()}
        self._configure()

    @property
    def noise_energy(self) -> float:
        """The camera's sensor noise as the noise floor uses it: mean ‖X_t − X_s‖² per input position (0: not
        estimated yet)."""
        return self._ctx.noise_energy

    def observe_noise(self, current: np.ndarray, previous: np.ndarray, scale: float = 1.0) -> None:
        """Estimate the camera's sensor noise from two of its frames as the caller has them (``scale``: what the
        model's input is per unit of theirs), for the noise floor, instead of from the model's own input frames.
        For a caller that steadies the frames before the model (tracking.network.deadband): the steadied frames
        hold the noise back and would set the floor at zero, while the pixels they let through are the noise's
        tail. From the first call on the model no longer estimates the noise itself."""
        self._ctx.noise_from_caller = True
        self._ctx.noise_energy = smoothed_noise(self._ctx.noise_energy, sensor_noise_energy(current, previous, scale))

    def _configure(self) -> None:
        """Give every convolution its threshold from the context again (after ε or the deep scale changed)."""
        self._drop_plan()
        if self._resolution is not None:
            for conv in self._convs:
                conv.configure(self._ctx)

    @property
    def noise_margin(self) -> float:
        """Sensor-noise floor of the first layers' gates, as a multiple of the noise energy (0: none)."""
        return self._ctx.noise_margin

    @noise_margin.setter
    def noise_margin(self, value: float) -> None:
        self._ctx.noise_margin = float(value)

    def reset(self, new_camera: bool = False) -> None:
        """Make the next frame a key frame; ``new_camera``: the frames now come from another camera, whose noise
        is estimated afresh."""
        if new_camera:
            self._ctx.noise_energy = 0.0
        self._resolution = None
        self._drop_plan()
        self._all_dense_frames = self._folded_frames_left = 0
        self._next_folded = FOLDED_FRAMES
        self._since_streak = None

    def break_evens(self) -> dict[str, float]:
        """Per convolution: the active fraction above which it runs dense, at the current resolution."""
        return {c.name: c.break_even for c in self._convs}

    def active_mask(self) -> np.ndarray | None:
        """(H', W') bool on the first convolution's output grid: where it recomputed in the last frame (all True
        after a key frame or in dense mode); None before the first frame."""
        if self._first_conv is None or self._resolution is None:
            return None
        _, _, h, w = self.layers[self._first_conv].out.shape
        if self.dense or self._first_changes is EVERYWHERE:
            return np.ones((h, w), bool)
        mask = np.zeros(h * w, bool)
        mask[self._first_changes.numpy()] = True
        return mask.reshape(h, w)

    def stats(self, per_layer: bool = True) -> dict:
        """``{"macs", "dense_macs", "active_fraction", "per_layer": [...]}`` for the last frame (exact counts);
        ``per_layer=False`` leaves the per-layer list empty (a tracker's per-frame totals)."""
        self._sync_stats()
        return summarize([layer.stats for layer in self.layers], per_layer)

    def _sync_stats(self) -> None:
        """The layers take the stats and gate state the frame plan kept from its last whole frames."""
        if self._stats_in_plan and self._plan is not None:
            plan.sync(self._plan, self.layers)
        self._stats_in_plan = False

    def _drop_plan(self) -> None:
        """Forget the frame plan (its tensors may be replaced), its stats and gate state written into the layers."""
        self._sync_stats()
        self._plan = None

    def _check(self, x: object, scan_values: bool) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise InvalidInputError(f"SkipModel input must be a torch.Tensor of shape (1, C, H, W), got {type(x)}")
        if x.dim() != 4 or x.shape[0] != 1:
            raise InvalidInputError(
                f"SkipModel input must have shape (1, C, H, W) (one frame per call), got {tuple(x.shape)}"
            )
        if self.in_channels is not None and x.shape[1] != self.in_channels:
            raise InvalidInputError(f"SkipModel input must have {self.in_channels} channels, got {x.shape[1]}")
        if not x.is_floating_point():
            raise InvalidInputError(f"SkipModel input must be a floating point tensor, got {x.dtype}")
        if x.requires_grad:
            x = x.detach()
        if x.dtype != torch.float32:
            x = x.float()
        if not scan_values:
            return x
        # numpy's min and max (NaN propagates through both): torch's own reductions wake the thread pool, 50 µs a
        # 320x240 frame against 9
        values = x.numpy()
        if not (math.isfinite(float(values.min())) and math.isfinite(float(values.max()))):
            raise InvalidInputError("SkipModel input contains NaN or infinite values; every value must be finite")
        return x

    def __call__(self, x: torch.Tensor, *, known_finite: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The model's output(s) for one frame ``x`` (1, C, H, W). ``known_finite``: the caller vouches that every
        value is finite (``KeypointModel`` makes its input from a uint8 image), which skips the NaN/inf scan, a pass
        over a frame that comes from memory: 35-90 µs at 320x240 on this 2-core machine, 6 % of a still_hand skip
        frame (stop 22)."""
        x = self._check(x, scan_values=not known_finite)
        if self.dense:
            with torch.no_grad():
                return self._run_folded(x, "as_written")
        resolution = (x.shape[2], x.shape[3])
        if self._folded_frames_left and resolution == self._resolution:
            return self._folded_frame(x)
        self.layers[0].set_frame(x)
        if self._since_streak is not None:
            self._since_streak += 1
        after_motion = self._since_streak is not None and self._since_streak <= RESUME_FRAMES
        self._ctx.camera_wide_change = CAMERA_WIDE_CHANGE_AFTER_MOTION if after_motion else CAMERA_WIDE_CHANGE
        self._ctx.camera_refreshed = False
        if resolution != self._resolution:
            with torch.no_grad():
                self._key_frame(resolution)
            self._first_changes = EVERYWHERE
        elif self._autograd_free:
            self._sparse_frame()
        else:
            with torch.no_grad():
                self._sparse_frame()
        outs = tuple(self.layers[i].out for i in self.outputs)
        return outs if self.tuple_output else outs[0]

    def _sparse_frame(self) -> None:
        """A frame at the known resolution through the layers, then the count of frames that ran all dense."""
        if self._step():  # no convolution ran dense: the count starts again
            self._plan_ready, self._all_dense_frames = True, 0
        else:
            self._count_all_dense()

    def _count_all_dense(self) -> None:
        """Hand over to the folded graph after ALL_DENSE_FRAMES frames on which every convolution ran dense."""
        dense = [c.stats.path is Path.DENSE for c in self._convs]
        self._plan_ready = not any(dense)
        all_dense = bool(self._convs) and all(dense)
        if not all_dense:
            self._all_dense_frames = 0
            return
        self._all_dense_frames += 1
        if self._all_dense_frames >= ALL_DENSE_FRAMES:
            if self._since_streak is None or self._since_streak > RESUME_FRAMES:
                self._next_folded = FOLDED_FRAMES
            self._all_dense_frames = 0
            self._folded_frames_left = self._next_folded
            self._next_folded = min(2 * self._next_folded, MAX_FOLDED_FRAMES)
            self._since_streak = None

    def _folded_frame(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """One frame of the whole-model dense streak: the folded graph's output (exact at fp32 ``precision``), every
        layer counted dense. The layers' state is not kept meanwhile, so the frame after the streak is a key frame."""
        self._folded_frames_left -= 1
        self._drop_plan()
        if not self._folded_frames_left:
            self._resolution = None
            self._since_streak = 0
        with torch.no_grad():
            out = self._run_folded(x)
        for layer in self.layers:
            layer.record_dense()
        self._first_changes = EVERYWHERE
        return out

    def _key_frame(self, resolution: tuple[int, int]) -> None:
        self._all_dense_frames = self._folded_frames_left = 0  # a new resolution ends a folded streak too
        self._drop_plan()
        if resolution != self._resolution:
            self._ctx.scratch.clear()
        try:
            for layer in self.layers:
                layer.key([self.layers[i] for i in layer.inputs], self._ctx)
        except RuntimeError as exc:
            self._resolution = None
            raise InvalidInputError(f"an input of size {resolution} cannot run through this model: {exc}") from exc
        self._resolution = resolution
        if self.fixed_break_even is not None:
            for conv in self._convs:
                conv.break_even = self.fixed_break_even
        elif resolution in self._break_evens:
            for conv in self._convs:
                conv.break_even = self._break_evens[resolution][conv.name]
        else:
            self._break_evens[resolution] = self._machine_break_evens(resolution)

    def _machine_break_evens(self, resolution: tuple[int, int]) -> dict[str, float]:
        """Each convolution's break-even at ``resolution``: recorded for this machine, or measured now and recorded."""
        key = break_even_cache.signature(self._convs, resolution, self.backend)
        names = [c.name for c in self._convs]
        values = break_even_cache.load(key, names)
        if values is None:
            log.info("measuring per-layer break-even active fractions at %dx%d (once per machine)", *resolution)
            values = {c.name: c.measure_break_even(self._ctx, BREAK_EVEN_FRACTIONS) for c in self._convs}
            break_even_cache.store(key, values)
        for conv in self._convs:
            conv.break_even = values[conv.name]
        return values

    @property
    def profile(self) -> dict[str, float] | None:
        """Seconds per phase ("mask", "gather", "gemm", "scatter", "dense", "other") accumulated since profiling
        was switched on with ``profile = True``; None when off. Profiling splits fused kernels to time them."""
        return self._ctx.timings

    @profile.setter
    def profile(self, on: bool) -> None:
        self._ctx.timings = {} if on else None
        self._drop_plan()

    def _step(self) -> bool:
        """One frame through the layers; True when it ran only sparse or idle layers (an unchanged input, or the
        plan ran the whole frame)."""
        changes: list[Positions] = [EVERYWHERE] * len(self.layers)
        if self._plan is None and self._plan_ready and self.use_plan and self._ctx.timings is None:
            self._plan = plan.build(self._ctx.kernels, self.layers, self._ctx)
        if self._plan is not None:
            keep, held = self._first_conv or 0, self._stats_in_plan
            start, whole = plan.run(self._plan, self.layers, changes, self._ctx, keep, held)
            self._stats_in_plan = whole and start > 0  # a whole changed frame's stats stay in the plan (plan.run)
            if not whole:
                self._plan = None  # Python took the frame over: its layers may replace the tensors the plan holds
        else:
            changes[0] = self.layers[0].step([], [], self._ctx)
            start, whole = (0, True) if changes[0].numel() == 0 else (1, False)
        if start == 0:
            # An unchanged frame costs only the input compare: pending residuals can only fire when an input of
            # their block changes.
            for layer in self.layers[1:]:
                layer.idle()
            self._first_changes = torch.zeros(0, dtype=torch.int32)
            return True
        for index in range(start, len(self.layers)):
            layer = self.layers[index]
            xs = [self.layers[i] for i in layer.inputs]
            t = time.perf_counter()
            changes[index] = layer.step(xs, [changes[i] for i in layer.inputs], self._ctx)
            if self._ctx.timings is not None and not isinstance(layer, ConvLayer):
                self._ctx.add_time("other", t)
        self._first_changes = changes[self._first_conv] if self._first_conv is not None else EVERYWHERE
        return whole

    def memory(self) -> dict[str, int]:
        """Bytes held: ``activations`` (every layer's output, what a dense pass also produces) and ``cache`` (the
        skip state on top: reference inputs, gate residuals and block energies, stamp arrays)."""
        outs = sum(layer.out.numel() * layer.out.element_size() for layer in self.layers[1:])
        refs = sum(
            c.xhat.numel() * 4 + c.r2.numel() * 4 + c.energy.numel() * 8
            for c in self._convs
            if hasattr(c, "xhat") and not c.follows_input  # a follower's X̂ is its producer's output
        )
        return {"activations": outs, "cache": refs + self._ctx.scratch.nbytes()}


def convert(
    model: nn.Module,
    threshold: float = 0.0,
    block: int | None = None,
    gate: str | GateKind = "norm",
    backend: Backend = Backend.CPP,
    break_even: float | None = None,
    noise_margin: float = 1.0,
    deep_scale: float = 1.0,
    module_scales: dict[str, float] | None = None,
) -> SkipModel:
    """Convert a trained ``model`` (one image input, (1, C, H, W)) into a SkipModel without retraining.

    ``threshold``: global ε (0 = exact, see ``SkipModel.threshold``). ``block``: gate block side in output
    positions (None: per-layer default from the stride). ``gate``: "norm" (the residual norm gate). ``backend``:
    the C++ kernels or the pure-PyTorch reference. ``break_even``: a fixed active fraction above which every
    convolution runs dense, or None to measure each layer's own on the first key frame of each resolution.
    ``noise_margin``: at ε > 0 a block of a layer reading the input fires only above this multiple of the energy
    that sensor noise alone gives one block in 10⁴ (noise estimated from the frames; 0 disables the floor).
    ``deep_scale``: ε multiplier of the convolutions that do not read the input (``SkipModel.deep_scale``);
    ``module_scales``: the multipliers of named modules' convolutions instead (``SkipModel.module_scales``).

    Raises UnsupportedOperationError naming the graph node for an operation it cannot run sparsely.
    """
    if GateKind(gate) is not GateKind.NORM:
        raise InvalidInputError(
            f"gate={gate!r} cannot be converted: the Gumbel gate (tracking.skipconv.gates.GumbelGate) is a "
            "training-time gate; convert the trained network with gate='norm'"
        )
    if threshold < 0 or not math.isfinite(threshold):
        raise InvalidInputError(f"threshold must be a finite number >= 0, got {threshold}")
    if noise_margin < 0 or not math.isfinite(noise_margin):
        raise InvalidInputError(f"noise_margin must be a finite number >= 0, got {noise_margin}")
    if block is not None and block < 1:
        raise InvalidInputError(f"block must be a positive number of output positions, got {block}")
    model = copy.deepcopy(model).eval().float()
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds of errors for untraceable Python
        raise UnsupportedOperationError(
            f"the model could not be traced by torch.fx ({type(exc).__name__}: {exc}); data-dependent control flow "
            "in forward() is not supported, move it out of the network"
        ) from exc
    as_written = fold_batchnorm(traced)
    # The layers (and the streaks, whose MACs they count) run a rewritten copy; dense mode runs the network as it
    # was written, so that a dense baseline is that network.
    folded = split_pointwise_over_upsample(as_written)  # as_written itself when nothing is rewritten
    layers, outputs, tuple_output = _build_layers(folded)
    _mark_input_followers(layers)
    as_written = as_written.to(memory_format=CL)
    folded = as_written if folded is as_written else folded.to(memory_format=CL)
    skip = SkipModel(folded, layers, outputs, tuple_output, threshold, block, backend, break_even, as_written)
    skip.noise_margin = noise_margin
    skip.deep_scale = deep_scale
    if module_scales:
        skip.module_scales = module_scales
    return skip


def _mark_input_followers(layers: list[Layer]) -> None:
    """Set ``follows_input`` on the cheap pointwise convolutions (see FOLLOW_MAX_MACS).

    ``layers`` is in topological order; walking it backwards, a layer's downstream is cheap when each consumer is a
    follower itself, or a non-convolution whose own downstream is cheap; it keeps positions when each consumer is a
    convolution, or an elementwise (binary) layer whose own downstream keeps positions.
    """
    consumers: list[list[int]] = [[] for _ in layers]
    for index, layer in enumerate(layers):
        for i in layer.inputs:
            consumers[i].append(index)
    cheap_downstream = [True] * len(layers)
    keeps_positions = [True] * len(layers)
    for index in range(len(layers) - 1, -1, -1):
        cheap_downstream[index] = all(
            layers[j].follows_input if isinstance(layers[j], ConvLayer) else cheap_downstream[j]
            for j in consumers[index]
        )
        keeps_positions[index] = all(
            isinstance(layers[j], ConvLayer) or (isinstance(layers[j], BinaryLayer) and keeps_positions[j])
            for j in consumers[index]
        )
        layer = layers[index]
        if isinstance(layer, ConvLayer):
            layer.follows_input = (
                layer.pointwise
                and layer.macs_per_position <= FOLLOW_MAX_MACS
                and (cheap_downstream[index] or keeps_positions[index])
            )


def _build_layers(gm: torch.fx.GraphModule) -> tuple[list[Layer], list[int], bool]:
    modules = dict(gm.named_modules())
    layers: list[Layer] = []
    index: dict[torch.fx.Node, int] = {}
    outputs: list[int] = []
    tuple_output = False

    def add(node: torch.fx.Node, layer: Layer) -> None:
        index[node] = len(layers)
        layers.append(layer)

    def source(node: torch.fx.Node, arg: object) -> int:
        if not isinstance(arg, torch.fx.Node) or arg not in index:
            raise UnsupportedOperationError(
                f"node {node.name!r} ({_describe(node)}) takes {arg!r} where a feature map was expected"
            )
        return index[arg]

    def fuse_activation(node: torch.fx.Node, act: Activation) -> bool:
        """Fold an activation into the conv/binary layer that produced its sole input."""
        parent = node.args[0]
        if not isinstance(parent, torch.fx.Node) or len(parent.users) != 1 or parent not in index:
            return False
        layer = layers[index[parent]]
        if isinstance(layer, ConvLayer | BinaryLayer) and layer.act is None and index[parent] == len(layers) - 1:
            layer.act = act
            index[node] = index[parent]
            return True
        return False

    def pointwise(node: torch.fx.Node, act: Activation) -> None:
        if not fuse_activation(node, act):
            add(node, PointwiseLayer(node.name, [source(node, node.args[0])], act.fn, act.name))

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if layers:
                raise UnsupportedOperationError(
                    f"node {node.name!r}: the model takes more than one input; a SkipModel takes one image tensor"
                )
            add(node, InputLayer(node.name, []))
        elif node.op == "output":
            result = node.args[0]
            tuple_output = isinstance(result, tuple | list)
            outputs = [source(node, r) for r in (result if tuple_output else [result])]
        elif node.op == "call_module":
            _module_node(node, modules[node.target], add, source, pointwise, index)
        elif node.op == "call_function":
            _function_node(node, add, source, pointwise)
        elif node.op == "call_method" and node.target in _ACT_METHODS:
            name, fn, code = _ACT_METHODS[node.target]
            pointwise(node, Activation(name, fn, code))
        elif node.op == "call_method" and node.target == "contiguous":
            index[node] = source(node, node.args[0])
        else:
            raise _unsupported(node)
    return layers, outputs, tuple_output


def _describe(node: torch.fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", None) or str(target)
    return f"{node.op} {name}"


def _unsupported(node: torch.fx.Node, why: str = "") -> UnsupportedOperationError:
    detail = f" ({why})" if why else ""
    return UnsupportedOperationError(
        f"node {node.name!r}: {_describe(node)} is not supported by skip conversion{detail}. Supported: {SUPPORTED}"
    )


def _module_node(node, module, add, source, pointwise, index) -> None:
    args = node.args
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise _unsupported(node, f"padding_mode={module.padding_mode!r}; only zeros padding")
        conv = module
        if isinstance(module.padding, str):
            conv = copy.copy(module)
            conv.padding = _explicit_padding(node, module)
        add(node, ConvLayer(node.name, [source(node, args[0])], conv, None))
    elif isinstance(module, nn.BatchNorm2d):
        scale = module.weight.detach() / torch.sqrt(module.running_var + module.eps)
        shift = module.bias.detach() - module.running_mean * scale
        add(node, PointwiseLayer(node.name, [source(node, args[0])], lambda t, s=scale, b=shift: t * s + b, "bn"))
    elif type(module) in _ACT_MODULES:
        pointwise(node, _ACT_MODULES[type(module)](module))
    elif isinstance(module, _IDENTITY_MODULES):
        index[node] = source(node, args[0])
    elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        kind = "max" if isinstance(module, nn.MaxPool2d) else "avg"
        options = dict(
            kernel_size=module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            ceil_mode=module.ceil_mode,
            dilation=getattr(module, "dilation", 1),
            return_indices=getattr(module, "return_indices", False),
            count_include_pad=getattr(module, "count_include_pad", True),
            divisor_override=getattr(module, "divisor_override", None),
        )
        add(node, _pool(node, kind, source(node, args[0]), options))
    elif isinstance(module, nn.Upsample):
        align = module.align_corners
        add(node, _upsample(node, source(node, args[0]), module.mode, module.scale_factor, module.size, align))
    else:
        raise _unsupported(node, f"module type {type(module).__name__}")


def _function_node(node, add, source, pointwise) -> None:
    target, args, kwargs = node.target, node.args, dict(node.kwargs)
    if target in _ACT_FUNCTIONS:
        name, fn, code = _ACT_FUNCTIONS[target]
        kwargs.pop("inplace", None)
        extra = args[1:]
        if any(isinstance(a, torch.fx.Node) for a in (*extra, *kwargs.values())):
            raise _unsupported(node, "activation parameters must be constants")
        if extra or kwargs:
            fn, code = partial(fn, *extra, **kwargs), 0
        pointwise(node, Activation(name, fn, code))
    elif target in _BINARY:
        name, fn = _BINARY[target]
        if kwargs.get("alpha", 1) != 1:
            raise _unsupported(node, "alpha is not supported")
        a, b = args[0], args[1]
        nodes = [isinstance(v, torch.fx.Node) for v in (a, b)]
        if all(nodes):
            add(node, BinaryLayer(node.name, [source(node, a), source(node, b)], fn, name, None))
        elif any(nodes) and all(isinstance(v, torch.fx.Node | int | float) for v in (a, b)):
            if nodes[0]:
                op = partial(lambda t, c, f: f(t, c), c=b, f=fn)
                inp = a
            else:
                op = partial(lambda t, c, f: f(c, t), c=a, f=fn)
                inp = b
            add(node, PointwiseLayer(node.name, [source(node, inp)], op, f"{name}_scalar"))
        else:
            raise _unsupported(node, "operands must be feature maps or numbers")
    elif target in (torch.cat, torch.concat):
        tensors = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if dim not in (1, -3):
            raise _unsupported(node, f"concatenation along dim {dim}; only channels (dim=1)")
        add(node, ConcatLayer(node.name, [source(node, t) for t in tensors]))
    elif target in (F.max_pool2d, F.avg_pool2d, torch.max_pool2d):
        kind = "max" if target in (F.max_pool2d, torch.max_pool2d) else "avg"
        names = (
            ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
            if kind == "max"
            else ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]
        )
        options = dict(zip(names, args[1:], strict=False)) | kwargs
        add(node, _pool(node, kind, source(node, args[0]), options))
    elif target is F.interpolate:
        names = ["size", "scale_factor", "mode", "align_corners"]
        o = dict(zip(names, args[1:], strict=False)) | kwargs
        add(
            node,
            _upsample(
                node, source(node, args[0]), o.get("mode", "nearest"), o.get("scale_factor"), o.get("size"),
                o.get("align_corners"),
            ),
        )  # fmt: skip
    else:
        raise _unsupported(node)


def _explicit_padding(node, conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding == "valid":
        return (0, 0)
    pads = []
    for k, d in zip(conv.kernel_size, conv.dilation, strict=True):
        if (d * (k - 1)) % 2:
            raise _unsupported(node, "padding='same' with an even receptive field (asymmetric padding)")
        pads.append(d * (k - 1) // 2)
    return (pads[0], pads[1])


def _pool(node, kind: str, src: int, o: dict) -> PoolLayer:
    if o.get("ceil_mode"):
        raise _unsupported(node, "ceil_mode=True")
    if o.get("return_indices"):
        raise _unsupported(node, "return_indices=True")
    if o.get("divisor_override") is not None:
        raise _unsupported(node, "divisor_override")
    kernel = _pair(o["kernel_size"])
    stride = _pair(o.get("stride") or o["kernel_size"])
    padding = _pair(o.get("padding", 0))
    if kind == "avg" and not o.get("count_include_pad", True) and padding != (0, 0):
        raise _unsupported(node, "count_include_pad=False with padding")
    dilation = _pair(o.get("dilation", 1)) if kind == "max" else (1, 1)
    return PoolLayer(node.name, [src], kind, kernel, stride, padding, dilation)


def _upsample(node, src: int, mode: str, scale_factor, size, align_corners) -> UpsampleLayer:
    if mode not in ("nearest", "bilinear"):
        raise _unsupported(node, f"mode={mode!r}; only nearest and bilinear")
    if size is not None or scale_factor is None:
        raise _unsupported(node, "size=...; give an integer scale_factor instead")
    factors = {float(scale_factor)} if isinstance(scale_factor, int | float) else {float(s) for s in scale_factor}
    if len(factors) != 1 or not next(iter(factors)).is_integer() or next(iter(factors)) < 1:
        raise _unsupported(node, f"scale_factor={scale_factor!r}; only one integer factor for both axes")
    return UpsampleLayer(node.name, [src], mode, int(next(iter(factors))), bool(align_corners))
