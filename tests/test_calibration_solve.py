"""Solving cameras: OpenCV's real stereo chessboard photos, synthetic round trips with known intrinsics, bad input."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.boards import BoardSpec
from calibration.detect import BoardDetector, Detection
from calibration.render import board_view_poses, render_board_view
from calibration.session import views_from_images
from calibration.solve import View, calibrate_camera, calibrate_stereo
from skiptrack_types import CalibrationError, CameraModel, CameraModelKind

CHESSBOARD = BoardSpec.parse("chessboard:9x6:0.025")
CHARUCO = BoardSpec.parse("charuco:5x7:0.04:0.02:DICT_6X6_250")
SIZE = (640, 480)
PINHOLE = CameraModel.from_intrinsics(640, 480, 420.0, 420.0, 322.0, 236.0, [-0.28, 0.09, 0.0005, -0.0003, -0.012])
FISHEYE = CameraModel.from_intrinsics(
    640, 480, 260.0, 260.0, 318.0, 243.0, [0.02, -0.01, 0.003, -0.001], CameraModelKind.FISHEYE
)
# OpenCV's own result on the left images (left_intrinsics.yml, samples/cpp/calibration.cpp, CALIB_FIX_ASPECT_RATIO).
PHOTOS = Path(__file__).parent / "data" / "chessboard_stereo"
OPENCV_LEFT = {"fx": 535.9157, "fy": 535.9157, "cx": 342.2832, "cy": 235.5708}


@pytest.fixture(scope="module")
def stereo_photos() -> tuple[list[View | None], list[View | None]]:
    folder = PHOTOS
    left, _ = views_from_images(str(folder / "left*.jpg"), CHESSBOARD)
    right, _ = views_from_images(str(folder / "right*.jpg"), CHESSBOARD)
    return left, right


@pytest.fixture(scope="module")
def left_calibration(stereo_photos):
    left, _ = stereo_photos
    return calibrate_camera([v for v in left if v is not None], CHESSBOARD, SIZE, fix_aspect_ratio=True)


@functools.cache
def synthetic_views(board: BoardSpec, camera: CameraModel, count: int, seed: int, **pose_options) -> list[View]:
    rng = np.random.default_rng(seed)
    detector = BoardDetector(board)
    views = []
    for i, T in enumerate(board_view_poses(board, camera, count, rng, **pose_options)):
        detection = detector.detect(render_board_view(board, camera, T, rng=rng))
        if detection is not None:
            views.append(View(f"view{i:02d}", detection))
    return tuple(views)


def test_real_photos_left_camera_matches_opencv_within_one_percent(left_calibration):
    camera = left_calibration.camera
    assert left_calibration.rms_px <= 0.5
    assert len(left_calibration.views) == 13
    for name, expected in OPENCV_LEFT.items():
        assert getattr(camera, name) == pytest.approx(expected, rel=0.01), name


def test_real_photos_stereo_gives_consistent_baseline(stereo_photos, left_calibration):
    left, right = stereo_photos
    right_calibration = calibrate_camera([v for v in right if v is not None], CHESSBOARD, SIZE, fix_aspect_ratio=True)
    pairs = [(a, b) for a, b in zip(left, right, strict=True) if a is not None and b is not None]
    stereo = calibrate_stereo(pairs, CHESSBOARD, left_calibration, right_calibration)
    baselines = np.array(list(stereo.pair_baselines_m.values()))
    assert stereo.rms_px <= 0.6
    assert len(baselines) == 13
    # Every pair on its own implies (nearly) the baseline the joint solve found; camera 1 sits to the right (+x).
    assert np.abs(baselines - stereo.rig.baseline_m).max() < 0.03 * stereo.rig.baseline_m
    assert stereo.rig.T_cam0_cam1[0, 3] > 0.9 * stereo.rig.baseline_m
    assert stereo.rectified_row_error_px < 0.5


@pytest.mark.parametrize(
    ("board", "truth"),
    [(CHESSBOARD, PINHOLE), (CHESSBOARD, FISHEYE), (CHARUCO, PINHOLE), (CHARUCO, FISHEYE)],
    ids=["chessboard-pinhole", "chessboard-fisheye", "charuco-pinhole", "charuco-fisheye"],
)
def test_synthetic_views_recover_known_intrinsics(board, truth):
    views = synthetic_views(board, truth, count=16, seed=7)
    assert len(views) >= 15  # a steeply tilted chessboard can be missed, as on real photos
    result = calibrate_camera(views, board, SIZE, truth.kind)
    camera = result.camera
    assert camera.kind is truth.kind
    assert camera.fx == pytest.approx(truth.fx, rel=0.005)
    assert camera.fy == pytest.approx(truth.fy, rel=0.005)
    assert abs(camera.cx - truth.cx) < 1.0
    assert abs(camera.cy - truth.cy) < 1.0
    assert result.rms_px < 0.3
    assert result.rejected == []


def test_charuco_partial_views_are_used():
    # Boards half out of the image still give corners and still calibrate the camera.
    views = synthetic_views(CHARUCO, PINHOLE, count=10, seed=3, fill=(0.5, 0.7), margin_px=-150.0)
    partial = [v for v in views if len(v.detection) < CHARUCO.corner_count]
    assert len(partial) >= 3
    result = calibrate_camera(views, CHARUCO, SIZE)
    assert result.camera.fx == pytest.approx(PINHOLE.fx, rel=0.01)


def test_view_with_wrong_corners_is_rejected_and_named():
    views = list(synthetic_views(CHARUCO, PINHOLE, count=16, seed=7))
    bad = views[3].detection
    shuffled = Detection(bad.ids, bad.corners_px + np.random.default_rng(0).normal(0.0, 6.0, bad.corners_px.shape))
    views[3] = View("broken", shuffled)
    result = calibrate_camera(views, CHARUCO, SIZE)
    assert result.rejected == ["broken"]
    assert result.view_rms_px["broken"] > 1.0
    assert result.camera.fx == pytest.approx(PINHOLE.fx, rel=0.005)


def test_images_without_a_board_raise_a_clear_error(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"empty{i}.png"), np.full((120, 160), 128, np.uint8))
    with pytest.raises(CalibrationError, match=r"no chessboard:9x6:0.025 found in any of the 3 images"):
        views_from_images(str(tmp_path / "*.png"), CHESSBOARD)


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match=r"broken.png: not a readable image"):
        views_from_images(str(tmp_path / "*.png"), CHESSBOARD)


def test_glob_matching_nothing_raises_a_clear_error(tmp_path):
    with pytest.raises(CalibrationError, match="no images match"):
        views_from_images(str(tmp_path / "*.png"), CHESSBOARD)


def test_too_few_views_raise_a_clear_error():
    views = synthetic_views(CHARUCO, PINHOLE, count=16, seed=7)[:3]
    with pytest.raises(CalibrationError, match=r"too few views: 3 .* at least 4"):
        calibrate_camera(views, CHARUCO, SIZE)


def test_fronto_parallel_views_are_reported_as_degenerate():
    views = synthetic_views(CHARUCO, PINHOLE, count=6, seed=9, max_tilt_deg=0.5)
    with pytest.raises(CalibrationError, match="degenerate coverage: all 6 views are nearly fronto-parallel"):
        calibrate_camera(views, CHARUCO, SIZE)


def test_fix_aspect_ratio_with_fisheye_is_refused():
    views = synthetic_views(CHARUCO, FISHEYE, count=16, seed=7)
    with pytest.raises(CalibrationError, match="pinhole model only"):
        calibrate_camera(views, CHARUCO, SIZE, CameraModelKind.FISHEYE, fix_aspect_ratio=True)
