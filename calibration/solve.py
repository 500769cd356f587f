"""Solving intrinsics per camera and extrinsics per stereo pair from board detections, rejecting bad views.

Mono: ``cv2.calibrateCamera`` (pinhole + 5 radtan coefficients) or ``cv2.fisheye.calibrate`` (equidistant). A view
whose RMS reprojection error exceeds ``max(3 x median, 1 px)`` is rejected and the camera re-solved, until no view
is rejected (Zhang's method assumes Gaussian corner noise; one mis-detected view biases every parameter).
Stereo: ``cv2.stereoCalibrate`` / ``cv2.fisheye.stereoCalibrate`` with the mono intrinsics fixed, the same
rejection rule, then rectification (``StereoRig.rectification``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from calibration.boards import BoardSpec
from calibration.coverage import Coverage, Tilt
from calibration.detect import MIN_CORNERS, Detection, usable
from skiptrack_types import CalibrationError, CameraModel, CameraModelKind, StereoRig

log = logging.getLogger(__name__)

MIN_VIEWS = 4
"""Fewer views than this leave the intrinsics poorly constrained even when the solver converges."""
MIN_TILT_DEG = 10.0
"""If no view is tilted more than this, focal length cannot be told apart from board distance."""
OUTLIER_FACTOR = 3.0
OUTLIER_FLOOR_PX = 1.0
_CRITERIA = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-9)


@dataclass(frozen=True, eq=False)
class View:
    """One image's detection: ``name`` (file name or frame label), ``t_ns`` capture time when known."""

    name: str
    detection: Detection
    t_ns: int | None = None


@dataclass(frozen=True, eq=False)
class CameraCalibration:
    """Result for one camera. ``views`` are the views used in the final solve, with ``T_cam_board`` (4, 4) and
    ``residuals_px`` (N, 2) (detected minus projected) per view; ``view_rms_px`` maps every input view's name to
    its RMS error (rejected views keep the error they had when rejected)."""

    camera: CameraModel
    rms_px: float
    views: list[View]
    T_cam_board: list[np.ndarray]
    residuals_px: list[np.ndarray]
    view_rms_px: dict[str, float]
    rejected: list[str]
    coverage: Coverage
    tilts: list[Tilt] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class StereoCalibration:
    """Result for a pair: the rig, stereo RMS (px, both images), per-pair errors, rejected pair names, the
    baseline each pair implies on its own (from independent PnP in each camera, metres) and the mean vertical
    disparity of corresponding corners after rectification (px; 0 for a perfect rig)."""

    rig: StereoRig
    rms_px: float
    view_rms_px: dict[str, float]
    rejected: list[str]
    pair_baselines_m: dict[str, float]
    rectified_row_error_px: float


def calibrate_camera(
    views: list[View],
    board: BoardSpec,
    image_size: tuple[int, int],
    kind: CameraModelKind = CameraModelKind.PINHOLE_RADTAN,
    fix_aspect_ratio: bool = False,
    reject_outliers: bool = True,
) -> CameraCalibration:
    """Solve one camera's intrinsics from ``views`` of ``board`` in images of ``image_size`` (width, height)."""
    if fix_aspect_ratio and kind is CameraModelKind.FISHEYE:
        raise CalibrationError("--fix-aspect-ratio applies to the pinhole model only; cv2.fisheye has no such option")
    views = [v for v in views if usable(v.detection, board)]
    _require_views(len(views), "views with the board")
    view_rms: dict[str, float] = {}
    rejected: list[str] = []
    while True:
        camera, poses = _solve_mono(views, board, image_size, kind, fix_aspect_ratio)
        tilts = _require_tilted(poses)
        residuals = [_residuals(camera, board, v.detection, T) for v, T in zip(views, poses, strict=True)]
        errors = np.array([_rms(r) for r in residuals])
        view_rms.update({v.name: float(e) for v, e in zip(views, errors, strict=True)})
        bad = _outliers(errors) if reject_outliers else np.zeros(len(views), dtype=bool)
        if not bad.any():
            break
        _require_consistent(len(views), int(bad.sum()), errors)
        for i in bad.nonzero()[0]:
            log.info("rejecting view %s: error %.2f px > %.2f px", views[i].name, errors[i], _threshold(errors))
        rejected += [v.name for v, b in zip(views, bad, strict=True) if b]
        views = [v for v, b in zip(views, bad, strict=True) if not b]
    coverage = Coverage(image_size)
    for v, tilt in zip(views, tilts, strict=True):
        coverage.add(v.detection, tilt)
    all_res = np.vstack(residuals)
    rms = _rms(all_res)
    log.info("%s: %d views, RMS %.3f px, fx %.2f fy %.2f cx %.2f cy %.2f", kind.value, len(views), rms,
             camera.fx, camera.fy, camera.cx, camera.cy)  # fmt: skip
    return CameraCalibration(camera, rms, views, poses, residuals, view_rms, rejected, coverage, tilts)


