"""Procedural texture painters for the synthetic room (texture space: 1 texel = ``TEXEL_M``).

Painters draw into float32 (H, W) grey images and return the texture coordinates of the corners they made,
pixel-centre convention (integer (u, v) is the centre of texel column u, row v), so the corner between texels
sits at a half-integer coordinate. Those corners become the world's landmarks.
"""

from __future__ import annotations

import string

import cv2
import numpy as np

TEXEL_M = 0.01
_GLYPHS = string.ascii_uppercase + string.digits


def noise_octaves(
    rng: np.random.Generator, h: int, w: int, octaves: tuple[tuple[int, float], ...], stretch: float = 1.0
) -> np.ndarray:
    """Band-limited noise (h, w) float32: a sum of upsampled random grids, one per (period_texels, amplitude).

    ``stretch`` > 1 makes features longer along u than along v (wood grain).
    """
    out = np.zeros((h, w), np.float32)
    for period, amplitude in octaves:
        pu = max(1, int(round(period * stretch)))
        grid = rng.standard_normal((h // period + 3, w // pu + 3)).astype(np.float32)
        up = cv2.resize(grid, (grid.shape[1] * pu, grid.shape[0] * period), interpolation=cv2.INTER_CUBIC)
        out += amplitude * up[period : period + h, pu : pu + w]
    return out


def paint_text(tex: np.ndarray, rng: np.random.Generator, x: int, y: int, w: int, h: int, value: float) -> None:
    """Lines of random characters inside the box (x, y, w, h): text-like marks for a detector to latch onto."""
    if w < 8 or h < 8:
        return
    block = np.ascontiguousarray(tex[y : y + h, x : x + w])
    line_h = int(rng.integers(6, 14))
    scale = line_h / 22.0
    for row in range(line_h, h, int(line_h * 1.6)):
        text = "".join(rng.choice(list(_GLYPHS + "  "), max(1, w // line_h)))
        cv2.putText(block, text, (0, row), cv2.FONT_HERSHEY_SIMPLEX, scale, float(value), 1, cv2.LINE_AA)
    tex[y : y + h, x : x + w] = block


def paint_rect(tex: np.ndarray, x: int, y: int, w: int, h: int, value: float | np.ndarray) -> np.ndarray:
    """Fill texels [x, x+w) x [y, y+h) and return the rectangle's 4 corners (4, 2) in texture coordinates."""
    tex[y : y + h, x : x + w] = value
    return rect_corners(x, y, w, h)


def rect_corners(x: int, y: int, w: int, h: int) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64) - 0.5


def paint_poster(tex: np.ndarray, rng: np.random.Generator, x: int, y: int, w: int, h: int) -> np.ndarray:
    """A framed poster: dark frame, light paper, a noisy picture with discs, lines of text. Returns its frame and
    picture corners (8, 2)."""
    frame_value = float(rng.uniform(15, 45))
    corners = [paint_rect(tex, x, y, w, h, frame_value)]
    b = max(2, w // 25)
    paper = float(rng.uniform(190, 235))
    tex[y + b : y + h - b, x + b : x + w - b] = paper
    px, py, pw, ph = x + 2 * b, y + 2 * b, w - 4 * b, int((h - 4 * b) * rng.uniform(0.45, 0.6))
    picture = 120 + noise_octaves(rng, ph, pw, ((max(2, pw // 4), 55.0), (max(2, pw // 16), 30.0), (2, 12.0)))
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = int(rng.integers(0, pw)), int(rng.integers(0, ph))
        r = int(rng.integers(3, max(4, min(pw, ph) // 3)))
        cv2.circle(picture, (cx, cy), r, float(rng.uniform(0, 255)), -1, cv2.LINE_AA)
    corners.append(paint_rect(tex, px, py, pw, ph, picture))
    text_top = py + ph + b
    paint_text(tex, rng, px, text_top, pw, y + h - 2 * b - text_top, float(rng.uniform(20, 70)))
    return np.vstack(corners)


def paint_checker(tex: np.ndarray, x: int, y: int, cols: int, rows: int, cell: int) -> np.ndarray:
    """A checkerboard patch; returns its interior grid points and outer corners ((cols-1)(rows-1) + 4, 2)."""
    for r in range(rows):
        for c in range(cols):
            value = 25.0 if (r + c) % 2 == 0 else 225.0
            tex[y + r * cell : y + (r + 1) * cell, x + c * cell : x + (c + 1) * cell] = value
    gu, gv = np.meshgrid(np.arange(1, cols), np.arange(1, rows))
    inner = np.stack([x + gu.ravel() * cell, y + gv.ravel() * cell], axis=1).astype(np.float64) - 0.5
    return np.vstack([inner, rect_corners(x, y, cols * cell, rows * cell)])


def paint_tiles(
    tex: np.ndarray, rng: np.random.Generator, tile: int, grout: float, spread: float, line_value: float
) -> np.ndarray:
    """Tiles of ``tile`` texels with per-tile brightness and 2-texel grout lines; returns the interior crossings."""
    h, w = tex.shape
    for r in range(0, h, tile):
        for c in range(0, w, tile):
            tex[r : r + tile, c : c + tile] += float(rng.uniform(-spread, spread))
    us = np.arange(tile, w, tile)
    vs = np.arange(tile, h, tile)
    for u in us:
        tex[:, u - 1 : u + 1] = line_value + grout * tex[:, u - 1 : u + 1] / 255.0
    for v in vs:
        tex[v - 1 : v + 1, :] = line_value + grout * tex[v - 1 : v + 1, :] / 255.0
    gu, gv = np.meshgrid(us, vs)
    return np.stack([gu.ravel(), gv.ravel()], axis=1).astype(np.float64) - 0.5


def darken_border(tex: np.ndarray, width: int, factor: float) -> None:
    """Darken a band along the edges, as worn edges and ambient occlusion do on furniture."""
    tex[:width, :] *= factor
    tex[-width:, :] *= factor
    tex[:, :width] *= factor
    tex[:, -width:] *= factor
