"""A per-machine record of the measured break-even active fractions.

Timing every convolution's sparse path against its dense one takes about half a second on the first frame of a
resolution: a live tracker would drop frames for it at every start. The values depend on the machine, the thread
count, the backend and the layer shapes only, so they are kept in a small JSON file next to the compiled kernels
(one folder per CPU type) and reused; delete the file to measure again (e.g. after measuring on a busy machine).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tracking.skipconv.kernels import Backend, cache_dir

if TYPE_CHECKING:
    from tracking.skipconv.layers import ConvLayer

log = logging.getLogger(__name__)


def path() -> Path:
    """The record's file."""
    return cache_dir() / "break_even.json"


def signature(convs: list[ConvLayer], resolution: tuple[int, int], backend: Backend) -> str:
    """What the measured values depend on, hashed: layer shapes and geometry, input size, backend, threads."""
    layers = [(c.name, tuple(c.weight.shape), c.stride, c.padding, c.dilation, c.groups) for c in convs]
    key = repr((layers, resolution, backend.value, torch.get_num_threads()))
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def load(key: str, names: list[str]) -> dict[str, float] | None:
    """The recorded values for ``key`` when every layer in ``names`` has one; None otherwise."""
    try:
        values = json.loads(path().read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(values, dict) or not all(isinstance(values.get(n), (int, float)) for n in names):
        return None
    return {n: float(values[n]) for n in names}


def store(key: str, values: dict[str, float]) -> None:
    """Record ``values`` under ``key`` (atomic replace; a failure to write only costs a re-measure next time)."""
    target = path()
    try:
        record = json.loads(target.read_text()) if target.is_file() else {}
        if not isinstance(record, dict):
            record = {}
    except (OSError, ValueError):
        record = {}
    record[key] = values
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, target)
    except OSError as exc:
        log.warning("could not record the break-even fractions in %s (%s); they will be measured again", target, exc)
