"""The C++ kernels agree with the pure-PyTorch reference kernels."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
import torch

from tracking.skipconv.kernels import Backend, _build_lock, kernels_for, pad_output_channels

CPP, REF = kernels_for(Backend.CPP), kernels_for(Backend.TORCH)


def positions(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.sort(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k])[0].int()


@pytest.mark.parametrize("geometry", [(3, 3, 1, 1, 1, 1, 1, 1, 9, 11), (3, 3, 2, 2, 1, 1, 1, 1, 5, 6),
                                      (2, 4, 1, 2, 0, 0, 1, 1, 8, 4), (3, 3, 1, 1, 2, 2, 2, 2, 9, 11)])  # fmt: skip
def test_window_gather_and_dilation_agree(geometry: tuple) -> None:
    x = torch.rand(9, 11, 5)
    n_out = geometry[8] * geometry[9]
    outs = positions(n_out, n_out // 3, 0)
    assert torch.equal(CPP.gather_windows(x, outs, geometry, -1.0), REF.gather_windows(x, outs, geometry, -1.0))
    ins = positions(99, 20, 1)
    assert torch.equal(CPP.dilate_positions(ins, 9, 11, geometry), REF.dilate_positions(ins, 9, 11, geometry))


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bilinear_align"])
def test_upsampling_at_positions_agrees(mode: str) -> None:
    x = torch.rand(5, 7, 3)
    ins = positions(35, 6, 2)
    radius = 0 if mode == "nearest" else 1
    outs = CPP.upsample_positions(ins, 7, 2, radius, 10, 14)
    assert torch.equal(outs, REF.upsample_positions(ins, 7, 2, radius, 10, 14))
    z_cpp, z_ref = torch.zeros(10, 14, 3), torch.zeros(10, 14, 3)
    CPP.upsample_at(x, z_cpp, outs, 2, mode != "nearest", mode == "bilinear_align")
    REF.upsample_at(x, z_ref, outs, 2, mode != "nearest", mode == "bilinear_align")
    assert float((z_cpp - z_ref).abs().max()) <= 1e-6


@pytest.mark.parametrize("act", [0, 1, 2])
@pytest.mark.parametrize(
    "cin, cout, geometry",
    [(4, 6, (3, 3, 1, 1, 1, 1, 1, 1, 12, 10)), (16, 16, (3, 3, 2, 2, 1, 1, 1, 1, 6, 5)),
     (20, 40, (3, 3, 1, 1, 2, 2, 2, 2, 12, 10)), (3, 17, (1, 1, 1, 1, 0, 0, 1, 1, 12, 10))],
)  # fmt: skip
def test_fused_convolution_rows_agree(act: int, cin: int, cout: int, geometry: tuple) -> None:
    """Windows inside the map and across its border, whole and partial vectors of output channels, each
    activation (none, ReLU, ReLU6)."""
    gen = torch.Generator().manual_seed(3)
    x = 4 * torch.rand(12, 10, cin, generator=gen) - 1
    weight, bias = (
        torch.randn(9 * cin if geometry[0] == 3 else cin, cout, generator=gen),
        torch.randn(cout, generator=gen),
    )
    ho, wo = geometry[8], geometry[9]
    outs = positions(ho * wo, ho * wo // 2, 4)
    z_cpp, z_ref = torch.full((ho, wo, cout), -9.0), torch.full((ho, wo, cout), -9.0)
    CPP.conv_rows(x, outs, geometry, *pad_output_channels(weight, bias), z_cpp, act)
    REF.conv_rows(x, outs, geometry, *pad_output_channels(weight, bias), z_ref, act)
    assert float((z_cpp - z_ref).abs().max()) <= 1e-4
    written = z_cpp.view(-1, cout)[outs.long()]
    assert float(written.min()) >= (0.0 if act else -float("inf")) and (act != 2 or float(written.max()) <= 6.0)
    assert act == 0 or float(written.min()) == 0.0


def test_changed_positions_agree_and_update_the_previous_frame() -> None:
    prev = torch.rand(6, 8, 2)
    x = prev.clone()
    x[2, 3, 1] += 1.0
    x[5, 7, 0] -= 1.0
    p_cpp, p_ref = prev.clone(), prev.clone()
    (c_cpp, n_cpp), (c_ref, n_ref) = CPP.changed_positions(x, p_cpp, 0.5), REF.changed_positions(x, p_ref, 0.5)
    assert c_cpp.tolist() == c_ref.tolist() == [19, 47] and n_cpp == n_ref == 2
    assert torch.equal(p_cpp, x) and torch.equal(p_ref, x)


def test_changed_grey_pixels_are_found_in_runs_and_in_the_tail() -> None:
    """A one-channel frame is scanned in runs of 16 pixels; 7 x 9 = 63 leaves a tail of 15 after three runs."""
    prev = torch.rand(7, 9, 1)
    x = prev.clone()
    changed = [0, 15, 16, 40, 47, 48, 62]
    x.view(-1)[changed] += 0.5
    p_cpp, p_ref = prev.clone(), prev.clone()
    (c_cpp, n_cpp), (c_ref, n_ref) = CPP.changed_positions(x, p_cpp, 0.5), REF.changed_positions(x, p_ref, 0.5)
    assert c_cpp.tolist() == c_ref.tolist() == changed and n_cpp == n_ref == len(changed)
    assert torch.equal(p_cpp, x)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_grey_frame_large_enough_to_share_out_is_compared_whole(threads: int) -> None:
    """A 240x320 frame splits into two runs of pixels, one per thread: changes on both sides of the split, at its
    edges and in the last run, come back in order, counted once, with the previous frame updated."""
    gen = torch.Generator().manual_seed(5)
    prev = torch.rand(240, 320, 1, generator=gen)
    n = prev.numel()
    half = (n // 2) & ~15
    changed = sorted({0, 15, half - 1, half, half + 1, n - 17, n - 1} | set(positions(n, 3000, 6).tolist()))
    x = prev.clone()
    x.view(-1)[changed] += 0.5
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        p_cpp, p_ref = prev.clone(), prev.clone()
        (c_cpp, n_cpp), (c_ref, n_ref) = CPP.changed_positions(x, p_cpp, 0.5), REF.changed_positions(x, p_ref, 0.5)
    finally:
        torch.set_num_threads(before)
    assert c_cpp.tolist() == c_ref.tolist() == changed and n_cpp == n_ref == len(changed)
    assert torch.equal(p_cpp, x)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_frame_changed_almost_everywhere_comes_back_as_a_count_without_a_list(channels: int) -> None:
    prev = torch.rand(6, 8, channels)
    x = prev + 0.01  # sensor noise: every pixel differs
    for kernels in (CPP, REF):
        p = prev.clone()
        changed, count = kernels.changed_positions(x, p, 0.5)
        assert changed.numel() == 0 and count == 48
        assert torch.equal(p, x)


@pytest.mark.parametrize("channels", [4, 1])
@pytest.mark.parametrize("update_floor", [0.0, 0.02])
@pytest.mark.parametrize("stride", [1, 2])
def test_incremental_gate_matches_a_full_recompute_over_a_sequence(stride: int, update_floor: float, channels: int):
    """The C++ gate touches only changed inputs and keeps residuals and block energies between frames; the
    reference recomputes every block from scratch. Same updates, outputs and pending counts, frame after frame,
    with and without a floor on the residuals a fired block updates; one channel is the camera's own path, which
    switches to a full pass at a smaller share of changed inputs."""
    gen = torch.Generator().manual_seed(10 + stride)
    h, w, c, block, eps2 = 15, 18, channels, 2, 0.3 if channels > 1 else 0.15
    geometry = (3, 3, stride, stride, 1, 1, 1, 1, (h - 1) // stride + 1, (w - 1) // stride + 1)
    ho, wo = geometry[8], geometry[9]
    n_blocks = ((ho + block - 1) // block) * ((wo + block - 1) // block)
    x = torch.rand(h, w, c, generator=gen)
    states = {}
    for name in ("cpp", "ref"):
        states[name] = dict(
            xhat=x.clone(), r2=torch.zeros(h * w), energy=torch.zeros(n_blocks, dtype=torch.float64), pending=0
        )
    stamps = torch.zeros(n_blocks, dtype=torch.int32)
    fired_frames = 0
    for frame in range(1, 30):
        count = 20 if c == 1 and frame % 2 == 0 else 12  # one channel: 20 of 270 changed take the full pass
        changes = positions(h * w, count, frame)
        x = x.clone()
        x.view(-1, c)[changes.long()] += 0.15 * torch.randn(count, c, generator=gen)
        results = {}
        for name, kernels in (("cpp", CPP), ("ref", REF)):
            s = states[name]
            outs, n_updated, s["pending"], refreshed = kernels.select_update(
                x,
                s["xhat"],
                changes,
                False,
                s["r2"],
                s["energy"],
                stamps,
                frame,
                geometry,
                eps2,
                block,
                1.0,
                s["pending"],
                update_floor,
            )
            assert not refreshed
            results[name] = (outs.tolist(), n_updated, s["pending"])
        assert results["cpp"] == results["ref"]
        assert torch.equal(states["cpp"]["xhat"], states["ref"]["xhat"])
        assert torch.allclose(states["cpp"]["r2"], states["ref"]["r2"])
        assert torch.allclose(states["cpp"]["energy"], states["ref"]["energy"], atol=1e-9)
        fired_frames += results["cpp"][1] > 0
    assert 0 < fired_frames < 29, "the sequence must exercise both waiting and firing"


@pytest.mark.parametrize("channels", [16, 1])
def test_the_gate_on_two_threads_gives_what_it_gives_on_one(channels: int) -> None:
    """Large enough for the gate to share its work out (a changed patch in one half of the map, the threads split
    the changes and own block rows): the same updates, outputs, residuals and block energies, bit for bit, on one
    thread and on two, and the same updates and outputs as the reference."""
    gen = torch.Generator().manual_seed(3)
    h, w, c, block, eps2 = 96, 128, channels, 2, 0.3 if channels > 1 else 0.02
    geometry = (3, 3, 2, 2, 1, 1, 1, 1, h // 2, w // 2)
    n_blocks = ((h // 2 + block - 1) // block) * ((w // 2 + block - 1) // block)
    x = torch.rand(h, w, c, generator=gen)
    states = {
        name: dict(xhat=x.clone(), r2=torch.zeros(h * w), energy=torch.zeros(n_blocks, dtype=torch.float64), pending=0)
        for name in (1, 2, "ref")
    }
    stamps = {name: torch.zeros(n_blocks, dtype=torch.int32) for name in states}
    threads = torch.get_num_threads()
    try:
        for frame in range(1, 12):
            # a patch in the lower part of the map (the threads' shares of block rows follow the changes), and a
            # few scattered changes
            ys, xs = torch.meshgrid(torch.arange(50, 80), torch.arange(20, 60 + frame), indexing="ij")
            patch = (ys * w + xs).flatten()
            changes = torch.unique(torch.cat([patch, positions(h * w, 200, frame).long()])).int()
            x = x.clone()
            x.view(-1, c)[changes.long()] += 0.1 * torch.randn(len(changes), c, generator=gen)
            results = {}
            for name, kernels in ((1, CPP), (2, CPP), ("ref", REF)):
                if name != "ref":
                    torch.set_num_threads(name)
                st = states[name]
                outs, n_updated, st["pending"], refreshed = kernels.select_update(
                    x, st["xhat"], changes, False, st["r2"], st["energy"], stamps[name], frame, geometry, eps2,
                    block, 1.0, st["pending"], 0.0,
                )  # fmt: skip
                assert not refreshed
                results[name] = (outs.tolist(), n_updated, st["pending"])
            assert results[1] == results[2] == results["ref"]
            assert results[1][1] > 0
            for key in ("xhat", "r2", "energy"):
                assert torch.equal(states[1][key], states[2][key]), key
            assert torch.allclose(states[1]["energy"], states["ref"]["energy"], atol=1e-9)
    finally:
        torch.set_num_threads(threads)


def _hold_build_lock(build: str) -> None:
    with _build_lock(Path(build)):
        time.sleep(60)


def test_a_killed_build_does_not_block_the_next_one(tmp_path) -> None:
    """The lock around building the C++ kernels is held while its holder lives and free the moment it is killed
    (torch's own lock file would make the next build wait forever)."""
    import fcntl

    holder = multiprocessing.get_context("spawn").Process(target=_hold_build_lock, args=(str(tmp_path),))
    holder.start()
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "build.flock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        with open(tmp_path / "build.flock", "w") as handle, pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        holder.kill()
        holder.join()
    started = time.monotonic()
    with _build_lock(tmp_path):
        assert time.monotonic() - started < 1.0


def test_position_sets_stay_exact_over_calls_on_grids_of_different_sizes() -> None:
    """The C++ kernels collect sets in one byte mask per thread: a call must leave it clear for the next, on a
    smaller grid as on a larger one."""
    small, large = (3, 3, 1, 1, 1, 1, 1, 1, 6, 7), (3, 3, 2, 2, 1, 1, 1, 1, 20, 25)
    for seed, (geometry, hi, wi) in enumerate([(large, 40, 50), (small, 6, 7), (large, 40, 50), (small, 6, 7)]):
        ins = positions(hi * wi, 1 + hi * wi // 5, seed)
        assert torch.equal(CPP.dilate_positions(ins, hi, wi, geometry), REF.dilate_positions(ins, hi, wi, geometry))
        n = geometry[8] * geometry[9]
        lists = [positions(n, n // 4, seed + 10), positions(n, 3, seed + 20), positions(n, n // 2, seed + 30)]
        assert torch.equal(CPP.union_positions(lists, n), REF.union_positions(lists, n))
        assert torch.equal(CPP.upsample_positions(ins, wi, 2, 1, 2 * hi, 2 * wi),
                           REF.upsample_positions(ins, wi, 2, 1, 2 * hi, 2 * wi))  # fmt: skip
