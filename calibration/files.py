"""Calibration files: OpenCV FileStorage YAML, Kalibr ``camchain.yaml`` and EuRoC ``sensor.yaml``.

``load_calibration(path)`` reads any of them (a folder with ``cam0/sensor.yaml`` and ``cam1/sensor.yaml`` is a EuRoC
rig) into a ``CameraModel`` or ``StereoRig``; ``save_calibration`` writes the first two (and ``save_euroc_rig`` the
third). A corrupt or incomplete file raises one CalibrationError naming the file and the field.

Layouts
- OpenCV, one camera (the keys of OpenCV's ``samples/cpp/calibration.cpp``, so its files load too):
  ``image_width``, ``image_height``, ``camera_model`` (``pinhole-radtan`` | ``fisheye``; absent = pinhole-radtan),
  ``camera_matrix`` (3x3), ``distortion_coefficients`` (5x1 k1 k2 p1 p2 k3, or 4x1 fisheye k1..k4).
- OpenCV, stereo (the keys of OpenCV's ``stereo_calib.cpp``): ``M1``, ``D1``, ``M2``, ``D2`` and ``R``, ``T`` with
  OpenCV's meaning (x_cam1 = R x_cam0 + T, so they are T_cam1_cam0), plus ``T_head_cam0``, ``T_head_imu`` (4x4);
  the rectification ``R1``, ``R2``, ``P1``, ``P2``, ``Q`` is written for OpenCV users and recomputed on load.
- Kalibr: ``camN.camera_model: pinhole``, ``intrinsics: [fu, fv, pu, pv]``, ``distortion_model: radtan |
  equidistant``, ``distortion_coeffs``, ``resolution: [w, h]``, ``cam1.T_cn_cnm1`` = T_cam1_cam0, optional
  ``cam0.T_cam_imu``. Kalibr's radtan has 4 coefficients; a non-zero k3 is written as a fifth (with a warning).
  Kalibr has no field for the head pose: loading puts the head frame at camera 0 with OpenXR axes
  (``T_head_cam0`` = ``T_OPENXR_OPENCV``, StereoRig's convention for an unknown placement) and keeps T_cam0_imu.
- EuRoC ``sensor.yaml``: ``T_BS`` (body-sensor, ``data`` 16 numbers row-major), ``resolution``, ``camera_model``,
  ``intrinsics``, ``distortion_model``, ``distortion_coefficients``. The body frame of EuRoC is the IMU, so a rig
  read from cam0 + cam1 gets the head frame at camera 0 with OpenXR axes and ``T_head_imu`` =
  ``T_OPENXR_OPENCV @ T_cam0_imu``.
"""

from __future__ import annotations

import enum
import logging
from pathlib import Path

import cv2
import numpy as np
import yaml

from skiptrack_types import (
    T_OPENXR_OPENCV,
    CalibrationError,
    CameraModel,
    CameraModelKind,
    SkipTrackError,
    StereoRig,
)

log = logging.getLogger(__name__)

Calibration = CameraModel | StereoRig


class FileFormat(enum.Enum):
    OPENCV = "opencv"
    KALIBR = "kalibr"


_KALIBR_DISTORTION = {CameraModelKind.PINHOLE_RADTAN: "radtan", CameraModelKind.FISHEYE: "equidistant"}
_EUROC_DISTORTION = {CameraModelKind.PINHOLE_RADTAN: "radial-tangential", CameraModelKind.FISHEYE: "equidistant"}


# --------------------------------------------------------------------------------------------------- loading


def load_calibration(path: str | Path) -> Calibration:
    """Read an OpenCV YAML, Kalibr camchain or EuRoC sensor.yaml file (or a EuRoC folder with cam0/ and cam1/)."""
    path = Path(path)
    if path.is_dir():
        return load_euroc_rig(path / "cam0" / "sensor.yaml", path / "cam1" / "sensor.yaml")
    text = _read_text(path)
    if "opencv-matrix" in text:
        return _load_opencv(path)
    data = _parse_yaml(path, text)
    if "T_BS" in data or "sensor_type" in data:
        return _euroc_camera(path, data)[0]
    if "cam0" in data:
        return _load_kalibr(path, data)
    raise CalibrationError(
        f"{path}: not a calibration file SkipTrack knows (expected OpenCV YAML with camera_matrix or M1, a Kalibr "
        "camchain with cam0, or a EuRoC sensor.yaml with T_BS)"
    )


