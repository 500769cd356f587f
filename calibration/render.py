"""Rendering a board as a camera sees it, for tests, benchmarks and synthetic calibration sessions.

Each output pixel is ray-cast: its ray (distortion removed by OpenCV, so pinhole and fisheye alike) is intersected
with the board plane and the printed board is sampled there, 2x2 supersampled against aliasing.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from calibration.boards import BoardSpec, board_to_pixels
from skiptrack_types import CalibrationError, CameraModel, require_transform

_SUPERSAMPLE = 2
_TEXTURE_PX_PER_SQUARE = 80
BACKGROUND = 90


def render_board_view(
    board: BoardSpec,
    camera: CameraModel,
    T_cam_board: np.ndarray,
    noise_sigma: float = 2.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The uint8 (H, W) image ``camera`` takes of ``board`` placed at ``T_cam_board`` (4, 4) (board in camera),
    on a flat grey background, with Gaussian pixel noise of ``noise_sigma`` grey levels."""
    T = require_transform("T_cam_board", T_cam_board)
    (rx, ry), valid = _pixel_rays(camera)
    R, t = T[:3, :3], T[:3, 3]
    # Plane z_board = 0: board point (x, y) lands at x*r1 + y*r2 + t, so the pixel ray m = (rx, ry, 1) meets it at
    # (x, y, 1) ~ A m with A = [r1 r2 t]^-1; the hit is 1 / (A m)_z in front of the camera.
    A = np.linalg.inv(np.column_stack([R[:, 0], R[:, 1], t]))
    texture, to_texture = _texture(board)
    B = (to_texture @ A).astype(np.float32)
    hz = B[2, 0] * rx + B[2, 1] * ry + B[2, 2]
    hit = valid & (hz > 1e-9)
    inv = np.where(hit, 1.0 / np.where(hit, hz, 1.0), 0.0).astype(np.float32)
    map_x = np.where(hit, (B[0, 0] * rx + B[0, 1] * ry + B[0, 2]) * inv, -1e4).astype(np.float32)
    map_y = np.where(hit, (B[1, 0] * rx + B[1, 1] * ry + B[1, 2]) * inv, -1e4).astype(np.float32)
    fine = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=BACKGROUND)
    image = cv2.resize(fine, camera.size, interpolation=cv2.INTER_AREA).astype(np.float32)
    if noise_sigma > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        image += rng.normal(0.0, noise_sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def board_view_poses(
    board: BoardSpec,
    camera: CameraModel,
    count: int,
    rng: np.random.Generator,
    max_tilt_deg: float = 40.0,
    fill: tuple[float, float] = (0.35, 0.6),
    margin_px: float = 12.0,
) -> list[np.ndarray]:
    """``count`` poses T_cam_board (4, 4) that show the whole board inside the image (``margin_px`` from its
    border), tilted up to ``max_tilt_deg`` about random axes, covering ``fill`` (min, max) of the image width,
    centred at spread-out image positions: the views a careful person records."""
    outline = _outline_points(board)
    f = camera.fx
    poses: list[np.ndarray] = []
    attempts = 0
    while len(poses) < count:
        attempts += 1
        if attempts > 200 * count:
            raise CalibrationError(
                f"could not place {count} views of {board} inside a {camera.width}x{camera.height} image; "
                "use a smaller board, a larger fill range or a smaller tilt"
            )
        target = rng.uniform((0.2 * camera.width, 0.2 * camera.height), (0.8 * camera.width, 0.8 * camera.height))
        ray = camera.unproject(target[None])[0]
        ray /= np.linalg.norm(ray)
        axis_angle = rng.uniform(-1.0, 1.0, 2)
        tilt = np.deg2rad(max_tilt_deg) * rng.uniform(0.0, 1.0)
        axis = np.array([*axis_angle, 0.0]) / max(np.linalg.norm(axis_angle), 1e-9)
        roll = rng.uniform(-0.3, 0.3)
        R = (Rotation.from_rotvec(axis * tilt) * Rotation.from_rotvec([0.0, 0.0, roll])).as_matrix()
        distance = f * board.size_m[0] / (rng.uniform(*fill) * camera.width)
        centre_board = np.append(np.asarray(board.size_m) / 2 - np.asarray(board.origin_in_checkered_area_m), 0.0)
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = distance * ray - R @ centre_board
        px = camera.project(outline @ T[:3, :3].T + T[:3, 3])
        inside = (
            np.isfinite(px).all()
            and (px[:, 0] > margin_px).all()
            and (px[:, 0] < camera.width - 1 - margin_px).all()
            and (px[:, 1] > margin_px).all()
            and (px[:, 1] < camera.height - 1 - margin_px).all()
        )
        if inside:
            poses.append(T)
    return poses


def _outline_points(board: BoardSpec) -> np.ndarray:
    """(N, 3) points densely along the checkered area's outline, board coordinates (metres)."""
    ox, oy = board.origin_in_checkered_area_m
    w, h = board.size_m
    s = np.linspace(0.0, 1.0, 25)
    edges = [np.column_stack([s * w, 0 * s]), np.column_stack([s * w, h + 0 * s])]
    edges += [np.column_stack([0 * s, s * h]), np.column_stack([w + 0 * s, s * h])]
    xy = np.vstack(edges) - (ox, oy)
    return np.column_stack([xy, np.zeros(len(xy))])


@lru_cache(maxsize=8)
def _pixel_rays(camera: CameraModel) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Normalised ray coordinates (x/z, y/z), each float32 (H*s, W*s), through the supersampled pixel grid, and
    whether each is a valid (invertible) direction; cached per camera object because undistorting every pixel is
    the slow part."""
    s = _SUPERSAMPLE
    u = (np.arange(camera.width * s) + 0.5) / s - 0.5
    v = (np.arange(camera.height * s) + 0.5) / s - 0.5
    px = np.stack(np.meshgrid(u, v), axis=-1).reshape(-1, 2)
    rays = camera.unproject(px)
    back = camera.project(rays)
    # Outside a fisheye's valid field the inverse does not round-trip; those pixels see nothing.
    valid = np.isfinite(back).all(axis=1) & (np.linalg.norm(np.nan_to_num(back, nan=1e9) - px, axis=1) < 0.05)
    shape = (camera.height * s, camera.width * s)
    rays32 = rays.astype(np.float32)
    return (rays32[:, 0].reshape(shape), rays32[:, 1].reshape(shape)), valid.reshape(shape)


@lru_cache(maxsize=8)
def _texture(board: BoardSpec) -> tuple[np.ndarray, np.ndarray]:
    image = board.render(_TEXTURE_PX_PER_SQUARE)
    return image, board_to_pixels(board, _TEXTURE_PX_PER_SQUARE)
