"""Calibration boards: parsing a board spec string, the board's geometry, and its printable image.

Spec strings (metres):

- ``charuco:5x7:0.04:0.02:DICT_6X6_250`` squares across x squares down, square size, marker size, ArUco dictionary;
- ``chessboard:9x6:0.025`` inner corners across x inner corners down, square size.

Board coordinates: x right and y down on the printed board, z into the board, metres. A ChArUco board's origin is
its top-left outer corner (OpenCV's convention); a chessboard's origin is its first inner corner (OpenCV's
convention for ``findChessboardCorners``). Corner ids are row-major over the inner corners for both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from skiptrack_types import CalibrationError

DEFAULT_BOARD_SPEC = "charuco:5x7:0.04:0.02:DICT_6X6_250"
METRES_PER_INCH = 0.0254


class BoardKind(enum.Enum):
    CHARUCO = "charuco"
    CHESSBOARD = "chessboard"


@dataclass(frozen=True)
class BoardSpec:
    """A calibration board. ``squares`` is (x, y) squares for ChArUco; ``inner_corners`` (x, y) for a chessboard
    is ``squares - 1``. Sizes in metres."""

    kind: BoardKind
    squares: tuple[int, int]
    square_m: float
    marker_m: float = 0.0
    dictionary: str = ""

    @classmethod
    def parse(cls, spec: str) -> BoardSpec:
        """Parse a spec string (see the module docstring); raise CalibrationError saying what is wrong."""
        parts = str(spec).strip().split(":")
        kind_name = parts[0].lower()
        try:
            kind = BoardKind(kind_name)
        except ValueError:
            raise CalibrationError(
                f"board spec {spec!r}: unknown board type {parts[0]!r}; use e.g. {DEFAULT_BOARD_SPEC} "
                "or chessboard:9x6:0.025"
            ) from None
        expected = 5 if kind is BoardKind.CHARUCO else 3
        if len(parts) != expected:
            example = DEFAULT_BOARD_SPEC if kind is BoardKind.CHARUCO else "chessboard:9x6:0.025"
            raise CalibrationError(f"board spec {spec!r} must have {expected} ':'-separated fields, e.g. {example}")
        nx, ny = _parse_grid(spec, parts[1])
        square_m = _parse_length(spec, "square size", parts[2])
        if kind is BoardKind.CHESSBOARD:
            if nx < 2 or ny < 2:
                raise CalibrationError(f"board spec {spec!r}: a chessboard needs at least 2x2 inner corners")
            return cls(kind, (nx + 1, ny + 1), square_m)
        if nx < 2 or ny < 2:
            raise CalibrationError(f"board spec {spec!r}: a ChArUco board needs at least 2x2 squares")
        marker_m = _parse_length(spec, "marker size", parts[3])
        if marker_m >= square_m:
            raise CalibrationError(
                f"board spec {spec!r}: marker size {marker_m} m must be smaller than square size {square_m} m"
            )
        dictionary = parts[4].upper()
        if not dictionary.startswith("DICT_") or not hasattr(cv2.aruco, dictionary):
            raise CalibrationError(
                f"board spec {spec!r}: unknown ArUco dictionary {parts[4]!r}; use one of OpenCV's names such as "
                "DICT_4X4_50, DICT_5X5_100, DICT_6X6_250, DICT_APRILTAG_36h11"
            )
        return cls(kind, (nx, ny), square_m, marker_m, dictionary)

    def __str__(self) -> str:
        if self.kind is BoardKind.CHESSBOARD:
            nx, ny = self.inner_corners
            return f"chessboard:{nx}x{ny}:{self.square_m:g}"
        nx, ny = self.squares
        return f"charuco:{nx}x{ny}:{self.square_m:g}:{self.marker_m:g}:{self.dictionary}"

    @property
    def inner_corners(self) -> tuple[int, int]:
        """(x, y) count of inner corners, the points that are detected and calibrated."""
        return (self.squares[0] - 1, self.squares[1] - 1)

    @property
    def corner_count(self) -> int:
        nx, ny = self.inner_corners
        return nx * ny

    @property
    def size_m(self) -> tuple[float, float]:
        """(width, height) of the checkered area in metres."""
        return (self.squares[0] * self.square_m, self.squares[1] * self.square_m)

    @cached_property
    def corner_points(self) -> np.ndarray:
        """(corner_count, 3) float64 board coordinates in metres of the inner corners, indexed by corner id."""
        if self.kind is BoardKind.CHARUCO:
            return np.asarray(self.charuco_board.getChessboardCorners(), dtype=np.float64).reshape(-1, 3)
        nx, ny = self.inner_corners
        grid = np.mgrid[0:nx, 0:ny].T.reshape(-1, 2) * self.square_m
        return np.hstack([grid, np.zeros((len(grid), 1))])

    @property
    def origin_in_checkered_area_m(self) -> tuple[float, float]:
        """Where the board origin lies, measured from the top-left outer corner of the checkered area."""
        return (0.0, 0.0) if self.kind is BoardKind.CHARUCO else (self.square_m, self.square_m)

    @cached_property
    def charuco_board(self) -> cv2.aruco.CharucoBoard:
        if self.kind is not BoardKind.CHARUCO:
            raise CalibrationError(f"{self} is not a ChArUco board")
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        board = cv2.aruco.CharucoBoard(self.squares, self.square_m, self.marker_m, dictionary)
        if len(board.getIds()) > dictionary.bytesList.shape[0]:
            raise CalibrationError(
                f"board {self} needs {len(board.getIds())} markers but {self.dictionary} has only "
                f"{dictionary.bytesList.shape[0]}; use a larger dictionary"
            )
        return board

    def render(self, px_per_square: int, margin_squares: float = 1.0) -> np.ndarray:
        """The board as a uint8 (H, W) image, black on white, with a white margin of ``margin_squares`` squares.

        The top-left outer corner of the checkered area is at pixel edge (margin, margin) where
        ``margin = round(margin_squares * px_per_square)``.
        """
        if px_per_square < 4:
            raise CalibrationError(f"px_per_square must be at least 4 to draw a board, got {px_per_square}")
        margin = int(round(margin_squares * px_per_square))
        w, h = self.squares[0] * px_per_square, self.squares[1] * px_per_square
        if self.kind is BoardKind.CHARUCO:
            area = self.charuco_board.generateImage((w, h), marginSize=0, borderBits=1)
        else:
            cells = (np.add.outer(np.arange(self.squares[1]), np.arange(self.squares[0])) % 2 == 0).astype(np.uint8)
            area = np.kron(cells * 255, np.ones((px_per_square, px_per_square), dtype=np.uint8))
        return np.pad(area, margin, constant_values=255)


def board_to_pixels(board: BoardSpec, px_per_square: int, margin_squares: float = 1.0) -> np.ndarray:
    """(3, 3) affine map from board coordinates (metres, homogeneous x, y, 1) to continuous pixel coordinates of
    ``board.render(px_per_square, margin_squares)`` (pixel centres at integer coordinates, OpenCV's convention)."""
    scale = px_per_square / board.square_m
    margin = int(round(margin_squares * px_per_square))
    ox, oy = board.origin_in_checkered_area_m
    return np.array([[scale, 0.0, margin + ox * scale - 0.5], [0.0, scale, margin + oy * scale - 0.5], [0.0, 0.0, 1.0]])


def write_printable(board: BoardSpec, path: Path, dpi: float = 300.0) -> Path:
    """Write a printable board at true scale: PDF (page size = board + margin, vector page, raster board) or PNG
    (with DPI metadata so that printing at 100% gives the right square size). Returns the path written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise CalibrationError(f"board output {path} must end in .pdf or .png")
    if not 50 <= dpi <= 2400:
        raise CalibrationError(f"--dpi must be between 50 and 2400, got {dpi}")
    px_per_square = max(4, int(round(board.square_m / METRES_PER_INCH * dpi)))
    image = board.render(px_per_square)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        true_dpi = px_per_square / board.square_m * METRES_PER_INCH
        # Pillow (a matplotlib dependency) writes the pHYs chunk that OpenCV's PNG writer cannot.
        from PIL import Image

        Image.fromarray(image).save(path, dpi=(true_dpi, true_dpi))
        return path
    _write_pdf(board, image, path)
    return path


def _write_pdf(board: BoardSpec, image: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    margin_m = board.square_m
    label_m = 0.012
    width_m = board.size_m[0] + 2 * margin_m
    height_m = board.size_m[1] + 2 * margin_m
    fig = Figure(figsize=(width_m / METRES_PER_INCH, (height_m + label_m) / METRES_PER_INCH))
    board_ax = fig.add_axes((0.0, label_m / (height_m + label_m), 1.0, height_m / (height_m + label_m)))
    board_ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    board_ax.set_axis_off()
    fig.text(
        0.5,
        0.5 * label_m / (height_m + label_m),
        f"{board}   print at 100% (no scaling): one square = {board.square_m * 1000:g} mm",
        ha="center",
        va="center",
        fontsize=7,
    )
    fig.savefig(path, format="pdf")


def png_dpi(path: Path) -> float | None:
    """The DPI stored in a PNG's metadata, or None when it has none."""
    from PIL import Image

    with Image.open(path) as png:
        dpi = png.info.get("dpi")
    return float(dpi[0]) if dpi else None


def _parse_grid(spec: str, text: str) -> tuple[int, int]:
    try:
        nx, ny = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CalibrationError(f"board spec {spec!r}: grid {text!r} must be two integers like 9x6") from None
    return nx, ny


def _parse_length(spec: str, what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CalibrationError(f"board spec {spec!r}: {what} {text!r} must be a number in metres") from None
    if not 0.0 < value < 10.0:
        raise CalibrationError(f"board spec {spec!r}: {what} must be in metres, between 0 and 10, got {value}")
    return value
