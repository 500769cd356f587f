"""How well a set of board views covers what a calibration needs: every image region, and tilts in every direction.

The image is split into a grid of cells; a view hits the cells its corners fall into. A view's tilt is the angle
of the board's normal from the optical axis, split into yaw (about the camera's y axis) and pitch (about x); tilt
bins are ``fronto`` (tilt below ``TILT_BIN_DEG``) and the four directions the board is turned towards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from calibration.boards import BoardSpec
from calibration.detect import Detection

GRID_COLS, GRID_ROWS = 8, 6
CELL_TARGET = 3
"""Views that should hit each cell before it counts as covered."""
TILT_BIN_DEG = 15.0
TILT_TARGET = 3
"""Views wanted in each tilt bin."""
TILT_BINS = ("fronto", "left", "right", "up", "down")
MIN_SHIFT = 0.02
"""A view whose shared corners moved less than this share of the image diagonal (median) from a view already
added is a near-duplicate: it adds no information, only weight."""


@dataclass(frozen=True)
class Tilt:
    """Board orientation relative to the camera, degrees: ``yaw`` > 0 turns the board's normal towards +x (image
    right), ``pitch`` > 0 towards +y (image down); ``total`` is the angle between normal and optical axis."""

    yaw_deg: float
    pitch_deg: float
    total_deg: float

    @classmethod
    def from_rotation(cls, R_cam_board: np.ndarray) -> Tilt:
        """From the board's rotation in the camera (3, 3); the board's z axis is its normal (pointing away from
        the camera when the board faces it)."""
        n = R_cam_board[:, 2]
        yaw = np.degrees(np.arctan2(n[0], n[2]))
        pitch = np.degrees(np.arctan2(n[1], n[2]))
        total = np.degrees(np.arccos(np.clip(abs(n[2]), 0.0, 1.0)))
        return cls(float(yaw), float(pitch), float(total))

    @property
    def bins(self) -> tuple[str, ...]:
        """The tilt bins this view falls into (one view can be, say, both left and up)."""
        if self.total_deg < TILT_BIN_DEG:
            return ("fronto",)
        found = []
        if self.yaw_deg <= -TILT_BIN_DEG:
            found.append("left")
        if self.yaw_deg >= TILT_BIN_DEG:
            found.append("right")
        if self.pitch_deg <= -TILT_BIN_DEG:
            found.append("up")
        if self.pitch_deg >= TILT_BIN_DEG:
            found.append("down")
        return tuple(found)


def guess_camera_matrix(image_size: tuple[int, int]) -> np.ndarray:
    """A rough K (3, 3) for estimating tilts before calibration: 90 degree horizontal field of view, centred.
    Tilt estimates depend only weakly on the focal length."""
    w, h = image_size
    f = w / 2.0
    return np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def estimate_tilt(detection: Detection, board: BoardSpec, K: np.ndarray) -> Tilt | None:
    """The view's tilt from a PnP pose with camera matrix ``K`` (distortion ignored), or None when PnP fails."""
    ok, rvec, _ = cv2.solvePnP(detection.object_points(board), detection.corners_px, K, None)
    if not ok:
        return None
    return Tilt.from_rotation(cv2.Rodrigues(rvec)[0])


@dataclass
class Coverage:
    """Running coverage of the views ``added`` so far, for an image of ``image_size`` (width, height) pixels."""

    image_size: tuple[int, int]
    cell_hits: np.ndarray = field(default_factory=lambda: np.zeros((GRID_ROWS, GRID_COLS), dtype=np.int64))
    tilt_hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TILT_BINS, 0))
    added: list[Detection] = field(default_factory=list)

    def cells_of(self, corners_px: np.ndarray) -> np.ndarray:
        """(rows, cols) bool mask of the grid cells that ``corners_px`` (N, 2) fall into."""
        w, h = self.image_size
        col = np.clip((corners_px[:, 0] / w * GRID_COLS).astype(int), 0, GRID_COLS - 1)
        row = np.clip((corners_px[:, 1] / h * GRID_ROWS).astype(int), 0, GRID_ROWS - 1)
        mask = np.zeros((GRID_ROWS, GRID_COLS), dtype=bool)
        mask[row, col] = True
        return mask

    def gain(self, detection: Detection, tilt: Tilt | None) -> float:
        """How much ``progress`` would rise if this view were added (0 when it adds nothing or nearly repeats a
        view already added)."""
        if self._repeats(detection):
            return 0.0
        trial = Coverage(self.image_size, self.cell_hits.copy(), dict(self.tilt_hits))
        trial.add(detection, tilt)
        return trial.progress - self.progress

    def add(self, detection: Detection, tilt: Tilt | None) -> None:
        self.cell_hits += self.cells_of(detection.corners_px)
        for name in tilt.bins if tilt is not None else ():
            self.tilt_hits[name] += 1
        self.added.append(detection)

    def snapshot(self) -> Coverage:
        """A copy that later ``add`` calls do not change."""
        return Coverage(self.image_size, self.cell_hits.copy(), dict(self.tilt_hits), list(self.added))

    def _repeats(self, detection: Detection) -> bool:
        limit = MIN_SHIFT * float(np.hypot(*self.image_size))
        for seen in self.added:
            mine, theirs = detection.common(seen)
            if len(mine) >= len(detection) // 2 and len(mine) > 0:
                if np.median(np.linalg.norm(mine.corners_px - theirs.corners_px, axis=1)) < limit:
                    return True
        return False

    @property
    def cell_fraction(self) -> float:
        """Share of grid cells hit by at least one view."""
        return float((self.cell_hits > 0).mean())

    @property
    def progress(self) -> float:
        """0..1: half from cells (each up to CELL_TARGET hits), half from tilt bins (each up to TILT_TARGET)."""
        cells = np.minimum(self.cell_hits, CELL_TARGET).mean() / CELL_TARGET
        tilts = np.mean([min(n, TILT_TARGET) / TILT_TARGET for n in self.tilt_hits.values()])
        return float(0.5 * cells + 0.5 * tilts)

    @property
    def missing_tilts(self) -> list[str]:
        return [name for name, n in self.tilt_hits.items() if n < TILT_TARGET]

    @property
    def uncovered_cells(self) -> np.ndarray:
        """(rows, cols) bool mask of cells with fewer than CELL_TARGET hits."""
        return self.cell_hits < CELL_TARGET

    def to_json(self) -> dict[str, object]:
        return {
            "grid": [GRID_COLS, GRID_ROWS],
            "cell_hits": self.cell_hits.tolist(),
            "cell_fraction": round(self.cell_fraction, 4),
            "tilt_hits": dict(self.tilt_hits),
            "progress": round(self.progress, 4),
        }
