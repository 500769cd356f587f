"""The synthetic room: textured planar faces (walls, floor, ceiling, furniture boxes) and its landmarks.

The room is an axis-aligned box seen from inside (x in [-3.5, 3.5] m, y in [0, 2.8] m, z in [-3, 3] m; OpenXR
world axes), so its walls never overlap in an image. Furniture are solid axis-aligned boxes standing in it, away
from where the head goes. Textures are generated once per seed (``build_world`` is cached) and are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np

from hardware.synthetic import textures as tx

ROOM_MIN = np.array([-3.5, 0.0, -3.0])
ROOM_MAX = np.array([3.5, 2.8, 3.0])
MIP_LEVELS = 3
UP = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True, eq=False)
class Face:
    """A textured rectangle. Texture coordinate (u, v) (pixel-centre convention) is at world point
    ``origin + TEXEL_M * ((u + 0.5) * u_axis + (v + 0.5) * v_axis)``; ``normal`` faces the side it is seen from.
    ``mips`` holds the uint8 texture and its pyrDown halvings."""

    name: str
    origin: np.ndarray
    u_axis: np.ndarray
    v_axis: np.ndarray
    normal: np.ndarray
    mips: tuple[np.ndarray, ...]

    @property
    def size_m(self) -> tuple[float, float]:
        h, w = self.mips[0].shape
        return (w * tx.TEXEL_M, h * tx.TEXEL_M)

    @cached_property
    def corners_world(self) -> np.ndarray:
        """(4, 3) corners in order (0,0), (w,0), (w,h), (0,h) of texture space."""
        w, h = self.size_m
        o, u, v = self.origin, self.u_axis, self.v_axis
        return np.stack([o, o + w * u, o + w * u + h * v, o + h * v])

    def texture_to_world(self, uv: np.ndarray) -> np.ndarray:
        """World points (N, 3) of texture coordinates ``uv`` (N, 2) at level 0."""
        uv = np.asarray(uv, np.float64) + 0.5
        return self.origin + tx.TEXEL_M * (uv[:, :1] * self.u_axis + uv[:, 1:2] * self.v_axis)

    @cached_property
    def plane_matrices(self) -> tuple[np.ndarray, ...]:
        """Per mip level, (3, 3) A with world = A @ (u, v, 1) for texture coordinates at that level."""
        out = []
        for level in range(len(self.mips)):
            s = tx.TEXEL_M * (1 << level)
            out.append(
                np.stack([s * self.u_axis, s * self.v_axis, self.origin + 0.5 * s * (self.u_axis + self.v_axis)], 1)
            )
        return tuple(out)


@dataclass(frozen=True, eq=False)
class Box:
    """A solid axis-aligned box (furniture): ``lo`` / ``hi`` (3,) corners in metres, and its visible faces."""

    name: str
    lo: np.ndarray
    hi: np.ndarray
    faces: tuple[Face, ...]

    @property
    def center(self) -> np.ndarray:
        return (self.lo + self.hi) / 2


@dataclass(frozen=True, eq=False)
class World:
    """Walls (6 faces of the room), furniture boxes, ``landmarks_world`` (N, 3) texture corners in metres, and
    ``landmark_kinds`` (N,) what each one is (e.g. "checker": an X corner inside a checkerboard)."""

    walls: tuple[Face, ...]
    boxes: tuple[Box, ...]
    landmarks_world: np.ndarray
    landmark_kinds: np.ndarray

    def occluded_by_boxes(self, origin: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(N,) bool: whether the segment from ``origin`` (3,) to each of ``points`` (N, 3) passes through a box.

        Slab test per box; a point on a box's own visible surface is not occluded by it (the ray enters at t = 1).
        """
        d = points - origin
        inv_d = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1 = (self._box_lo - origin)[None] * inv_d[:, None]  # (N, B, 3)
        t2 = (self._box_hi - origin)[None] * inv_d[:, None]
        t_enter = np.minimum(t1, t2).max(axis=2)
        t_exit = np.maximum(t1, t2).min(axis=2)
        return ((t_enter < 1.0 - 1e-4) & (t_exit > t_enter + 1e-6) & (t_exit > 0.0)).any(axis=1)

    @cached_property
    def _box_lo(self) -> np.ndarray:
        return np.array([b.lo for b in self.boxes]).reshape(-1, 3)

    @cached_property
    def _box_hi(self) -> np.ndarray:
        return np.array([b.hi for b in self.boxes]).reshape(-1, 3)


FURNITURE: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("desk", (-1.0, 0.0, -3.0), (0.4, 0.75, -2.3)),
    ("monitor_box", (-0.6, 0.75, -2.85), (-0.15, 1.1, -2.55)),
    ("cabinet", (2.3, 0.0, -3.0), (3.5, 1.9, -2.45)),
    ("crate", (-3.0, 0.0, -1.7), (-2.4, 0.55, -1.05)),
    ("shelf", (-3.5, 0.0, 0.4), (-3.05, 2.0, 1.8)),
    ("carton", (2.2, 0.0, 1.9), (2.75, 0.45, 2.5)),
    ("sofa", (-1.2, 0.0, 2.3), (1.0, 0.8, 3.0)),
)
"""(name, lo, hi) of each furniture box, kept at least about 1 m from where the scenarios move the head."""


