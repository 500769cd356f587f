"""Active position sets and the per-resolution scratch that the layers of one grid share.

An active set is a sorted int32 tensor of flat positions ``y * W + x`` on one grid, or ``EVERYWHERE`` (``None``)
when every position is active (key frames). Sets are derived layer to layer from the producer's set in O(active)
work: the kernels collect a set in a byte mask of their own (``skipconv_kernels.cpp``, ``PositionMask``, and the
gate's masks its threads share), and the gates mark their blocks in stamp arrays allocated once per resolution and
shared by every layer on that grid, so no layer touches a full-size tensor on a sparse frame.
"""

from __future__ import annotations

from typing import Final

import torch

Positions = torch.Tensor | None
"""Sorted int32 flat positions, or EVERYWHERE."""

EVERYWHERE: Final = None

_STAMP_LIMIT = 2**31 - 2


def count(positions: Positions, height: int, width: int) -> int:
    """Number of active positions on an ``height`` x ``width`` grid."""
    return height * width if positions is None else int(positions.numel())


class GridScratch:
    """The gates' block stamp arrays per grid size and the stamp counter that makes each marking pass unique.

    A kernel marks position ``p`` of a grid by writing its stamp into ``stamps(h, w)[p]``; the next pass uses a new
    stamp, so the arrays are never cleared. Layers on the same grid share one array because they run one at a time.
    """

    def __init__(self) -> None:
        self._stamps: dict[tuple[int, int], torch.Tensor] = {}
        self._everywhere: dict[tuple[int, int], torch.Tensor] = {}
        self._next = 1
        self.none = empty_positions()

    def stamps(self, height: int, width: int) -> torch.Tensor:
        """The (height * width,) int32 stamp array of a grid of gate blocks."""
        key = (height, width)
        if key not in self._stamps:
            self._stamps[key] = torch.zeros(height * width, dtype=torch.int32)
        return self._stamps[key]

    def stamp(self, count: int = 1) -> int:
        """A stamp no array holds yet; with ``count``, the first of that many consecutive ones."""
        if self._next + count > _STAMP_LIMIT:
            for arr in self._stamps.values():
                arr.zero_()
            self._next = 1
        self._next += count
        return self._next - count

    def everywhere(self, height: int, width: int) -> torch.Tensor:
        """Every position of that grid, as a position list (cached)."""
        key = (height, width)
        if key not in self._everywhere:
            self._everywhere[key] = torch.arange(height * width, dtype=torch.int32)
        return self._everywhere[key]

    def nbytes(self) -> int:
        arrays = [*self._stamps.values(), *self._everywhere.values()]
        return sum(a.numel() * a.element_size() for a in arrays)

    def clear(self) -> None:
        """Forget every grid (the resolution changed)."""
        self._stamps.clear()
        self._everywhere.clear()
        self._next = 1


def empty_positions() -> torch.Tensor:
    """An empty active set."""
    return torch.empty(0, dtype=torch.int32)