def calibrate_stereo(
    pairs: list[tuple[View, View]],
    board: BoardSpec,
    cam0: CameraCalibration,
    cam1: CameraCalibration,
    reject_outliers: bool = True,
) -> StereoCalibration:
    """Solve ``T_cam0_cam1`` from ``pairs`` of views taken at the same time, intrinsics fixed to the mono results.

    Only the corners both cameras saw are used; the pair name is camera 0's view name.
    """
    common = []
    for v0, v1 in pairs:
        d0, d1 = v0.detection.common(v1.detection)
        if len(d0) >= MIN_CORNERS and usable(d0, board):
            common.append((v0.name, d0, d1))
    _require_views(len(common), "image pairs with the board in both cameras")
    c0, c1 = cam0.camera, cam1.camera
    view_rms: dict[str, float] = {}
    rejected: list[str] = []
    while True:
        rms, T_cam1_cam0 = _solve_stereo(common, board, c0, c1)
        errors = np.array([_pair_rms(board, c0, c1, T_cam1_cam0, d0, d1) for _, d0, d1 in common])
        view_rms.update({name: float(e) for (name, _, _), e in zip(common, errors, strict=True)})
        bad = _outliers(errors) if reject_outliers else np.zeros(len(common), dtype=bool)
        if not bad.any():
            break
        _require_consistent(len(common), int(bad.sum()), errors)
        rejected += [name for (name, _, _), b in zip(common, bad, strict=True) if b]
        log.info("rejecting stereo pairs %s (error > %.2f px)", rejected, _threshold(errors))
        common = [c for c, b in zip(common, bad, strict=True) if not b]
    rig = StereoRig(c0, c1, np.linalg.inv(T_cam1_cam0))
    baselines = {name: _pair_baseline(board, c0, c1, d0, d1) for name, d0, d1 in common}
    row_error = _rectified_row_error(rig, common)
    log.info("stereo: %d pairs, RMS %.3f px, baseline %.4f m, rectified row error %.3f px",
             len(common), rms, rig.baseline_m, row_error)  # fmt: skip
    return StereoCalibration(rig, rms, view_rms, rejected, baselines, row_error)


def board_pose(camera: CameraModel, board: BoardSpec, detection: Detection) -> np.ndarray:
    """T_cam_board (4, 4) of one detection from PnP with the camera's distortion removed."""
    normalised = camera.undistort_points(detection.corners_px)
    ok, rvec, tvec = cv2.solvePnP(detection.object_points(board), normalised, np.eye(3), None)
    if not ok:
        raise CalibrationError("PnP failed for a board view; the detection is degenerate")
    return _to_matrix(rvec, tvec)


def _solve_mono(
    views: list[View], board: BoardSpec, size: tuple[int, int], kind: CameraModelKind, fix_aspect_ratio: bool
) -> tuple[CameraModel, list[np.ndarray]]:
    obj = [v.detection.object_points(board).astype(np.float32) for v in views]
    img = [v.detection.corners_px.astype(np.float32) for v in views]
    try:
        if kind is CameraModelKind.FISHEYE:
            flags = cv2.fisheye.CALIB_RECOMPUTE_EXTRINSIC | cv2.fisheye.CALIB_FIX_SKEW
            _, K, D, rvecs, tvecs = cv2.fisheye.calibrate(
                [o.reshape(1, -1, 3).astype(np.float64) for o in obj],
                [i.reshape(1, -1, 2).astype(np.float64) for i in img],
                size, None, None, flags=flags, criteria=_CRITERIA,
            )  # fmt: skip
        else:
            flags = cv2.CALIB_FIX_ASPECT_RATIO if fix_aspect_ratio else 0
            _, K, D, rvecs, tvecs = cv2.calibrateCamera(obj, img, size, np.eye(3), None, flags=flags,
                                                        criteria=_CRITERIA)  # fmt: skip
    except cv2.error as e:
        raise CalibrationError(
            f"OpenCV could not solve the {kind.value} model from {len(views)} views ({_first_line(e)}); "
            "record more views, tilted and spread over the whole image, or try the other --model"
        ) from None
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrationError(f"the {kind.value} solve diverged (K = {K.tolist()}); record more varied views")
    camera = CameraModel(size[0], size[1], K, np.asarray(D).ravel()[: 4 if kind is CameraModelKind.FISHEYE else 5],
                         kind)  # fmt: skip
    poses = [_to_matrix(r, t) for r, t in zip(rvecs, tvecs, strict=True)]
    return camera, poses