def load_euroc_rig(cam0_yaml: str | Path, cam1_yaml: str | Path) -> StereoRig:
    """A rig from EuRoC's ``cam0/sensor.yaml`` and ``cam1/sensor.yaml`` (camera poses in the body = IMU frame)."""
    cam0, T_imu_cam0 = _euroc_camera(Path(cam0_yaml), _parse_yaml(Path(cam0_yaml), _read_text(Path(cam0_yaml))))
    cam1, T_imu_cam1 = _euroc_camera(Path(cam1_yaml), _parse_yaml(Path(cam1_yaml), _read_text(Path(cam1_yaml))))
    T_cam0_imu = np.linalg.inv(T_imu_cam0)
    return _rig(Path(cam0_yaml), cam0, cam1, T_cam0_imu @ T_imu_cam1, **_head_at_cam0(T_cam0_imu))


def _load_opencv(path: Path) -> Calibration:
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as e:
        # OpenCV's Python constructor reports parse errors as a SystemError caused by the cv2.error.
        reason = str(e.__cause__ or e).strip().splitlines()[-1]
        raise CalibrationError(f"{path}: not a readable OpenCV YAML file ({reason})") from None
    try:
        size = (_cv_int(fs, path, "image_width"), _cv_int(fs, path, "image_height"))
        kind = _kind(path, "camera_model", fs.getNode("camera_model").string() or CameraModelKind.PINHOLE_RADTAN.value)
        if fs.getNode("M1").empty():
            K, dist = _cv_mat(fs, path, "camera_matrix", (3, 3)), _cv_mat(fs, path, "distortion_coefficients")
            return _camera(path, "camera_matrix", size, K, dist, kind)
        cam0 = _camera(path, "M1", size, _cv_mat(fs, path, "M1", (3, 3)), _cv_mat(fs, path, "D1"), kind)
        cam1 = _camera(path, "M2", size, _cv_mat(fs, path, "M2", (3, 3)), _cv_mat(fs, path, "D2"), kind)
        T_cam1_cam0 = np.eye(4)
        T_cam1_cam0[:3, :3] = _cv_mat(fs, path, "R", (3, 3))
        translation = _cv_mat(fs, path, "T")
        if translation.size != 3:
            raise CalibrationError(
                f"{path}: field T must be 3 numbers (camera 0's origin in camera 1), got {translation.size}"
            )
        T_cam1_cam0[:3, 3] = translation.ravel()
        heads = {name: _cv_optional(fs, path, name, (4, 4)) for name in ("T_head_cam0", "T_head_imu")}
        return _rig(path, cam0, cam1, np.linalg.inv(T_cam1_cam0), **{k: v for k, v in heads.items() if v is not None})
    finally:
        fs.release()


def _load_kalibr(path: Path, data: dict) -> Calibration:
    cams = [_kalibr_camera(path, data, f"cam{i}") for i in range(2) if f"cam{i}" in data]
    T_cam_imu = _optional_matrix(path, data["cam0"], "cam0.T_cam_imu")
    if len(cams) == 1:
        return cams[0]
    extra = sorted(k for k in data if k.startswith("cam") and k not in ("cam0", "cam1"))
    if extra:
        log.warning("%s: using cam0 and cam1 only, ignoring %s", path, ", ".join(extra))
    T_cam1_cam0 = _optional_matrix(path, data["cam1"], "cam1.T_cn_cnm1")
    if T_cam1_cam0 is None:
        raise CalibrationError(f"{path}: missing field cam1.T_cn_cnm1 (pose of cam0 in cam1, 4x4)")
    heads = _head_at_cam0(T_cam_imu) if T_cam_imu is not None else {}
    return _rig(path, cams[0], cams[1], np.linalg.inv(T_cam1_cam0), **heads)


