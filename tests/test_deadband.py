"""The temporal deadband on the network's input (tracking.network.deadband)."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.synthetic import open_synthetic
from tracking.network.deadband import CAMERA_MOVING_TILES, DEADBAND_GREY, TILE_PX, Deadband


def _noisy(base: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, base.shape)
    return np.clip(np.round(base + noise), 0, 255).astype(np.uint8)


def test_noise_within_the_deadband_is_held_and_a_real_change_is_taken_exactly():
    base = np.kron(np.random.default_rng(0).uniform(40, 200, (24, 32)), np.ones((10, 10)))
    band = Deadband()
    first = band.steady(_noisy(base, 1.6, 0)).copy()
    moved = base.copy()
    moved[100:140, 150:200] += 40.0  # a hand moves into a patch
    image = _noisy(moved, 1.6, 1)
    steady = band.steady(image)
    near = np.zeros(base.shape, bool)
    near[100 - 2 * TILE_PX : 140 + 2 * TILE_PX, 150 - 2 * TILE_PX : 200 + 2 * TILE_PX] = True
    assert np.array_equal(steady[100:140, 150:200], image[100:140, 150:200])  # what moved goes in exactly
    assert (steady[~near] == first[~near]).mean() > 0.98  # the shimmer elsewhere is gone
    assert np.abs(steady.astype(int) - image.astype(int)).max() <= DEADBAND_GREY


def test_a_region_that_changes_by_less_than_the_deadband_is_taken_whole_a_lone_noisy_pixel_alone():
    rng = np.random.default_rng(2)
    image = rng.integers(60, 180, (64, 64), dtype=np.uint8)
    band = Deadband()
    band.steady(image)
    shaded = image.copy()
    shaded[16:40, 16:40] += 5  # the shading of a moving hand: every pixel below the deadband, together well above
    shaded[56, 56] += 10  # one pixel's noise past the deadband, far from it
    steady = band.steady(shaded)
    assert np.array_equal(steady[16:40, 16:40], shaded[16:40, 16:40])  # not a patchwork of old and new
    assert steady[56, 56] == shaded[56, 56]
    assert np.array_equal(steady[48:, 48:56], image[48:, 48:56])  # its tile is not taken


def _patch_moved(moving_tiles: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Two camera images of a 16 x 16-tile scene with sensor noise; in the second, 30 grey levels more inside each
    tile of ``moving_tiles`` (away from the tile's border)."""
    base = np.kron(np.random.default_rng(4).uniform(40, 200, (16, 16)), np.ones((TILE_PX, TILE_PX)))
    moved = base.copy()
    for r, c in moving_tiles:
        moved[r * TILE_PX + 2 : (r + 1) * TILE_PX - 2, c * TILE_PX + 2 : (c + 1) * TILE_PX - 2] += 30.0
    return _noisy(base, 1.6, 0), _noisy(moved, 1.6, 1)


def _ring(r: int, c: int, shape: tuple[int, int]) -> np.ndarray:
    """The pixels of the 8 tiles around tile (r, c)."""
    ring = np.zeros(shape, bool)
    ring[(r - 1) * TILE_PX : (r + 2) * TILE_PX, (c - 1) * TILE_PX : (c + 2) * TILE_PX] = True
    ring[r * TILE_PX : (r + 1) * TILE_PX, c * TILE_PX : (c + 1) * TILE_PX] = False
    return ring


def test_in_front_of_a_still_camera_only_the_moving_tiles_are_taken_not_the_tiles_around_them():
    """A hand moving in front of a still camera: the shimmer around its tiles stays held (taking the neighbours
    sent three times the pixels of a still_hand frame through the network, nearly all of them noise)."""
    first, image = _patch_moved([(7, 7)])
    band = Deadband()
    first = band.steady(first).copy()
    steady = band.steady(image)
    tile = np.s_[7 * TILE_PX : 8 * TILE_PX, 7 * TILE_PX : 8 * TILE_PX]
    assert np.array_equal(steady[tile], image[tile])  # its tile whole
    ring = _ring(7, 7, image.shape)
    assert (image[ring] != first[ring]).mean() > 0.5  # the camera's shimmer there ...
    assert (steady[ring] == first[ring]).mean() > 0.95  # ... held, but for a lone pixel past the deadband


def test_while_the_camera_moves_the_tiles_around_each_moving_tile_are_taken_too():
    """More than CAMERA_MOVING_TILES of the tiles moving is the camera's own motion: an edge sliding across the image
    is taken ahead of the tile it is in."""
    every_other = [(r, c) for r in range(1, 16, 2) for c in range(1, 16, 2)]  # 64 of 256 tiles
    few = every_other[:5]  # a hand
    assert len(few) < CAMERA_MOVING_TILES * 256 < len(every_other)
    first, image = _patch_moved(few)
    band = Deadband()
    band.steady(first)
    ring = _ring(1, 1, image.shape)
    assert not np.array_equal(band.steady(image)[ring], image[ring])
    first, image = _patch_moved(every_other)
    band = Deadband()
    band.steady(first)
    assert np.array_equal(band.steady(image), image)  # every tile is a moving one or next to one


def test_a_wide_change_is_taken_whole_and_reset_takes_the_next_image_whole():
    rng = np.random.default_rng(1)
    band = Deadband()
    band.steady(rng.integers(0, 256, (24, 32), dtype=np.uint8))
    turned = rng.integers(0, 256, (24, 32), dtype=np.uint8)  # the head turned: every pixel moved
    assert np.array_equal(band.steady(turned), turned)
    slight = np.clip(turned.astype(int) + 3, 0, 255).astype(np.uint8)
    assert np.array_equal(band.steady(slight), turned)  # within the deadband: held
    band.reset()
    assert np.array_equal(band.steady(slight), slight)


def test_a_deadband_of_zero_passes_every_image_and_a_bad_one_is_refused():
    image = np.full((16, 16), 7, np.uint8)
    assert Deadband(0).steady(image) is image
    with pytest.raises(ValueError, match="0..255"):
        Deadband(-1)


def test_on_a_still_camera_the_networks_keypoints_hold_still_and_skip_agrees_with_dense():
    """Why it exists: with the sensor's shimmer held back, the dense network's points stay put from frame to
    frame, and the skip engine, whose gate ignores that shimmer, agrees with the dense network."""
    from tracking.network import load_default
    from tracking.network.metrics import agreement, point_repeatability

    frames = [f.images[0] for f in open_synthetic("still_hand", seconds=0.5, seed=3)]
    result = {}
    for grey in (0, DEADBAND_GREY):
        skip, dense = load_default(skip=True), load_default(skip=False)
        skip.deadband.grey = dense.deadband.grey = grey
        agree = total = 0
        steadiness, previous = [], None
        for image in frames:
            kd, ks = dense.infer(image), skip.infer(image)
            a, t = agreement(kd, ks)
            agree, total = agree + a, total + t
            if previous is not None:
                steadiness.append(point_repeatability(previous, kd.points_px, tolerance_px=1.0))
            previous = kd.points_px
        result[grey] = (agree / total, float(np.mean(steadiness)))
    (agree_off, steady_off), (agree_on, steady_on) = result[0], result[DEADBAND_GREY]
    assert steady_on > steady_off + 0.03
    assert agree_on > agree_off + 0.02