@lru_cache(maxsize=4)
def build_world(seed: int) -> World:
    """The room for ``seed``: same seed, same textures and landmarks."""
    rng = np.random.default_rng([seed, 1001])
    walls, landmarks, kinds, owners = [], [], [], []
    for face, tagged in _room_faces(rng):
        walls.append(face)
        for kind, corners in tagged:
            landmarks.append(face.texture_to_world(corners))
            kinds += [kind] * len(corners)
            owners += [-1] * len(corners)
    boxes = []
    for index, (name, lo, hi) in enumerate(FURNITURE):
        box, tagged = _furniture(rng, name, np.array(lo), np.array(hi))
        boxes.append(box)
        for kind, points in tagged:
            landmarks.append(points)
            kinds += [kind] * len(points)
            owners += [index] * len(points)
    points = np.vstack(landmarks)
    owners = np.array(owners)
    keep = np.ones(len(points), bool)
    for index, box in enumerate(boxes):
        inside = np.all((points > box.lo - 1e-3) & (points < box.hi + 1e-3), axis=1)
        keep &= ~(inside & (owners != index))
    return World(tuple(walls), tuple(boxes), np.ascontiguousarray(points[keep]), np.array(kinds)[keep])


def _face(
    name: str, center: np.ndarray, normal: np.ndarray, u_axis: np.ndarray, v_axis: np.ndarray, texture: np.ndarray
) -> Face:
    h, w = texture.shape
    origin = center - 0.5 * tx.TEXEL_M * (w * u_axis + h * v_axis)
    mips = [np.clip(texture, 0, 255).astype(np.uint8)]
    for _ in range(MIP_LEVELS - 1):
        mips.append(cv2.pyrDown(mips[-1]))
    return Face(name, origin, u_axis, v_axis, normal, tuple(mips))