def _kalibr_camera(path: Path, data: dict, name: str) -> CameraModel:
    cam = data[name]
    if not isinstance(cam, dict):
        raise CalibrationError(f"{path}: field {name} must be a mapping of camera parameters")
    model = _field(path, cam, name, "camera_model")
    if model != "pinhole":
        raise CalibrationError(f"{path}: field {name}.camera_model is {model!r}; SkipTrack reads pinhole cameras only")
    distortion = _field(path, cam, name, "distortion_model")
    kinds = {v: k for k, v in _KALIBR_DISTORTION.items()}
    if distortion not in kinds:
        raise CalibrationError(
            f"{path}: field {name}.distortion_model must be radtan or equidistant, got {distortion!r}"
        )
    fu, fv, pu, pv = _numbers(path, f"{name}.intrinsics", _field(path, cam, name, "intrinsics"), (4,))
    w, h = _numbers(path, f"{name}.resolution", _field(path, cam, name, "resolution"), (2,))
    coeffs = _numbers(path, f"{name}.distortion_coeffs", _field(path, cam, name, "distortion_coeffs"), (None,))
    K = np.array([[fu, 0.0, pu], [0.0, fv, pv], [0.0, 0.0, 1.0]])
    return _camera(path, f"{name}.distortion_coeffs", (int(w), int(h)), K, coeffs, kinds[distortion])


def _euroc_camera(path: Path, data: dict) -> tuple[CameraModel, np.ndarray]:
    """The camera and its T_BS (4, 4), pose of the sensor in the body frame."""
    t_bs = _field(path, data, "", "T_BS")
    if not isinstance(t_bs, dict):
        raise CalibrationError(f"{path}: field T_BS must be a mapping with rows, cols and data (16 numbers)")
    T_BS = _numbers(path, "T_BS.data", _field(path, t_bs, "T_BS", "data"), (16,)).reshape(4, 4)
    model = _field(path, data, "", "camera_model")
    if model != "pinhole":
        raise CalibrationError(f"{path}: field camera_model is {model!r}; SkipTrack reads pinhole cameras only")
    distortion = _field(path, data, "", "distortion_model")
    kinds = {v: k for k, v in _EUROC_DISTORTION.items()}
    if distortion not in kinds:
        raise CalibrationError(
            f"{path}: field distortion_model must be radial-tangential or equidistant, got {distortion!r}"
        )
    fu, fv, cu, cv = _numbers(path, "intrinsics", _field(path, data, "", "intrinsics"), (4,))
    w, h = _numbers(path, "resolution", _field(path, data, "", "resolution"), (2,))
    coeffs = _numbers(path, "distortion_coefficients", _field(path, data, "", "distortion_coefficients"), (None,))
    K = np.array([[fu, 0.0, cu], [0.0, fv, cv], [0.0, 0.0, 1.0]])
    camera = _camera(path, "distortion_coefficients", (int(w), int(h)), K, coeffs, kinds[distortion])
    return camera, _transform(path, "T_BS", T_BS)


# --------------------------------------------------------------------------------------------------- saving


def save_calibration(calibration: Calibration, path: str | Path, file_format: FileFormat = FileFormat.OPENCV) -> Path:
    """Write ``calibration`` as OpenCV FileStorage YAML or a Kalibr camchain; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writers = {FileFormat.OPENCV: _save_opencv, FileFormat.KALIBR: _save_kalibr}
    writers[file_format](calibration, path)
    return path


def save_euroc_rig(rig: StereoRig, folder: str | Path, rate_hz: float = 20.0) -> Path:
    """Write ``folder/cam0/sensor.yaml`` and ``folder/cam1/sensor.yaml`` with the body frame = the rig's IMU."""
    folder = Path(folder)
    T_imu_cam0 = np.linalg.inv(rig.T_head_imu) @ rig.T_head_cam0
    for i, (camera, T_BS) in enumerate(((rig.cam0, T_imu_cam0), (rig.cam1, T_imu_cam0 @ rig.T_cam0_cam1))):
        data = {
            "sensor_type": "camera",
            "comment": f"cam{i}, written by SkipTrack",
            "T_BS": {"cols": 4, "rows": 4, "data": [float(v) for v in T_BS.ravel()]},
            "rate_hz": rate_hz,
            "resolution": [camera.width, camera.height],
            "camera_model": "pinhole",
            "intrinsics": [camera.fx, camera.fy, camera.cx, camera.cy],
            "distortion_model": _EUROC_DISTORTION[camera.kind],
            "distortion_coefficients": _distortion_list(camera),
        }
        out = folder / f"cam{i}" / "sensor.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
    return folder


