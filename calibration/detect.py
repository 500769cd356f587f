"""Finding a calibration board's corners in an image, with sub-pixel refinement.

Chessboards use ``cv2.findChessboardCornersSB`` (whole board or nothing) refined by ``cv2.cornerSubPix``; ChArUco
boards use ``cv2.aruco.CharucoDetector``, which refines the corners itself and works with partial views.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.boards import BoardKind, BoardSpec
from skiptrack_types import CalibrationError, require_array

MIN_CORNERS = 6
"""A view with fewer corners (or all on one line) constrains the camera too weakly to use."""

_SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 40, 0.001)


@dataclass(frozen=True, eq=False)
class Detection:
    """The board corners found in one image: ``ids`` (N,) int corner ids (row-major over the inner corners) and
    ``corners_px`` (N, 2) float64 pixel positions (pixel centres at integer coordinates)."""

    ids: np.ndarray
    corners_px: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int32).ravel()
        corners = require_array("corners_px", np.asarray(self.corners_px, dtype=np.float64).reshape(-1, 2), (None, 2))
        if len(ids) != len(corners):
            raise CalibrationError(f"a detection needs one id per corner, got {len(ids)} ids for {len(corners)}")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "corners_px", corners)

    def __len__(self) -> int:
        return len(self.ids)

    def object_points(self, board: BoardSpec) -> np.ndarray:
        """(N, 3) board coordinates in metres of the detected corners."""
        if len(self.ids) and (self.ids.min() < 0 or self.ids.max() >= board.corner_count):
            raise CalibrationError(f"corner ids {self.ids.min()}..{self.ids.max()} do not fit board {board}")
        return board.corner_points[self.ids]

    def common(self, other: Detection) -> tuple[Detection, Detection]:
        """The two detections restricted to the corner ids both contain, in the same order (for stereo pairs)."""
        shared, i_self, i_other = np.intersect1d(self.ids, other.ids, return_indices=True)
        return (Detection(shared, self.corners_px[i_self]), Detection(shared, other.corners_px[i_other]))

    def to_json(self) -> dict[str, list]:
        return {"ids": self.ids.tolist(), "corners_px": np.round(self.corners_px, 4).tolist()}

    @classmethod
    def from_json(cls, data: dict[str, list]) -> Detection:
        return cls(np.asarray(data["ids"]), np.asarray(data["corners_px"], dtype=np.float64))


class BoardDetector:
    """Detects one board in uint8 (H, W) grayscale images; reuse one detector for many images."""

    def __init__(self, board: BoardSpec) -> None:
        self.board = board
        if board.kind is BoardKind.CHARUCO:
            self._charuco = cv2.aruco.CharucoDetector(board.charuco_board)

    def detect(self, image: np.ndarray) -> Detection | None:
        """The board's corners in ``image``, or None when too few of them were found to be useful."""
        require_array("image", image, (None, None), np.uint8)
        if self.board.kind is BoardKind.CHESSBOARD:
            detection = self._detect_chessboard(image)
        else:
            detection = self._detect_charuco(image)
        if detection is None or not usable(detection, self.board):
            return None
        return detection

    def _detect_chessboard(self, image: np.ndarray) -> Detection | None:
        flags = cv2.CALIB_CB_ACCURACY | cv2.CALIB_CB_NORMALIZE_IMAGE
        found, corners = cv2.findChessboardCornersSB(image, self.board.inner_corners, flags=flags)
        if not found:
            return None
        corners = corners.reshape(-1, 1, 2).astype(np.float32)
        # The refinement window must stay inside one square, or it locks onto the neighbouring corner.
        half = int(np.clip(0.2 * _min_spacing(corners.reshape(-1, 2), self.board.inner_corners), 2, 5))
        corners = cv2.cornerSubPix(image, corners, (half, half), (-1, -1), _SUBPIX_CRITERIA)
        return Detection(np.arange(self.board.corner_count), corners.reshape(-1, 2))

    def _detect_charuco(self, image: np.ndarray) -> Detection | None:
        corners, ids, _, _ = self._charuco.detectBoard(image)
        if ids is None or len(ids) == 0:
            return None
        return Detection(ids.ravel(), corners.reshape(-1, 2))


def usable(detection: Detection, board: BoardSpec) -> bool:
    """Enough corners, spanning at least two rows and two columns of the board (so not on one line)."""
    if len(detection) < MIN_CORNERS:
        return False
    nx = board.inner_corners[0]
    rows, cols = np.unique(detection.ids // nx), np.unique(detection.ids % nx)
    return len(rows) >= 2 and len(cols) >= 2


def _min_spacing(corners: np.ndarray, inner_corners: tuple[int, int]) -> float:
    nx, ny = inner_corners
    grid = corners.reshape(ny, nx, 2)
    across = np.linalg.norm(np.diff(grid, axis=1), axis=2)
    down = np.linalg.norm(np.diff(grid, axis=0), axis=2)
    return float(min(across.min(), down.min()))
