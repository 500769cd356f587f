"""Calibration files: OpenCV YAML, Kalibr camchain and EuRoC sensor.yaml round trips, and clear errors on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from calibration.files import FileFormat, load_calibration, load_euroc_rig, save_calibration, save_euroc_rig
from skiptrack_types import T_OPENXR_OPENCV, CalibrationError, CameraModel, CameraModelKind, StereoRig

PHOTOS = Path(__file__).parent / "data" / "chessboard_stereo"

# The layout of EuRoC MAV's mav0/cam0/sensor.yaml (values of the V1_01 sequence's cam0 and cam1).
EUROC_CAM0 = """# General sensor definitions.
sensor_type: camera
comment: VI-Sensor cam0 (MT9M034)

# Sensor extrinsics wrt. the body-frame.
T_BS:
  cols: 4
  rows: 4
  data: [0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975,
         0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768,
        -0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949,
         0.0, 0.0, 0.0, 1.0]

# Camera specific definitions.
rate_hz: 20
resolution: [752, 480]
camera_model: pinhole
intrinsics: [458.654, 457.296, 367.215, 248.375] #fu, fv, cu, cv
distortion_model: radial-tangential
distortion_coefficients: [-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05]
"""
EUROC_CAM1 = (
    EUROC_CAM0.replace("cam0", "cam1")
    .replace(
        """  data: [0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975,
         0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768,
        -0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949,""",
        """  data: [0.0125552670891, -0.999755099723, 0.0182237714554, -0.0198435579556,
         0.999598781151, 0.0130119051815, 0.0251588363115, 0.0453689425024,
        -0.0253898008918, 0.0179005838253, 0.999517347078, 0.00786212447038,""",
    )
    .replace("[458.654, 457.296, 367.215, 248.375]", "[457.587, 456.134, 379.999, 255.238]")
)


def make_rig(kind: CameraModelKind = CameraModelKind.PINHOLE_RADTAN) -> StereoRig:
    n = 4 if kind is CameraModelKind.FISHEYE else 5
    dist0 = np.array([-0.21, 0.05, 0.001, -0.0005, 0.01][:n])
    cam0 = CameraModel.from_intrinsics(320, 240, 161.5, 162.0, 159.2, 121.7, dist0, kind)
    cam1 = CameraModel.from_intrinsics(320, 240, 160.8, 161.1, 160.4, 119.9, dist0 * 0.9, kind)
    T_cam0_cam1 = np.eye(4)
    T_cam0_cam1[:3, :3] = Rotation.from_euler("xyz", [0.5, -1.0, 0.3], degrees=True).as_matrix()
    T_cam0_cam1[:3, 3] = [0.064, 0.001, -0.002]
    T_head_cam0 = np.eye(4)
    T_head_cam0[:3, :3] = Rotation.from_euler("x", 180, degrees=True).as_matrix()
    T_head_cam0[:3, 3] = [-0.032, 0.0, -0.05]
    T_head_imu = np.eye(4)
    T_head_imu[:3, 3] = [0.0, -0.01, -0.04]
    return StereoRig(cam0, cam1, T_cam0_cam1, T_head_cam0, T_head_imu)


def assert_same_camera(a: CameraModel, b: CameraModel) -> None:
    assert a.kind is b.kind and a.size == b.size
    np.testing.assert_allclose(a.K, b.K, atol=1e-9)
    np.testing.assert_allclose(a.dist, b.dist, atol=1e-12)


@pytest.mark.parametrize("kind", list(CameraModelKind), ids=lambda k: k.value)
@pytest.mark.parametrize("file_format", list(FileFormat), ids=lambda f: f.value)
def test_camera_round_trips(tmp_path, kind, file_format):
    camera = make_rig(kind).cam0
    loaded = load_calibration(save_calibration(camera, tmp_path / "camera.yaml", file_format))
    assert isinstance(loaded, CameraModel)
    assert_same_camera(loaded, camera)


@pytest.mark.parametrize("kind", list(CameraModelKind), ids=lambda k: k.value)
def test_rig_round_trips_through_opencv_yaml(tmp_path, kind):
    rig = make_rig(kind)
    loaded = load_calibration(save_calibration(rig, tmp_path / "rig.yaml"))
    assert isinstance(loaded, StereoRig)
    assert_same_camera(loaded.cam0, rig.cam0)
    assert_same_camera(loaded.cam1, rig.cam1)
    for name in ("T_cam0_cam1", "T_head_cam0", "T_head_imu"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(rig, name), atol=1e-12)


def test_rig_round_trips_through_kalibr_keeping_camera_to_imu(tmp_path):
    rig = make_rig()
    path = save_calibration(rig, tmp_path / "camchain.yaml", FileFormat.KALIBR)
    data = yaml.safe_load(path.read_text())
    assert data["cam0"]["intrinsics"] == [rig.cam0.fx, rig.cam0.fy, rig.cam0.cx, rig.cam0.cy]
    assert data["cam1"]["resolution"] == [320, 240]
    np.testing.assert_allclose(data["cam1"]["T_cn_cnm1"], np.linalg.inv(rig.T_cam0_cam1), atol=1e-12)
    loaded = load_calibration(path)
    assert_same_camera(loaded.cam1, rig.cam1)
    np.testing.assert_allclose(loaded.T_cam0_cam1, rig.T_cam0_cam1, atol=1e-12)
    # Kalibr has no head frame: the loaded head frame is camera 0 (OpenXR axes), with the same camera-to-IMU relation.
    np.testing.assert_allclose(loaded.T_head_cam0, T_OPENXR_OPENCV)
    T_cam0_imu = np.linalg.inv(rig.T_head_cam0) @ rig.T_head_imu
    np.testing.assert_allclose(np.linalg.inv(loaded.T_head_cam0) @ loaded.T_head_imu, T_cam0_imu, atol=1e-12)


def test_kalibr_leaves_out_camera_to_imu_when_the_rig_does_not_know_it(tmp_path):
    rig = make_rig()
    unknown = StereoRig(rig.cam0, rig.cam1, rig.T_cam0_cam1)
    data = yaml.safe_load(save_calibration(unknown, tmp_path / "camchain.yaml", FileFormat.KALIBR).read_text())
    assert "T_cam_imu" not in data["cam0"]
    loaded = load_calibration(tmp_path / "camchain.yaml")
    np.testing.assert_allclose(loaded.T_head_cam0, unknown.T_head_cam0)
    np.testing.assert_allclose(loaded.T_head_imu, unknown.T_head_imu)


def test_kalibr_radtan_writes_four_coefficients_when_k3_is_zero(tmp_path):
    camera = CameraModel.from_intrinsics(320, 240, 160, 160, 160, 120, [-0.2, 0.04, 0.001, 0.002, 0.0])
    data = yaml.safe_load(save_calibration(camera, tmp_path / "c.yaml", FileFormat.KALIBR).read_text())
    assert data["cam0"]["distortion_model"] == "radtan"
    assert data["cam0"]["distortion_coeffs"] == [-0.2, 0.04, 0.001, 0.002]


def test_euroc_sensor_yaml_reads_a_camera(tmp_path):
    (tmp_path / "sensor.yaml").write_text(EUROC_CAM0)
    camera = load_calibration(tmp_path / "sensor.yaml")
    assert camera.size == (752, 480)
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (458.654, 457.296, 367.215, 248.375)
    np.testing.assert_allclose(camera.dist, [-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05, 0.0])


def test_euroc_folder_reads_a_rig_with_the_dataset_baseline(tmp_path):
    for name, text in (("cam0", EUROC_CAM0), ("cam1", EUROC_CAM1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sensor.yaml").write_text(text)
    rig = load_calibration(tmp_path)
    assert isinstance(rig, StereoRig)
    # EuRoC's stereo baseline is about 11 cm, camera 1 to the right of camera 0.
    assert rig.baseline_m == pytest.approx(0.1101, abs=0.0005)
    assert rig.T_cam0_cam1[0, 3] > 0.109
    # The head frame is camera 0 with OpenXR axes (the placement on the head is unknown); the IMU is where
    # T_BS says, relative to camera 0.
    T_imu_cam0 = np.array(yaml.safe_load(EUROC_CAM0)["T_BS"]["data"]).reshape(4, 4)
    np.testing.assert_allclose(rig.T_head_cam0, T_OPENXR_OPENCV)
    np.testing.assert_allclose(np.linalg.inv(rig.T_head_cam0) @ rig.T_head_imu, np.linalg.inv(T_imu_cam0), atol=1e-12)


def test_rig_round_trips_through_euroc_sensor_yaml(tmp_path):
    rig = make_rig()
    loaded = load_euroc_rig(*(save_euroc_rig(rig, tmp_path) / f"cam{i}" / "sensor.yaml" for i in range(2)))
    assert_same_camera(loaded.cam0, rig.cam0)
    np.testing.assert_allclose(loaded.T_cam0_cam1, rig.T_cam0_cam1, atol=1e-12)
    T_cam0_imu = np.linalg.inv(rig.T_head_cam0) @ rig.T_head_imu
    np.testing.assert_allclose(np.linalg.inv(loaded.T_head_cam0) @ loaded.T_head_imu, T_cam0_imu, atol=1e-12)


def test_opencv_sample_result_file_loads():
    camera = load_calibration(PHOTOS / "left_intrinsics.yml")
    assert camera.size == (640, 480)
    assert camera.fx == pytest.approx(535.9157, abs=1e-3)
    assert camera.dist[4] == pytest.approx(0.23839, abs=1e-5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cam0:\n  camera_model: pinhole\n  distortion_model: radtan\n  resolution: [640, 480]\n"
         "  distortion_coeffs: [0, 0, 0, 0]\n", "missing field cam0.intrinsics"),
        ("cam0:\n  camera_model: pinhole\n  intrinsics: [400, 400, 320]\n  distortion_model: radtan\n"
         "  distortion_coeffs: [0, 0, 0, 0]\n  resolution: [640, 480]\n",
         r"field cam0.intrinsics must have shape \(4,\)"),
        ("cam0:\n  camera_model: omni\n", r"field cam0.camera_model is 'omni'"),
        ("cam0: [1, 2\n", "not valid YAML"),
        (EUROC_CAM0.replace("intrinsics: [458.654", "intrinsics: [abc"), "field intrinsics must hold numbers"),
        (EUROC_CAM0.replace("         0.0, 0.0, 0.0, 1.0]", "         0.0, 0.0, 0.0]"),
         r"field T_BS.data must have shape"),
        ("%YAML:1.0\n---\nimage_width: 640\nimage_height: 480\ncamera_matrix: !!opencv-matrix\n   rows: 3\n"
         "   cols: 3\n   dt: d\n   data: [ 500., 0., 320., 0., 500., 240., 0., 0., 1. ]\n",
         "missing field distortion_coefficients"),
        ("%YAML:1.0\n---\nimage_width: 640\nimage_height: 480\ncamera_matrix: !!opencv-matrix\n   rows: 3\n"
         "   cols: 3\n   dt: d\n   data: [ 500., 0., 320., 0., 500.\n", "not a readable OpenCV YAML file"),
        ("just: text\n", "not a calibration file SkipTrack knows"),
    ],
    ids=["missing-field", "short-intrinsics", "unknown-model", "broken-yaml", "non-numeric", "short-T_BS",
         "opencv-missing-matrix", "opencv-truncated", "unknown-layout"],
)  # fmt: skip
def test_corrupt_or_incomplete_file_raises_one_error_naming_file_and_field(tmp_path, text, message):
    path = tmp_path / "calib.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message) as caught:
        load_calibration(path)
    assert str(path) in str(caught.value)
    assert caught.value.__cause__ is None


def test_missing_file_raises_a_clear_error(tmp_path):
    with pytest.raises(CalibrationError, match="calibration file not found"):
        load_calibration(tmp_path / "nope.yaml")
