"""One gated layer's gate on its own: its calls recorded from the keypoint network on a source, replayed cold.

    python benchmarks/gate_replay.py --json OUT [--source synthetic:still_hand] [--frames 180] [--start 0]
                                     [--layer stem_0] [--baseline-rev REV] [--repeats 5] [--flush-mb 8]

Records every ``select_update`` call of one gated layer (the skip model runs through its Python layers, so each
call passes through the kernels object): the layer's input, held input, gate state and changes. Replays each call
from its recorded state with ``--flush-mb`` MB written in between (in ``benchmarks/network.py`` the dense model's
run pushes the skip model's state out of the caches), the input map and the change list read first (the frame's
compare, or the layer before, leaves them warm). A whole frame's time moves by a few per cent from host noise alone;
one gate's calls, replayed like this, resolve a change of a few per cent in that gate.

With ``--baseline-rev``, the kernels of that git revision are built too and the two builds alternate call by call;
their updates, outputs, held inputs and residuals must come out identical and their energies within 1e-9 (changes
that reorder additions), else the benchmark says where they differ. Reports per build the median and mean µs per
call, and ``ratio`` (this tree's median over the baseline's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from frame_plan import read_frames  # noqa: E402

from tracking.network import load_default  # noqa: E402
from tracking.skipconv.kernels import BUILD_FLAGS, CppKernels, load_cpp  # noqa: E402
from tracking.skipconv.layers import ConvLayer  # noqa: E402

KERNELS = "tracking/skipconv/skipconv_kernels.cpp"


def record(uri: str, frames: int, start_s: float, layer_name: str) -> list[dict]:
    """The calls ``layer_name``'s gate makes while the shipped skip model runs the first camera of ``uri``."""
    model = load_default(skip=True)
    engine = model.engine
    engine.use_plan = False  # the Python layers call the kernels object, where the calls can be caught
    layers = {getattr(layer, "name", None): layer for layer in engine.layers}
    layer = layers.get(layer_name)
    if not isinstance(layer, ConvLayer):
        convolutions = [name for name, each in layers.items() if isinstance(each, ConvLayer)]
        raise SystemExit(f"no convolution {layer_name!r}; the network's: {', '.join(convolutions)}")
    kernels = engine._ctx.kernels
    original = kernels.select_update
    calls: list[dict] = []

    def select_update(X, Xhat, changes, all_changed, r2, energy, stamps, stamp, geometry, *rest):
        if Xhat is getattr(layer, "xhat_hwc", None) and not all_changed:
            calls.append(
                dict(X=X.clone(), Xhat=Xhat.clone(), changes=changes.clone(), r2=r2.clone(), energy=energy.clone(),
                     stamps=stamps.clone(), stamp=stamp, geometry=list(geometry), rest=list(rest))
            )  # fmt: skip
        return original(X, Xhat, changes, all_changed, r2, energy, stamps, stamp, geometry, *rest)

    images = [cameras[0] for cameras in read_frames(uri, frames, start_s)]
    kernels.select_update = select_update
    try:
        for image in images:
            model.run(image)
    finally:
        kernels.select_update = original
    return calls


def baseline_kernels(rev: str) -> CppKernels:
    """The C++ kernels of git revision ``rev``, built into a temporary folder."""
    from torch.utils import cpp_extension

    source = subprocess.run(["git", "show", f"{rev}:{KERNELS}"], cwd=ROOT, capture_output=True, text=True)
    if source.returncode:
        raise SystemExit(f"cannot read {KERNELS} at {rev}: {source.stderr.strip()}")
    folder = Path(tempfile.mkdtemp(prefix="skiptrack_baseline_"))
    path = folder / "baseline_kernels.cpp"
    path.write_text(source.stdout)
    module = cpp_extension.load(
        name="skiptrack_baseline_kernels",
        sources=[str(path)],
        build_directory=str(folder),
        **BUILD_FLAGS,
    )
    return CppKernels(module)


def fresh_state(call: dict) -> dict:
    """Copies of the gate state a recorded call starts from (the call writes into them)."""
    return {key: call[key].clone() for key in ("Xhat", "r2", "energy", "stamps")}


