"""The sparse kernels of the skip-convolution engine, in two interchangeable backends.

``CppKernels`` wraps a small C++/OpenMP extension (``skipconv_kernels.cpp``), compiled on first use into
``~/.cache/skiptrack/skipconv_ext-<cpu>`` (override with ``SKIPTRACK_CACHE``). ``TorchKernels`` is the same contract in
plain PyTorch: the reference that the tests compare the C++ path against, and the fallback when no compiler works.

Conventions shared by both: a feature map is an (H, W, C) float32 contiguous tensor (the NHWC memory of a
channels_last (1, C, H, W) tensor); positions are int32 flat indices ``y * W + x``, sorted ascending; ``geometry``
is ``(kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo)`` of a convolution or pooling window; the gate's stamp arrays are int32
per grid position and a call marks with its own unique ``stamp`` so nothing needs clearing.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import logging
import os
import platform
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch

from skiptrack_types import SkipTrackError

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("skipconv_kernels.cpp")


class Backend(enum.Enum):
    """Which kernels run the sparse work."""

    CPP = "cpp"
    TORCH = "torch"


class ExtensionBuildError(SkipTrackError):
    """The C++ kernels could not be compiled or loaded."""


Geometry = tuple[int, int, int, int, int, int, int, int, int, int]

LANES = 16  # output channels per vector tile of the C++ conv_rows


def pad_output_channels(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` (K, C_out) and ``bias`` (C_out,) with zero columns up to a multiple of ``LANES``, as ``conv_rows``
    takes them (done once per layer, not per frame)."""
    k, cout = weight.shape
    padded = -(-cout // LANES) * LANES
    w = torch.zeros(k, padded, dtype=torch.float32)
    w[:, :cout] = weight
    b = torch.zeros(padded, dtype=torch.float32)
    b[:cout] = bias
    return w, b


class Kernels(Protocol):
    def select_update(
        self,
        X: torch.Tensor,
        Xhat: torch.Tensor,
        changes: torch.Tensor,
        all_changed: bool,
        r2: torch.Tensor,
        energy: torch.Tensor,
        stamp_blocks: torch.Tensor,
        stamp: int,
        geometry: Geometry,
        eps2_block: float,
        block: int,
        refresh_fraction: float,
        pending: int,
        update_floor: float,
    ) -> tuple[torch.Tensor, int, int, bool]:
        """The norm gate, incremental in ``changes``: (outputs to recompute, inputs updated, inputs still pending,
        refresh). ``r2`` (Hi * Wi float32) and ``energy`` (blocks float64) are the layer's gate state; in a fired
        block only inputs whose residual is at least ``update_floor`` update."""
        ...

    def dilate_positions(self, inputs: torch.Tensor, Hi: int, Wi: int, geometry: Geometry) -> torch.Tensor: ...

    def upsample_positions(
        self,
        inputs: torch.Tensor,
        Wi: int,
        factor: int,
        radius: int,
        Ho: int,
        Wo: int,
    ) -> torch.Tensor: ...

    def union_positions(self, lists: list[torch.Tensor], n: int) -> torch.Tensor:
        """Sorted union of position lists over one grid of ``n`` positions."""
        ...

    def gather_windows(
        self, X: torch.Tensor, outputs: torch.Tensor, geometry: Geometry, pad_value: float
    ) -> torch.Tensor: ...

    def scatter_rows(self, Z: torch.Tensor, outputs: torch.Tensor, rows: torch.Tensor) -> None: ...

    def conv_rows(
        self,
        Xhat: torch.Tensor,
        outputs: torch.Tensor,
        geometry: Geometry,
        weight: torch.Tensor,
        bias: torch.Tensor,
        Z: torch.Tensor,
        act: int,
    ) -> None:
        """Z[outputs] = act(im2col(Xhat) @ weight + bias) with ``weight`` and ``bias`` from ``pad_output_channels``."""
        ...

    def changed_positions(self, X: torch.Tensor, prev: torch.Tensor, dense_fraction: float) -> tuple[torch.Tensor, int]:
        """(sorted positions where X differs from prev, their count); prev takes X's values. Above
        ``dense_fraction`` the list comes back empty (with the count)."""
        ...

    def copy_positions(self, X: torch.Tensor, Z: torch.Tensor, positions: torch.Tensor, offset: int) -> None: ...

    def binary_positions(
        self, A: torch.Tensor, B: torch.Tensor, Z: torch.Tensor, positions: torch.Tensor, op: int, act: int
    ) -> None: ...

    def upsample_at(
        self, X: torch.Tensor, Z: torch.Tensor, positions: torch.Tensor, factor: int, bilinear: bool, align: bool
    ) -> None: ...


KERNEL_FUNCTIONS = (
    "select_update", "dilate_positions", "upsample_positions", "union_positions", "gather_windows",
    "scatter_rows", "conv_rows", "changed_positions", "copy_positions", "binary_positions", "upsample_at",
)  # fmt: skip
"""The functions every backend provides (the ``Kernels`` protocol)."""


class CppKernels:
    """The compiled kernels; see ``skipconv_kernels.cpp`` for each function's contract. The module's functions
    are bound as they are (geometry tuples convert to the C++ vectors directly): a Python wrapper per call would
    cost microseconds on every layer of every frame."""

    def __init__(self, module: object) -> None:
        for name in KERNEL_FUNCTIONS:
            setattr(self, name, getattr(module, name))
        self.FramePlan = module.FramePlan  # a whole sparse frame in one call (tracking/skipconv/plan.py)


class TorchKernels:
    """The reference implementation: vectorised PyTorch, no per-position Python loops."""

    @staticmethod
    def _outputs_of(inputs: torch.Tensor, Wi: int, g: Geometry) -> tuple[torch.Tensor, torch.Tensor]:
        """(input index into ``inputs``, output position) for every window containing each input position."""
        kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo = g
        p = inputs.long()
        y, x = p // Wi, p % Wi
        src, dst = [], []
        for ky in range(kh):
            ty = y + ph - ky * dh
            for kx in range(kw):
                tx = x + pw - kx * dw
                ok = (ty >= 0) & (ty % sh == 0) & (ty // sh < Ho) & (tx >= 0) & (tx % sw == 0) & (tx // sw < Wo)
                src.append(torch.nonzero(ok).flatten())
                dst.append((ty[ok] // sh) * Wo + tx[ok] // sw)
        return torch.cat(src), torch.cat(dst)

    def select_update(self, X, Xhat, changes, all_changed, r2, energy, s_blk, stamp, geometry, *rest):
        """Recomputes every block's energy from the whole r2 state: same results as the incremental C++ gate."""
        eps2, block, refresh, _, floor = rest
        Hi, Wi, C = X.shape
        x2, h2 = X.view(-1, C), Xhat.view(-1, C)
        idx = torch.arange(Hi * Wi) if all_changed else torch.unique(changes.long())
        new = (x2[idx] - h2[idx]).pow(2).sum(1)
        new = torch.where(torch.isnan(new), torch.full_like(new, float("inf")), new)
        r2_new = r2.clone()
        r2_new[idx] = new
        if eps2 <= 0:
            update = idx[new > 0]
        else:
            block_energy, changed, psrc, pblk = self._block_energy(r2_new, Wi, geometry, block)
            update = changed[torch.unique(psrc[block_energy[pblk] > eps2])]
            update = update[r2_new[update] >= floor]
        if len(update) > refresh * Hi * Wi:
            return changes[:0].int(), len(update), 0, True
        r2.copy_(r2_new)
        r2[update] = 0.0
        if eps2 <= 0:
            r2.zero_()
        else:
            energy.copy_(self._block_energy(r2, Wi, geometry, block)[0])
        h2[update] = x2[update]
        _, dst = self._outputs_of(update, Wi, geometry)
        return torch.unique(dst).int(), len(update), int((r2 > 0).sum()), False

    def _block_energy(self, r2, Wi, geometry, block):
        """(every block's summed r2, positions with r2 > 0, (index into them, block) pairs of window membership)."""
        Ho, Wo = geometry[8], geometry[9]
        changed = torch.nonzero(r2 > 0).flatten()
        src, dst = self._outputs_of(changed, Wi, geometry)
        nbw, nbh = (Wo + block - 1) // block, (Ho + block - 1) // block
        n_blocks = nbw * nbh
        blk = (dst // Wo // block) * nbw + (dst % Wo) // block
        pairs = torch.unique(src * n_blocks + blk)
        psrc, pblk = pairs // n_blocks, pairs % n_blocks
        energy = torch.zeros(n_blocks, dtype=torch.float64)
        energy.index_add_(0, pblk, r2[changed][psrc].double())
        return energy, changed, psrc, pblk

    def dilate_positions(self, inputs, Hi, Wi, geometry):
        _, dst = self._outputs_of(inputs, Wi, geometry)
        return torch.unique(dst).int()

    def upsample_positions(self, inputs, Wi, factor, radius, Ho, Wo):
        p = inputs.long()
        y, x = p // Wi, p % Wi
        span = torch.arange(-radius * factor, (1 + radius) * factor)
        oy = (y * factor)[:, None, None] + span[None, :, None]
        ox = (x * factor)[:, None, None] + span[None, None, :]
        ok = (oy >= 0) & (oy < Ho) & (ox >= 0) & (ox < Wo)
        return torch.unique((oy * Wo + ox)[ok]).int()

    def union_positions(self, lists, n):
        return torch.unique(torch.cat([t.long() for t in lists])).int()

    def gather_windows(self, X, outputs, geometry, pad_value):
        kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo = geometry
        Hi, Wi, C = X.shape
        o = outputs.long()
        oy, ox = o // Wo, o % Wo
        ky = torch.arange(kh) * dh
        kx = torch.arange(kw) * dw
        y = (oy * sh - ph)[:, None, None] + ky[None, :, None]
        x = (ox * sw - pw)[:, None, None] + kx[None, None, :]
        inside = (y >= 0) & (y < Hi) & (x >= 0) & (x < Wi)
        flat = (y.clamp(0, Hi - 1) * Wi + x.clamp(0, Wi - 1)).reshape(-1)
        rows = X.reshape(-1, C)[flat].reshape(len(o), kh * kw, C)
        rows = torch.where(inside.reshape(len(o), kh * kw, 1), rows, torch.full_like(rows, pad_value))
        return rows.reshape(len(o), kh * kw * C)

    def scatter_rows(self, Z, outputs, rows):
        Z.view(-1, Z.shape[2]).index_copy_(0, outputs.long(), rows)

    def conv_rows(self, Xhat, outputs, geometry, weight, bias, Z, act):
        cout = Z.shape[2]
        rows = self.gather_windows(Xhat, outputs, geometry, 0.0) @ weight[:, :cout] + bias[:cout]
        self.scatter_rows(Z, outputs, _ACTS[act](rows).contiguous())

    def changed_positions(self, X, prev, dense_fraction):
        C = X.shape[2]
        x2, p2 = X.reshape(-1, C), prev.view(-1, C)
        changed = torch.nonzero((x2 != p2).any(1)).flatten()
        p2[changed] = x2[changed]
        if len(changed) > dense_fraction * len(x2):
            return changed[:0].int(), len(changed)
        return changed.int(), len(changed)

    def copy_positions(self, X, Z, positions, offset):
        p = positions.long()
        Z.view(-1, Z.shape[2])[p, offset : offset + X.shape[2]] = X.reshape(-1, X.shape[2])[p]

    def binary_positions(self, A, B, Z, positions, op, act):
        p = positions.long()
        C = Z.shape[2]
        a, b = A.reshape(-1, C)[p], B.reshape(-1, C)[p]
        r = (torch.add, torch.sub, torch.mul)[op](a, b)
        self.scatter_rows(Z, positions, _ACTS[act](r).contiguous())

    def upsample_at(self, X, Z, positions, factor, bilinear, align):
        Hi, Wi, C = X.shape
        Ho, Wo = Z.shape[0], Z.shape[1]
        p = positions.long()
        oy, ox = p // Wo, p % Wo
        flat = X.reshape(-1, C)
        if not bilinear:
            rows = flat[(oy // factor).clamp_max(Hi - 1) * Wi + (ox // factor).clamp_max(Wi - 1)]
        else:

            def axis(dst, n_in, n_out):
                d = dst.float()
                if align:
                    src = d * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
                else:
                    src = (d + 0.5) / factor - 0.5
                    src = src.clamp_min(0.0)
                i0 = src.long().clamp_max(n_in - 1)
                i1 = (i0 + 1).clamp_max(n_in - 1)
                return i0, i1, (src - i0).unsqueeze(1)

            y0, y1, ly = axis(oy, Hi, Ho)
            x0, x1, lx = axis(ox, Wi, Wo)
            top = (1 - lx) * flat[y0 * Wi + x0] + lx * flat[y0 * Wi + x1]
            bottom = (1 - lx) * flat[y1 * Wi + x0] + lx * flat[y1 * Wi + x1]
            rows = (1 - ly) * top + ly * bottom
        self.scatter_rows(Z, positions, rows.contiguous())


_ACTS = {0: lambda t: t, 1: lambda t: t.clamp_min(0.0), 2: lambda t: t.clamp(0.0, 6.0)}


_lock = threading.Lock()
_cpp: CppKernels | None = None


def cache_dir() -> Path:
    """Where the compiled extension lives: $SKIPTRACK_CACHE or ~/.cache/skiptrack, one folder per CPU type (it is
    compiled with -march=native, so a home folder shared between machines must not mix builds)."""
    root = os.environ.get("SKIPTRACK_CACHE") or Path.home() / ".cache" / "skiptrack"
    return Path(root) / f"skipconv_ext-{_cpu_tag()}"


def _cpu_tag() -> str:
    """A short hash of the CPU's model and instruction-set flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.startswith(("model name", "flags"))][:2]
    key = "\n".join(wanted) or f"{platform.machine()} {platform.processor()}"
    return hashlib.sha1(key.encode()).hexdigest()[:10]


BUILD_FLAGS = {"extra_cflags": ["-O3", "-march=native", "-fopenmp"], "extra_ldflags": ["-fopenmp"]}
"""How the C++ kernels are compiled (for this machine's instruction set, with OpenMP)."""


def load_cpp() -> CppKernels:
    """Compile (first use only, about a minute) and load the C++ kernels."""
    global _cpp
    with _lock:
        if _cpp is None:
            from torch.utils import cpp_extension

            build = cache_dir()
            build.mkdir(parents=True, exist_ok=True)
            with _build_lock(build):
                # torch's own lock file, which its builder waits on forever: every SkipTrack process builds while
                # holding the build lock, so one found now was left by a build that was killed (Ctrl-C, a timeout)
                (build / "lock").unlink(missing_ok=True)
                if any(build.glob("*.so")):
                    log.info("loading the skip-convolution C++ kernels from %s", build)
                else:
                    log.warning(
                        "compiling the skip-convolution C++ kernels into %s (first use only: about a minute)", build
                    )
                try:
                    module = cpp_extension.load(
                        name="skiptrack_skipconv_kernels",
                        sources=[str(_SOURCE)],
                        build_directory=str(build),
                        verbose=False,
                        **BUILD_FLAGS,
                    )
                except (OSError, RuntimeError, ImportError) as exc:
                    raise ExtensionBuildError(
                        f"could not build the skip-convolution C++ kernels in {build}: {exc}. Install a C++ "
                        "compiler and ninja, or convert with backend=Backend.TORCH"
                    ) from exc
            _cpp = CppKernels(module)
    return _cpp


@contextlib.contextmanager
def _build_lock(build: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``build`` between processes while the kernels are built and loaded. The kernel
    releases it when its holder dies, so a killed build never blocks the next one (torch's lock file would)."""
    try:
        handle = open(build / "build.flock", "w")
    except OSError as exc:
        raise ExtensionBuildError(
            f"cannot write to {build} to build the skip-convolution C++ kernels: {exc}. Set SKIPTRACK_CACHE to a "
            "writable folder"
        ) from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another process is building or loading the skip-convolution C++ kernels in %s: waiting", build)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def kernels_for(backend: Backend) -> Kernels:
    """The kernel implementation for ``backend``."""
    return load_cpp() if backend is Backend.CPP else TorchKernels()