def _vertical_axes(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texture axes of an upright face seen from the ``normal`` side: u to the viewer's right, v down."""
    return np.cross(UP, normal), -UP


def _room_faces(rng: np.random.Generator):
    """Yield (face, [(landmark kind, texture coordinates (n, 2))]) for the 4 walls, the floor and the ceiling."""
    size = ROOM_MAX - ROOM_MIN
    center = (ROOM_MIN + ROOM_MAX) / 2
    walls = (
        ("wall_front", np.array([0.0, 0.0, 1.0]), size[0], 0.80),
        ("wall_back", np.array([0.0, 0.0, -1.0]), size[0], 0.70),
        ("wall_left", np.array([1.0, 0.0, 0.0]), size[2], 0.85),
        ("wall_right", np.array([-1.0, 0.0, 0.0]), size[2], 0.75),
    )
    h = int(round(size[1] / tx.TEXEL_M))
    for name, normal, width_m, light in walls:
        w = int(round(width_m / tx.TEXEL_M))
        texture, corners = _wall_texture(rng, h, w)
        face_center = center - normal * (size * np.abs(normal)).sum() / 2
        u_axis, v_axis = _vertical_axes(normal)
        yield _face(name, face_center, normal, u_axis, v_axis, texture * light), corners
    w, d = int(round(size[0] / tx.TEXEL_M)), int(round(size[2] / tx.TEXEL_M))
    floor = 105 + tx.noise_octaves(rng, d, w, ((64, 10.0), (8, 14.0), (2, 16.0)))
    corners = tx.paint_tiles(floor, rng, tile=50, grout=0.3, spread=30.0, line_value=40.0)
    floor_center = np.array([center[0], ROOM_MIN[1], center[2]])
    x, z = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    yield _face("floor", floor_center, UP, x, z, floor * 0.9), [("tile", corners)]
    ceiling = 185 + tx.noise_octaves(rng, d, w, ((32, 8.0), (4, 10.0), (2, 8.0)))
    corners = [("tile", tx.paint_tiles(ceiling, rng, tile=60, grout=0.5, spread=12.0, line_value=80.0))]
    for _ in range(4):
        lx, ly = int(rng.integers(20, w - 160)), int(rng.integers(20, d - 80))
        corners.append(("light", tx.paint_rect(ceiling, lx, ly, 119, 59, 250.0)))
    ceiling_center = np.array([center[0], ROOM_MAX[1], center[2]])
    yield _face("ceiling", ceiling_center, -UP, x, -z, ceiling * 0.75), corners


def _wall_texture(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Plaster with a skirting board, posters, checkerboard patches and notes; returns (texture, tagged corners)."""
    texture = 150 + tx.noise_octaves(rng, h, w, ((128, 14.0), (32, 12.0), (8, 14.0), (2, 16.0)))
    texture[h - 10 :, :] = 60 + tx.noise_octaves(rng, 10, w, ((4, 6.0),))
    corners = []
    kinds = rng.permutation(["checker", "poster", "poster", "note", str(rng.choice(["checker", "poster"]))])
    slots = np.linspace(0, w, len(kinds) + 1)
    for i, kind in enumerate(kinds):
        slot_lo, slot_hi = int(slots[i]) + 12, int(slots[i + 1]) - 12
        if kind == "poster":
            pw = int(rng.integers(45, min(110, slot_hi - slot_lo)))
            ph = int(pw * rng.uniform(1.2, 1.5))
            x = int(rng.integers(slot_lo, slot_hi - pw))
            y = int(rng.integers(50, h - ph - 60))
            corners.append(("poster", tx.paint_poster(texture, rng, x, y, pw, ph)))
        elif kind == "checker":
            cell = int(rng.integers(6, 11))
            cols, rows = int(rng.integers(5, 9)), int(rng.integers(4, 7))
            x = int(rng.integers(slot_lo, max(slot_lo + 1, slot_hi - cols * cell)))
            y = int(rng.integers(60, h - rows * cell - 60))
            grid = tx.paint_checker(texture, x, y, cols, rows, cell)
            corners += [("checker", grid[:-4]), ("checker_outer", grid[-4:])]
        else:
            bw, bh = int(rng.integers(40, 90)), int(rng.integers(30, 60))
            x = int(rng.integers(slot_lo, max(slot_lo + 1, slot_hi - bw)))
            y = int(rng.integers(60, h - bh - 60))
            corners.append(("note", tx.paint_rect(texture, x, y, bw, bh, float(rng.uniform(200, 240)))))
            tx.paint_text(texture, rng, x + 3, y + 3, bw - 6, bh - 6, float(rng.uniform(10, 60)))
    return texture, corners


def _furniture(
    rng: np.random.Generator, name: str, lo: np.ndarray, hi: np.ndarray
) -> tuple[Box, list[tuple[str, np.ndarray]]]:
    """A furniture box: wood-grain sides with a label, a top with a sheet of paper; returns (box, tagged
    landmarks (n, 3) in the world)."""
    size = hi - lo
    center = (lo + hi) / 2
    base = float(rng.uniform(70, 170))
    faces, points = [], []
    for axis, sign, light in ((0, 1, 0.8), (0, -1, 0.7), (2, 1, 0.85), (2, -1, 0.75)):
        normal = np.zeros(3)
        normal[axis] = sign
        width_m = size[2] if axis == 0 else size[0]
        w, h = int(round(width_m / tx.TEXEL_M)), int(round(size[1] / tx.TEXEL_M))
        texture = base + tx.noise_octaves(rng, h, w, ((16, 16.0), (4, 14.0), (1, 8.0)), stretch=6.0)
        tx.darken_border(texture, 2, 0.6)
        u_axis, v_axis = _vertical_axes(normal)
        corners = np.zeros((0, 2))
        if w > 30 and h > 24:
            lw, lh = int(rng.integers(14, min(40, w - 10))), int(rng.integers(10, min(30, h - 8)))
            lx, ly = int(rng.integers(5, w - lw - 4)), int(rng.integers(4, h - lh - 3))
            value = float(np.clip(base + rng.choice([-1, 1]) * rng.uniform(60, 90), 10, 245))
            corners = tx.paint_rect(texture, lx, ly, lw, lh, value)
            tx.paint_text(texture, rng, lx + 2, ly + 2, lw - 4, lh - 4, 255.0 - value)
        face_center = center + normal * size[axis] / 2
        face = _face(f"{name}_side{axis}{sign:+d}", face_center, normal, u_axis, v_axis, texture * light)
        faces.append(face)
        points.append(("box_label", face.texture_to_world(corners)))
    w, d = int(round(size[0] / tx.TEXEL_M)), int(round(size[2] / tx.TEXEL_M))
    top = base + 20 + tx.noise_octaves(rng, d, w, ((8, 14.0), (2, 12.0)), stretch=4.0)
    tx.darken_border(top, 2, 0.6)
    corners = np.zeros((0, 2))
    if w > 30 and d > 30:
        pw, ph = int(rng.integers(15, min(30, w - 10))), int(rng.integers(15, min(30, d - 10)))
        px, py = int(rng.integers(5, w - pw - 4)), int(rng.integers(5, d - ph - 4))
        corners = tx.paint_rect(top, px, py, pw, ph, 240.0 if base < 150 else 20.0)
    top_face = _face(
        f"{name}_top", np.array([center[0], hi[1], center[2]]), UP, np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), top
    )
    faces.append(top_face)
    points.append(("box_paper", top_face.texture_to_world(corners)))
    x0, x1, z0, z1 = lo[0], hi[0], lo[2], hi[2]
    points.append(("box_corner", np.array([[x0, hi[1], z0], [x1, hi[1], z0], [x1, hi[1], z1], [x0, hi[1], z1]])))
    return Box(name, lo, hi, tuple(faces)), points
