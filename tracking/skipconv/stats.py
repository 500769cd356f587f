"""Exact per-frame accounting of the work a SkipModel executed, per layer and in total."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields


class Path(enum.Enum):
    """How a layer ran on the last frame."""

    IDLE = "idle"  # nothing changed at its input: no work
    SPARSE = "sparse"  # recomputed only the active positions
    DENSE = "dense"  # active fraction above the layer's break-even, or a key frame


@dataclass(slots=True)
class LayerStats:
    """One layer on the last frame. MACs count multiply-accumulates of convolutions (0 for other ops)."""

    name: str
    op: str
    path: Path = Path.IDLE
    active: int = 0  # output positions recomputed
    positions: int = 0  # output positions of the layer
    macs: int = 0  # executed
    dense_macs: int = 0  # a dense run would execute
    updated_inputs: int = 0  # reference-input positions refreshed by the gate (convolutions)
    pending_inputs: int = 0  # changed input positions still waiting below the threshold (convolutions)

    @property
    def active_fraction(self) -> float:
        return self.active / self.positions if self.positions else 0.0

    def as_dict(self) -> dict:
        # Field by field rather than dataclasses.asdict, whose deep copy costs ~50 µs a layer: stats are read every
        # frame of every camera.
        d = {name: getattr(self, name) for name in _FIELDS}
        d["path"] = self.path.value
        d["active_fraction"] = self.active_fraction
        return d


_FIELDS = tuple(f.name for f in fields(LayerStats))


def summarize(layers: list[LayerStats], per_layer: bool = True) -> dict:
    """The frame summary ``{"macs", "dense_macs", "active_fraction", "per_layer"}`` (``per_layer=False``: that
    list empty, for callers that want the totals every frame).

    ``active_fraction`` is MAC-weighted: executed MACs over dense MACs.
    """
    macs = sum(s.macs for s in layers)
    dense = sum(s.dense_macs for s in layers)
    return {
        "macs": macs,
        "dense_macs": dense,
        "active_fraction": macs / dense if dense else 0.0,
        "per_layer": [s.as_dict() for s in layers] if per_layer else [],
    }