def _solve_stereo(
    common: list[tuple[str, Detection, Detection]], board: BoardSpec, c0: CameraModel, c1: CameraModel
) -> tuple[float, np.ndarray]:
    obj = [d0.object_points(board).reshape(-1, 1, 3) for _, d0, _ in common]
    img0 = [d0.corners_px.reshape(-1, 1, 2) for _, d0, _ in common]
    img1 = [d1.corners_px.reshape(-1, 1, 2) for _, _, d1 in common]
    try:
        if c0.kind is CameraModelKind.FISHEYE:
            result = cv2.fisheye.stereoCalibrate(
                obj, img0, img1, c0.K, c0.dist, c1.K, c1.dist, c0.size,
                flags=cv2.fisheye.CALIB_FIX_INTRINSIC, criteria=_CRITERIA,
            )  # fmt: skip
        else:
            result = cv2.stereoCalibrate(
                [o.astype(np.float32) for o in obj], [i.astype(np.float32) for i in img0],
                [i.astype(np.float32) for i in img1], c0.K, c0.dist, c1.K, c1.dist, c0.size,
                flags=cv2.CALIB_FIX_INTRINSIC, criteria=_CRITERIA,
            )  # fmt: skip
    except cv2.error as e:
        raise CalibrationError(f"OpenCV could not solve the stereo extrinsics ({_first_line(e)})") from None
    rms, R, T = result[0], result[5], result[6]
    T_cam1_cam0 = np.eye(4)
    T_cam1_cam0[:3, :3] = R
    T_cam1_cam0[:3, 3] = np.asarray(T).ravel()
    return float(rms), T_cam1_cam0


def _pair_rms(
    board: BoardSpec, c0: CameraModel, c1: CameraModel, T_cam1_cam0: np.ndarray, d0: Detection, d1: Detection
) -> float:
    """RMS error (px) over both images of one pair with the board posed by PnP in camera 0."""
    T_cam0_board = board_pose(c0, board, d0)
    r0 = _residuals(c0, board, d0, T_cam0_board)
    r1 = _residuals(c1, board, d1, T_cam1_cam0 @ T_cam0_board)
    return _rms(np.vstack([r0, r1]))


def _pair_baseline(board: BoardSpec, c0: CameraModel, c1: CameraModel, d0: Detection, d1: Detection) -> float:
    T_cam0_cam1 = board_pose(c0, board, d0) @ np.linalg.inv(board_pose(c1, board, d1))
    return float(np.linalg.norm(T_cam0_cam1[:3, 3]))


def _rectified_row_error(rig: StereoRig, common: list[tuple[str, Detection, Detection]]) -> float:
    rect = rig.rectification
    rows = []
    for _, d0, d1 in common:
        p0 = _rectify_points(rig.cam0, d0.corners_px, rect.R0, rect.P0)
        p1 = _rectify_points(rig.cam1, d1.corners_px, rect.R1, rect.P1)
        rows.append(np.abs(p0[:, 1] - p1[:, 1]))
    return float(np.mean(np.concatenate(rows)))


def _rectify_points(camera: CameraModel, px: np.ndarray, R: np.ndarray, P: np.ndarray) -> np.ndarray:
    pts = px.reshape(-1, 1, 2).astype(np.float64)
    if camera.kind is CameraModelKind.FISHEYE:
        return cv2.fisheye.undistortPoints(pts, camera.K, camera.dist, R=R, P=P).reshape(-1, 2)
    return cv2.undistortPoints(pts, camera.K, camera.dist, R=R, P=P).reshape(-1, 2)


def _residuals(camera: CameraModel, board: BoardSpec, detection: Detection, T_cam_board: np.ndarray) -> np.ndarray:
    points_cam = detection.object_points(board) @ T_cam_board[:3, :3].T + T_cam_board[:3, 3]
    return detection.corners_px - camera.project(points_cam)


def _rms(residuals: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum(residuals**2, axis=1))))


def _threshold(errors: np.ndarray) -> float:
    return max(OUTLIER_FACTOR * float(np.median(errors)), OUTLIER_FLOOR_PX)


def _outliers(errors: np.ndarray) -> np.ndarray:
    return errors > _threshold(errors)


def _require_views(count: int, what: str) -> None:
    if count < MIN_VIEWS:
        raise CalibrationError(
            f"too few views: {count} {what}, calibration needs at least {MIN_VIEWS} (aim for 15-30, tilted "
            "and covering the whole image, corners included)"
        )


def _require_tilted(poses: list[np.ndarray]) -> list[Tilt]:
    tilts = [Tilt.from_rotation(T[:3, :3]) for T in poses]
    largest = max(t.total_deg for t in tilts)
    if largest < MIN_TILT_DEG:
        raise CalibrationError(
            f"degenerate coverage: all {len(poses)} views are nearly fronto-parallel (largest board tilt "
            f"{largest:.1f} deg < {MIN_TILT_DEG:g} deg), so focal length cannot be separated from distance. "
            "Record views with the board tilted 20-45 deg towards each side"
        )
    return tilts


def _require_consistent(count: int, bad: int, errors: np.ndarray) -> None:
    if count - bad < MIN_VIEWS:
        raise CalibrationError(
            f"{bad} of {count} views have reprojection errors above {_threshold(errors):.2f} px, leaving fewer "
            f"than {MIN_VIEWS} consistent views; check the board spec and record sharper views"
        )


def _to_matrix(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64))[0]
    T[:3, 3] = np.asarray(tvec, dtype=np.float64).ravel()
    return T


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
