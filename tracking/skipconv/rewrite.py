"""Graph rewrites that make a traced network cheaper to run sparsely without changing what it computes.

``split_pointwise_over_upsample``: a 1x1 convolution over a channel concatenation that holds an upsampled map,
``conv1x1(cat([up(a), b]))``, becomes ``up(conv1x1_a(a)) + conv1x1_b(b)``. The two are equal because a 1x1
convolution and nearest or bilinear upsampling are linear and act on different axes (channels, space), and the
bias goes to one branch only (both upsamplings keep a constant map constant). The concatenation and its copies go,
the upsampling moves only the convolution's output channels, and the part over ``a`` runs at ``a``'s lower
resolution: on the keypoint network's decoder (64 channels at /8 upsampled and concatenated with 32 at /4, then
96 -> 32) the dense MACs of that layer drop from 14.7 M to 7.4 M, and a camera's skip model holds 14.2 MB of
feature maps and skip state instead of 16.8 (docs/skipconv.md).
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

log = logging.getLogger(__name__)

_CAT = (torch.cat, torch.concat)


EXAMPLE_SIDE = 64
"""Side of the square example image run once through the graph to learn each concatenated map's channel count."""


def split_pointwise_over_upsample(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``gm`` with every ``conv1x1(cat([..., up(a), ...]))`` rewritten (see the module docstring): a rewritten copy,
    or ``gm`` itself when it has no such convolution or does not run on an ``EXAMPLE_SIDE`` image."""
    if not _candidates(gm):
        return gm
    original, gm = gm, copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    first = [modules.get(u.target) for n in placeholders for u in n.users if u.op == "call_module"]
    channels = {m.in_channels for m in first if isinstance(m, nn.Conv2d)}
    if len(placeholders) != 1 or len(channels) != 1:
        return original
    example = torch.zeros(1, channels.pop(), EXAMPLE_SIDE, EXAMPLE_SIDE)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as exc:  # noqa: BLE001 - any failure only means the rewrite is skipped
        log.debug("no pointwise split: the graph did not run on a %s example (%s)", tuple(example.shape), exc)
        return original
    for node in _candidates(gm):
        _split(gm, node, modules[node.target], list(node.args[0].args[0]), modules)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    return gm


def _candidates(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """The 1x1 convolutions of ``gm`` over a concatenation (used by nothing else) that holds an upsampled map."""
    modules = dict(gm.named_modules())
    found = []
    for node in gm.graph.nodes:
        conv = modules.get(node.target) if node.op == "call_module" else None
        cat = node.args[0] if conv is not None and node.args else None
        if (
            _plain_pointwise(conv)
            and _single_use_channel_cat(cat)
            and any(_upsample_of(p, modules) is not None for p in cat.args[0])
        ):
            found.append(node)
    return found


def _plain_pointwise(module: nn.Module | None) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and module.stride == (1, 1)
        and module.groups == 1
        and module.padding in ((0, 0), "valid")
    )


def _single_use_channel_cat(node: object) -> bool:
    if not (isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in _CAT):
        return False
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return dim in (1, -3) and len(node.users) == 1


def _upsample_of(node: object, modules: dict[str, nn.Module]) -> torch.fx.Node | None:
    """The input of ``node`` when ``node`` is a nearest or bilinear upsampling by a scale factor, else None."""
    if not isinstance(node, torch.fx.Node) or not node.args:
        return None
    if node.op == "call_module" and isinstance(modules.get(node.target), nn.Upsample):
        module = modules[node.target]
        ok = module.size is None and module.scale_factor is not None and module.mode in ("nearest", "bilinear")
    elif node.op == "call_function" and node.target is F.interpolate:
        options = dict(zip(["size", "scale_factor", "mode"], node.args[1:], strict=False)) | dict(node.kwargs)
        mode = options.get("mode", "nearest")
        ok = options.get("size") is None and options.get("scale_factor") is not None and mode in ("nearest", "bilinear")
    else:
        return None
    source = node.args[0]
    return source if ok and isinstance(source, torch.fx.Node) else None


def _split(gm: torch.fx.GraphModule, node: torch.fx.Node, conv: nn.Conv2d, parts: list, modules: dict) -> None:
    """Replace ``node`` (``conv`` over ``cat(parts)``) by one 1x1 convolution per part, those over an upsampled
    map moved before the upsampling, summed."""
    weight = conv.weight.detach()
    offset = 0
    branches: list[torch.fx.Node] = []
    with gm.graph.inserting_before(node):
        for k, part in enumerate(parts):
            channels = part.meta["tensor_meta"].shape[1]
            piece = nn.Conv2d(channels, conv.out_channels, 1, bias=conv.bias is not None and k == 0)
            piece.weight.data = weight[:, offset : offset + channels].clone()
            if piece.bias is not None:
                piece.bias.data = conv.bias.detach().clone()
            offset += channels
            name = f"{node.target.replace('.', '_')}_part{k}"
            while hasattr(gm, name):  # never replace a module of the network
                name += "_"
            gm.add_submodule(name, piece)
            source = _upsample_of(part, modules)
            if source is None:
                branches.append(gm.graph.call_module(name, (part,)))
                continue
            low = gm.graph.call_module(name, (source,))
            branches.append(gm.graph.node_copy(part, lambda n, s=source, lo=low: lo if n is s else n))
        total = branches[0]
        for branch in branches[1:]:
            total = gm.graph.call_function(torch.add, (total, branch))
    node.replace_all_uses_with(total)
    gm.graph.erase_node(node)