def replay_call(kernels: CppKernels, call: dict, state: dict) -> tuple:
    """One recorded ``select_update`` call on ``state``."""
    return kernels.select_update(call["X"], state["Xhat"], call["changes"], False, state["r2"], state["energy"],
                                 state["stamps"], call["stamp"], call["geometry"], *call["rest"])  # fmt: skip


def replay(calls: list[dict], builds: dict[str, CppKernels], repeats: int, flush_mb: int) -> tuple[dict, list[str]]:
    """Per build the seconds of each replayed call; and where the builds' results differ."""
    flush = torch.zeros(flush_mb * 262144)
    times: dict[str, list[float]] = {name: [] for name in builds}
    differences: list[str] = []
    order = list(builds)
    for kernels in builds.values():  # first calls set up thread pools and tables: not timed
        replay_call(kernels, calls[0], fresh_state(calls[0]))
    for repeat in range(repeats):
        for index, call in enumerate(calls):
            results = {}
            for name in order if (index + repeat) % 2 == 0 else order[::-1]:
                state = fresh_state(call)
                flush.add_(1.0)
                float(call["X"].sum()), int(call["changes"].sum())
                start = time.perf_counter()
                out = replay_call(builds[name], call, state)
                times[name].append(time.perf_counter() - start)
                results[name] = (out, state["Xhat"], state["r2"], state["energy"])
            if repeat == 0 and len(results) == 2:
                (a, xa, ra, ea), (b, xb, rb, eb) = results.values()
                same = torch.equal(a[0], b[0]) and a[1:] == b[1:] and torch.equal(xa, xb) and torch.equal(ra, rb)
                if not same or not torch.allclose(ea, eb, rtol=1e-9, atol=1e-12):
                    differences.append(f"call {index}: outputs or state differ")
    return times, differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--source", default="synthetic:still_hand", help="a source URI (default synthetic:still_hand)")
    parser.add_argument("--frames", type=int, default=180, help="frames of the source to run (default 180)")
    parser.add_argument("--start", type=float, default=0.0, help="a video's first second to use (default 0)")
    parser.add_argument("--layer", default="stem_0", help="the gated layer (default stem_0, the camera layer)")
    parser.add_argument("--baseline-rev", help="a git revision whose kernels to replay alongside this tree's")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the recorded calls (default 5)")
    parser.add_argument("--flush-mb", type=int, default=8, help="MB written between calls (default 8)")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    calls = record(args.source, args.frames, args.start, args.layer)
    if not calls:
        raise SystemExit(
            f"{args.layer} made no incremental gate call on {args.source} (a convolution without a gate of its own, "
            "or a source that changes everywhere): nothing to replay"
        )
    print(f"recorded {len(calls)} calls of {args.layer} on {args.source}", file=sys.stderr)
    builds = {"current": load_cpp()}
    if args.baseline_rev:
        print(f"building the kernels of {args.baseline_rev} (about a minute)", file=sys.stderr)
        builds["baseline"] = baseline_kernels(args.baseline_rev)
    print(f"replaying {len(calls)} calls x {args.repeats} on {len(builds)} build(s)", file=sys.stderr)
    times, differences = replay(calls, builds, args.repeats, args.flush_mb)
    result = {
        "source": args.source,
        "layer": args.layer,
        "calls": len(calls),
        "changes_median": float(np.median([c["changes"].numel() for c in calls])),
        "repeats": args.repeats,
        "flush_mb": args.flush_mb,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "builds": {
            name: {"median_us": 1e6 * float(np.median(t)), "mean_us": 1e6 * float(np.mean(t))}
            for name, t in times.items()
        },
        "baseline_rev": args.baseline_rev,
        "identical": not differences,
        "differences": differences[:10],
    }
    if args.baseline_rev:
        result["ratio"] = result["builds"]["current"]["median_us"] / result["builds"]["baseline"]["median_us"]
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0 if not differences else 1


if __name__ == "__main__":
    sys.exit(main())
