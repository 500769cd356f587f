"""Boards: spec strings, printable output at true scale, and detection with sub-pixel accuracy."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from calibration.boards import BoardKind, BoardSpec, board_to_pixels, png_dpi, write_printable
from calibration.detect import BoardDetector
from skiptrack_types import CalibrationError

CHARUCO = BoardSpec.parse("charuco:5x7:0.04:0.02:DICT_6X6_250")
CHESSBOARD = BoardSpec.parse("chessboard:9x6:0.025")


def test_spec_strings_parse_into_board_geometry():
    assert CHARUCO.kind is BoardKind.CHARUCO
    assert CHARUCO.squares == (5, 7) and CHARUCO.inner_corners == (4, 6)
    assert CHARUCO.marker_m == 0.02 and CHARUCO.dictionary == "DICT_6X6_250"
    assert CHESSBOARD.inner_corners == (9, 6) and CHESSBOARD.squares == (10, 7)
    assert str(CHARUCO) == "charuco:5x7:0.04:0.02:DICT_6X6_250"
    assert BoardSpec.parse(str(CHESSBOARD)) == CHESSBOARD
    # Corner ids are row-major: id 1 is one square to the right of id 0, id nx one square down.
    points = CHESSBOARD.corner_points
    np.testing.assert_allclose(points[1] - points[0], [0.025, 0.0, 0.0])
    np.testing.assert_allclose(points[9] - points[0], [0.0, 0.025, 0.0])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("aruco:5x7:0.04", "unknown board type 'aruco'"),
        ("charuco:5x7:0.04", "must have 5 ':'-separated fields"),
        ("chessboard:9by6:0.025", "grid '9by6' must be two integers like 9x6"),
        ("chessboard:9x6:25", "square size must be in metres"),
        ("charuco:5x7:0.04:0.05:DICT_6X6_250", "marker size 0.05 m must be smaller than square size"),
        ("charuco:5x7:0.04:0.02:DICT_7X7_1", "unknown ArUco dictionary"),
        ("charuco:20x20:0.04:0.02:DICT_4X4_50", "has only 50"),
    ],
)
def test_bad_spec_raises_a_clear_error(spec, message):
    with pytest.raises(CalibrationError, match=re.escape(message)):
        BoardSpec.parse(spec).corner_points  # noqa: B018 (the dictionary size is checked when the board is built)


def test_png_is_written_at_true_scale_and_detects(tmp_path):
    path = write_printable(CHESSBOARD, tmp_path / "board.png", dpi=150)
    dpi = png_dpi(path)
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    # Width = 10 squares + a one-square margin each side, printed at the stored DPI.
    printed_width_m = image.shape[1] / dpi * 0.0254
    assert printed_width_m == pytest.approx(12 * 0.025, rel=1e-3)
    assert dpi == pytest.approx(150, rel=0.02)
    detection = BoardDetector(CHESSBOARD).detect(image)
    assert detection is not None and len(detection) == 54


def test_pdf_page_is_the_board_size(tmp_path):
    path = write_printable(CHARUCO, tmp_path / "board.pdf")
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    width_pt = float(re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", data).group(1))
    # 5 squares of 40 mm plus a one-square margin each side.
    assert width_pt / 72 * 0.0254 == pytest.approx(7 * 0.04, rel=1e-3)


def test_rendered_board_corners_are_found_to_a_tenth_of_a_pixel():
    px_per_square = 40
    image = CHARUCO.render(px_per_square)
    detection = BoardDetector(CHARUCO).detect(image)
    assert detection is not None and len(detection) == CHARUCO.corner_count
    xy1 = np.column_stack([detection.object_points(CHARUCO)[:, :2], np.ones(len(detection))])
    expected = (xy1 @ board_to_pixels(CHARUCO, px_per_square).T)[:, :2]
    assert np.abs(detection.corners_px - expected).max() < 0.1


def test_charuco_detects_a_partly_hidden_board():
    image = CHARUCO.render(40)
    image[: image.shape[0] // 2] = 255
    detection = BoardDetector(CHARUCO).detect(image)
    assert detection is not None
    assert 6 <= len(detection) < CHARUCO.corner_count
    assert detection.ids.min() >= CHARUCO.inner_corners[0] * 2


def test_image_without_a_board_gives_no_detection():
    blank = np.full((240, 320), 200, np.uint8)
    assert BoardDetector(CHARUCO).detect(blank) is None
    assert BoardDetector(CHESSBOARD).detect(blank) is None
