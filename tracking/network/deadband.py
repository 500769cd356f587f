"""Temporal deadband: a pixel of the camera image keeps its last value until it, or the region around it, moves.

A still camera's image is never still: sensor read noise (1.6 grey levels RMS in the synthetic headset) and a
video codec's requantisation (vtest.avi: a fifth of the pixels change every frame, nearly all by 1-2 grey levels,
while the people walking change 2 %) move most pixels every frame. The keypoint network's weak peaks follow that
noise (still_hand: 86 % of the dense network's points within 1 px of the previous frame's), and the
skip-convolution engine, whose gate ignores it, cannot agree with the dense network better than that. Held at its
last value, a pixel that only shimmers is exactly still, and the network, dense or skip, sees the same steady
image: what moves is what changed.

A pixel is taken from the camera when it moved by more than ``DEADBAND_GREY`` itself, or when it lies in a
``TILE_PX`` tile where the image moved coherently (somewhere in the tile the mean change over 3 x 3 pixels exceeds
``REGION_GREY``: noise alone stays far below, a moving edge far above). The tiles take a moving hand whole: pixels
held one by one made its slowly changing shading a patchwork of old and new values, and the hand joints came out
0.5 mm worse (still_hand seeds 1-3, in the head frame). While the camera itself moves (more than
``CAMERA_MOVING_TILES`` of the tiles move) the tiles around each moving one are taken too, so that an edge sliding
across the image is not held at a tile's border; a moving hand in front of a still camera gets its tiles alone, and
the sensor's shimmer around it stays held (docs/network.md, "Steady input"). Where more than ``WIDE_CHANGE`` of
the pixels move past the deadband at once (the head turns, the light changes) the whole frame is taken. What it
costs: a pixel the network sees may be up to ``DEADBAND_GREY`` grey levels from the camera's (the noise the network
was trained with reaches 5), and only where nothing around it moved.
"""

from __future__ import annotations

import cv2
import numpy as np

DEADBAND_GREY = 6
"""Grey levels a pixel must move from its held value to be taken on its own: 3.75 sigma of the synthetic sensor's
read noise (1.6 % of its pixels pass a frame on a still camera). docs/network.md, "Steady input"."""
REGION_GREY = 4
"""Mean change over 3 x 3 pixels that marks a region as moving (sensor noise: about 1.8 +- 0.5)."""
TILE_PX = 8
"""Side of the tiles taken whole where the image moves."""
CAMERA_MOVING_TILES = 0.12
"""Share of the tiles moving above which the camera is taken to move and each moving tile's 8 neighbours are taken
too. A hand in front of a still camera moves at most 9 % of them (still_hand seeds 1-3, 7), vtest.avi's walking people
5-13 % (5th-95th percentile; a tenth of its frames take the neighbours); a head in slow motion at least 18 % (seated
seeds 1 and 5, 20 s; mostly above 80 %)."""
WIDE_CHANGE = 0.3
"""Share of the pixels past the deadband above which the whole frame is taken as it is (camera motion, lighting)."""


class Deadband:
    """Per camera: ``steady(image)`` returns the image with every pixel that has not moved (see the module
    docstring) held at the value it was last taken at. One instance per camera; ``reset()`` takes the next image
    whole."""

    def __init__(self, grey: int = DEADBAND_GREY, wide_change: float = WIDE_CHANGE) -> None:
        if not 0 <= grey <= 255:
            raise ValueError(f"deadband must be 0..255 grey levels, got {grey}")
        self.grey = int(grey)
        self.wide_change = float(wide_change)
        self._held: np.ndarray | None = None

    def reset(self) -> None:
        self._held = None

    def steady(self, image: np.ndarray) -> np.ndarray:
        """The uint8 (H, W) image the network should see; valid until the next call (the returned array is the
        held image, updated in place)."""
        if self.grey == 0:
            return image
        held = self._held
        if held is None or held.shape != image.shape:
            self._held = image.copy()
            return self._held
        change = cv2.absdiff(image, held)
        taken = change > self.grey
        if np.count_nonzero(taken) > self.wide_change * taken.size:
            held[...] = image
            return held
        cv2.copyTo(image, taken.view(np.uint8) | _moving_tiles(change), held)  # in place, where the mask is set
        return held


def _moving_tiles(change: np.ndarray) -> np.ndarray:
    """(H, W) uint8, 1 on the pixels of every ``TILE_PX`` tile where the 3 x 3 mean of ``change`` exceeds
    ``REGION_GREY`` somewhere (an edge of the image that is not a whole tile counts as one), and of its neighbours
    when more than ``CAMERA_MOVING_TILES`` of the tiles are such."""
    h, w = change.shape
    rows, cols = -(-h // TILE_PX), -(-w // TILE_PX)
    coherent = (cv2.blur(change, (3, 3)) > REGION_GREY).view(np.uint8) * np.uint8(255)
    coherent = cv2.copyMakeBorder(coherent, 0, rows * TILE_PX - h, 0, cols * TILE_PX - w, cv2.BORDER_CONSTANT)
    # a tile's mean is above 0 where any of its pixels is set (one pixel of 255 in 64 averages 4)
    tiles = (cv2.resize(coherent, (cols, rows), interpolation=cv2.INTER_AREA) > 0).view(np.uint8)
    if np.count_nonzero(tiles) > CAMERA_MOVING_TILES * tiles.size:
        tiles = cv2.dilate(tiles, np.ones((3, 3), np.uint8))
    return np.repeat(np.repeat(tiles, TILE_PX, 0), TILE_PX, 1)[:h, :w]