def _save_opencv(calibration: Calibration, path: Path) -> None:
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    try:
        cam0 = calibration if isinstance(calibration, CameraModel) else calibration.cam0
        fs.write("image_width", cam0.width)
        fs.write("image_height", cam0.height)
        fs.write("camera_model", cam0.kind.value)
        if isinstance(calibration, CameraModel):
            fs.write("camera_matrix", cam0.K)
            fs.write("distortion_coefficients", cam0.dist.reshape(-1, 1))
            return
        rig = calibration
        T_cam1_cam0 = np.linalg.inv(rig.T_cam0_cam1)
        for name, value in (("M1", rig.cam0.K), ("D1", rig.cam0.dist.reshape(-1, 1)), ("M2", rig.cam1.K),
                            ("D2", rig.cam1.dist.reshape(-1, 1)), ("R", T_cam1_cam0[:3, :3]),
                            ("T", T_cam1_cam0[:3, 3].reshape(3, 1)), ("T_head_cam0", rig.T_head_cam0),
                            ("T_head_imu", rig.T_head_imu)):  # fmt: skip
            fs.write(name, value)
        rect = rig.rectification
        for name, value in (("R1", rect.R0), ("R2", rect.R1), ("P1", rect.P0), ("P2", rect.P1), ("Q", rect.Q)):
            fs.write(name, np.asarray(value, dtype=np.float64))
    finally:
        fs.release()


def _save_kalibr(calibration: Calibration, path: Path) -> None:
    cameras = [calibration] if isinstance(calibration, CameraModel) else list(calibration.cameras)
    data: dict[str, dict] = {}
    for i, camera in enumerate(cameras):
        entry: dict[str, object] = {
            "camera_model": "pinhole",
            "intrinsics": [camera.fx, camera.fy, camera.cx, camera.cy],
            "distortion_model": _KALIBR_DISTORTION[camera.kind],
            "distortion_coeffs": _distortion_list(camera),
            "resolution": [camera.width, camera.height],
            "rostopic": f"/cam{i}/image_raw",
        }
        if i == 1:
            entry["T_cn_cnm1"] = np.linalg.inv(calibration.T_cam0_cam1).tolist()
        data[f"cam{i}"] = entry
    if isinstance(calibration, StereoRig) and not _head_unknown(calibration):
        data["cam0"]["T_cam_imu"] = (np.linalg.inv(calibration.T_head_cam0) @ calibration.T_head_imu).tolist()
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def _head_at_cam0(T_cam0_imu: np.ndarray) -> dict[str, np.ndarray]:
    """Head poses for a file that knows camera-to-IMU but not the head: the head frame sits at camera 0 with
    OpenXR axes (StereoRig's convention for an unknown placement)."""
    return {"T_head_cam0": T_OPENXR_OPENCV.copy(), "T_head_imu": T_OPENXR_OPENCV @ T_cam0_imu}


def _head_unknown(rig: StereoRig) -> bool:
    """True when the rig still has StereoRig's defaults, i.e. no camera-to-IMU relation is known."""
    return np.allclose(rig.T_head_cam0, T_OPENXR_OPENCV) and np.allclose(rig.T_head_imu, np.eye(4))


def _distortion_list(camera: CameraModel) -> list[float]:
    coeffs = [float(v) for v in camera.dist]
    if camera.kind is CameraModelKind.PINHOLE_RADTAN:
        if coeffs[4] == 0.0:
            return coeffs[:4]
        log.warning("k3 = %g is written as a fifth radtan coefficient; Kalibr and EuRoC tools expect four",
                    coeffs[4])  # fmt: skip
    return coeffs


# --------------------------------------------------------------------------------------------------- helpers


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise CalibrationError(f"{path}: calibration file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: cannot read calibration file ({e})") from None


