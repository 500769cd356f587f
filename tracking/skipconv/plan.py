"""A sparse frame of a SkipModel in one C++ call: ``FramePlan`` (skipconv_kernels.cpp) holds the layers' tensors and
runs their per-layer rules (tracking/skipconv/layers.py) without Python between the kernels, and without the GIL.

Python costs 10-25 µs a layer between the kernels (about a quarter of a still camera's frame, docs/skipconv.md),
and while it runs it holds the GIL, so the two cameras' networks in threads (``NetworkKeypointProvider``) mostly
took turns. The plan covers a frame's sparse path, from the input layer's compare of the frame with the last one:
gated and following convolutions with a fused activation (none, ReLU, ReLU6) and groups 1, add/sub/mul,
upsampling. At the first layer that needs more (a dense run, a refresh its gate asks for, a change too broad for
the sparse path) it hands the frame back, and the layers go on in Python from there: the plan mirrors their rules,
and the tests hold it to the same outputs and stats.

A plan holds the tensors the layers hold when it is built; anything that replaces one (a key frame, a dense run,
a new threshold) makes the SkipModel drop it, and it is built again once a frame has run without a dense layer.
"""

from __future__ import annotations

from tracking.skipconv.layers import UPDATE_FLOOR, BinaryLayer, Context, ConvLayer, InputLayer, Layer, UpsampleLayer
from tracking.skipconv.masks import Positions
from tracking.skipconv.stats import Path

_PATHS = (Path.IDLE, Path.SPARSE)
_DIRTY_GATE = 2  # the stats row's last column: 1 the gate ran, 2 it ran at a threshold (its state is dirty)


def supported(layers: list[Layer]) -> bool:
    """Whether every layer past the input is one the plan runs."""
    for layer in layers[1:]:
        if isinstance(layer, ConvLayer):
            if layer.groups != 1 or (layer.act is not None and not layer.act.code):
                return False
        elif isinstance(layer, BinaryLayer):
            if layer.act is not None and not layer.act.code:
                return False
        elif not isinstance(layer, UpsampleLayer):
            return False
    return isinstance(layers[0], InputLayer)


def build(module: object, layers: list[Layer], ctx: Context) -> object | None:
    """A ``FramePlan`` of ``layers`` as they are now, or None when a layer's state needs Python first (a gate
    whose block energies are stale)."""
    if any(isinstance(layer, ConvLayer) and not layer.follows_input and layer.energy_stale for layer in layers):
        return None
    # Writable buffers first, then the plan: a copy made for writing replaces the tensor the plan must hold.
    for layer in layers:
        layer.writable()
        if isinstance(layer, ConvLayer) and not layer.follows_input:
            layer.own_reference()
    plan = module.FramePlan(len(layers))
    plan.add_input(layers[0].hwc, ctx.scratch.everywhere(*layers[0].size))
    for index, layer in enumerate(layers[1:], start=1):
        xs = [layers[i] for i in layer.inputs]
        if isinstance(layer, ConvLayer):
            _add_conv(plan, index, layer, xs[0], ctx)
        elif isinstance(layer, BinaryLayer):
            code = layer.act.code if layer.act else 0
            plan.add_binary(index, layer.inputs, xs[0].hwc, xs[1].hwc, layer.hwc, layer.CODES[layer.op], code)
        else:
            bilinear = layer.mode == "bilinear"
            plan.add_upsample(index, layer.inputs, xs[0].hwc, layer.hwc, layer.factor, bilinear, layer.align_corners)
    return plan


def _add_conv(plan: object, index: int, layer: ConvLayer, x: Layer, ctx: Context) -> None:
    act = layer.act.code if layer.act else 0
    if layer.follows_input:
        layer.xhat, layer.xhat_hwc = x.out, x.hwc
        none = ctx.scratch.none
        plan.add_conv(
            index, False, layer.inputs, x.hwc, layer.hwc, x.hwc, none, none, none, list(layer.geom),
            0.0, 0.0, 1.0, 0.0, 1, layer.break_even, False, False, 0, layer.wmat_lanes, layer.bias_lanes, act,
            layer.macs_per_position,
        )  # fmt: skip
        return
    exact = layer.eps2_block == 0.0
    tail = layer.noise_tail() if layer.reads_camera else 0.0
    plan.add_conv(
        index, True, layer.inputs, x.hwc, layer.hwc, layer.xhat_hwc, layer.r2, layer.energy, layer.block_stamps,
        list(layer.geom), layer.eps2_block, tail, float(layer.block_field),
        UPDATE_FLOOR, layer.block_used, layer.break_even, exact or layer.dense_frames_left > 0, layer.reads_camera,
        layer.pending_count, layer.wmat_lanes, layer.bias_lanes, act, layer.macs_per_position,
    )  # fmt: skip


def run(
    plan: object, layers: list[Layer], changes: list[Positions], ctx: Context, keep: int, held: bool
) -> tuple[int, bool]:
    """Run ``plan`` on this frame, the input layer's compare included: fills ``changes`` for the layers it ran
    (after a whole frame only layer ``keep``'s). Returns (the first layer Python must step, 0 when the frame did not
    change; whether the plan ran the whole frame). After a whole frame the layers' stats and gate state stay in the
    plan until ``sync`` (the SkipModel calls it before anything reads them; ``held``: the plan holds some now);
    when a layer's gate asked for more than a sparse update, that layer finishes its step here, in Python, with the
    layers before it synced."""
    source = layers[0]
    source.before_compare(ctx)
    stamp = ctx.scratch.stamp(len(layers))
    count, stop, planned, gate_ran, active, updated, pending, refresh, stats = plan.run(
        source.frame, source.DENSE_FRACTION, stamp, ctx.noise_margin, ctx.noise_energy, ctx.camera_wide_change, keep
    )
    if stop == len(layers):
        if 0 < keep < stop:
            changes[keep] = planned[keep]
        return stop, True
    if held:
        sync(plan, layers)  # the whole frames before this one
    source.record_compare(count)
    if stop == 0:
        return 0, True
    changes[:stop] = planned[:stop]
    _write_rows(layers, stats, 1, stop)
    if gate_ran:
        layer = layers[stop]
        layer.pending_count = pending
        layer.gate_dirty = layer.gate_dirty or stats[stop][7] == _DIRTY_GATE
        changes[stop] = layer.after_gate(layers[layer.inputs[0]], ctx, 0.0, active, updated, refresh)
        return stop + 1, False
    return stop, False


def sync(plan: object, layers: list[Layer]) -> None:
    """Write the stats of the last whole frame ``plan`` ran and the gate state of every whole frame since the last
    sync into the layers (each only once: an unchanged frame after a synced one costs no more than before)."""
    rows = plan.take_stats()
    if rows:
        layers[0].record_compare(rows[0][1])
        _write_rows(layers, rows, 1, len(layers))
    for index, pending, code in plan.take_gate_state():
        _gate_ran(layers[index], pending, code)


def _write_rows(layers: list[Layer], rows: list, start: int, stop: int) -> None:
    """Layers [start, stop) take their stats rows; a layer whose gate ran, its gate state."""
    for index in range(start, stop):
        layer = layers[index]
        row = rows[index]
        s = layer.stats
        s.path = _PATHS[row[0]]
        s.active = row[1]
        s.positions = row[2]
        s.macs = row[3]
        s.dense_macs = row[4]
        s.updated_inputs = row[5]
        s.pending_inputs = row[6]
        if row[7]:
            _gate_ran(layer, row[6], row[7])


def _gate_ran(layer: ConvLayer, pending: int, code: int) -> None:
    """The state a gate the plan ran to the end leaves in its layer: the pending count, the dense streak length
    back to its start, and dirty residuals when it ran at a threshold (``code`` ``_DIRTY_GATE``)."""
    layer.pending_count = pending
    layer.next_streak = layer.DENSE_STREAK
    if code == _DIRTY_GATE:
        layer.gate_dirty = True