def _parse_yaml(path: Path, text: str) -> dict:
    # EuRoC files may carry OpenCV's "%YAML:1.0" directive, which is not valid YAML for PyYAML.
    if text.startswith("%YAML:"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CalibrationError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: expected a YAML mapping of calibration fields, got {type(data).__name__}")
    return data


def _field(path: Path, data: dict, section: str, key: str) -> object:
    if key not in data or data[key] is None:
        raise CalibrationError(f"{path}: missing field {section + '.' if section else ''}{key}")
    return data[key]


def _numbers(path: Path, name: str, value: object, shape: tuple[int | None, ...]) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{path}: field {name} must hold numbers, got {value!r}") from None
    if array.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, array.shape, strict=True)):
        raise CalibrationError(f"{path}: field {name} must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all():
        raise CalibrationError(f"{path}: field {name} contains NaN or infinite values")
    return array


def _optional_matrix(path: Path, section: dict, name: str) -> np.ndarray | None:
    key = name.split(".")[-1]
    if key not in section:
        return None
    return _transform(path, name, _numbers(path, name, section[key], (4, 4)))


def _transform(path: Path, name: str, T: np.ndarray) -> np.ndarray:
    R = T[:3, :3]
    if not np.allclose(T[3], (0, 0, 0, 1), atol=1e-6) or not np.allclose(R @ R.T, np.eye(3), atol=1e-4):
        raise CalibrationError(
            f"{path}: field {name} is not a rigid transform (rotation + translation, last row 0 0 0 1)"
        )
    return T


def _kind(path: Path, name: str, value: str) -> CameraModelKind:
    try:
        return CameraModelKind(value)
    except ValueError:
        options = ", ".join(k.value for k in CameraModelKind)
        raise CalibrationError(f"{path}: field {name} must be one of {options}, got {value!r}") from None


def _camera(
    path: Path, name: str, size: tuple[int, int], K: np.ndarray, dist: np.ndarray, kind: CameraModelKind
) -> CameraModel:
    dist = np.asarray(dist, dtype=np.float64).ravel()
    if kind is CameraModelKind.PINHOLE_RADTAN and len(dist) == 4:
        dist = np.append(dist, 0.0)
    expected = 4 if kind is CameraModelKind.FISHEYE else 5
    if len(dist) != expected:
        raise CalibrationError(
            f"{path}: field {name}: the {kind.value} model needs {expected} distortion coefficients, got {len(dist)}"
        )
    try:
        return CameraModel(size[0], size[1], K, dist, kind)
    except SkipTrackError as e:
        raise CalibrationError(f"{path}: field {name}: {e}") from None


def _rig(path: Path, cam0: CameraModel, cam1: CameraModel, T_cam0_cam1: np.ndarray, **heads: np.ndarray) -> StereoRig:
    try:
        return StereoRig(cam0, cam1, T_cam0_cam1, **heads)
    except SkipTrackError as e:
        raise CalibrationError(f"{path}: {e}") from None


def _cv_int(fs: cv2.FileStorage, path: Path, name: str) -> int:
    node = fs.getNode(name)
    if node.empty() or not node.isInt():
        raise CalibrationError(f"{path}: missing or non-integer field {name}")
    return int(node.real())


def _cv_mat(fs: cv2.FileStorage, path: Path, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    node = fs.getNode(name)
    mat = None if node.empty() else node.mat()
    if mat is None:
        raise CalibrationError(f"{path}: missing field {name} (an !!opencv-matrix)")
    mat = np.asarray(mat, dtype=np.float64)
    if shape is not None and mat.shape != shape:
        raise CalibrationError(f"{path}: field {name} must be a {shape[0]}x{shape[1]} matrix, got {mat.shape}")
    if not np.isfinite(mat).all():
        raise CalibrationError(f"{path}: field {name} contains NaN or infinite values")
    return mat


def _cv_optional(fs: cv2.FileStorage, path: Path, name: str, shape: tuple[int, int]) -> np.ndarray | None:
    if fs.getNode(name).empty():
        return None
    return _transform(path, name, _cv_mat(fs, path, name, shape))
