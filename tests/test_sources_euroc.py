"""The euroc: source: EuRoC/ASL mav0 folders with images, IMU, ground truth and calibration."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures.moving_source import MovingTextureSource
from scipy.spatial.transform import Rotation

import hardware
from hardware import export
from hardware.euroc import T_XR_R
from hardware.export import write_euroc
from skiptrack_types import TimestampError

# cam0/cam1/imu0 sensor.yaml as published with EuRoC MH_01_easy (trimmed comments), including the %YAML:1.0 line
CAM_YAML = """%YAML:1.0
# General sensor definitions.
sensor_type: camera
comment: VI-Sensor {name} (MT9M034)

# Sensor extrinsics wrt. the body-frame.
T_BS:
  cols: 4
  rows: 4
  data: [{T}]

# Camera specific definitions.
rate_hz: 20
resolution: [752, 480]
camera_model: pinhole
intrinsics: [{K}] #fu, fv, cu, cv
distortion_model: radial-tangential
distortion_coefficients: [{D}]
"""
CAM0 = {
    "name": "cam0",
    "T": "0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975, 0.999557249008, 0.0149672133247, "
    "0.025715529948, -0.064676986768, -0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949, "
    "0.0, 0.0, 0.0, 1.0",
    "K": "458.654, 457.296, 367.215, 248.375",
    "D": "-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05",
}
CAM1 = {
    "name": "cam1",
    "T": "0.0125552670891, -0.999755099723, 0.0182237714554, -0.0198435579556, 0.999598781151, 0.0130119051815, "
    "0.0251588363115, 0.0453689425024, -0.0253898008918, 0.0179005838253, 0.999517347078, 0.00786212447038, "
    "0.0, 0.0, 0.0, 1.0",
    "K": "457.587, 456.134, 379.999, 255.238",
    "D": "-0.28368365, 0.07451284, -0.00010473, -3.55590700e-05",
}
IMU_YAML = """%YAML:1.0
sensor_type: imu
comment: VI-Sensor IMU (ADIS16448)
T_BS:
  cols: 4
  rows: 4
  data: [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
rate_hz: 200
gyroscope_noise_density: 1.6968e-04
"""
T0 = 1403636579763555584  # MH_01_easy's first camera timestamp


def make_euroc(root: Path, frames: int = 4, gt_rows: int = 40) -> Path:
    """A mav0 folder in EuRoC's exact layout: 20 Hz cameras, 200 Hz IMU and ground truth (CRLF csv like EuRoC)."""
    mav0 = root / "mav0"
    for cam in (CAM0, CAM1):
        (mav0 / cam["name"] / "data").mkdir(parents=True)
        (mav0 / cam["name"] / "sensor.yaml").write_text(CAM_YAML.format(**cam))
        lines = ["#timestamp [ns],filename"]
        for i in range(frames):
            t = T0 + i * 50_000_000
            cv2.imwrite(str(mav0 / cam["name"] / "data" / f"{t}.png"), np.full((48, 64), 10 * i, np.uint8))
            lines.append(f"{t},{t}.png")
        (mav0 / cam["name"] / "data.csv").write_bytes("\r\n".join(lines).encode() + b"\r\n")
    (mav0 / "imu0").mkdir()
    (mav0 / "imu0" / "sensor.yaml").write_text(IMU_YAML)
    imu = ["#timestamp [ns],w_RS_S_x [rad s^-1],w_RS_S_y [rad s^-1],w_RS_S_z [rad s^-1],"
           "a_RS_S_x [m s^-2],a_RS_S_y [m s^-2],a_RS_S_z [m s^-2]"]  # fmt: skip
    for i in range(frames * 10):
        imu.append(f"{T0 - 45_000_000 + i * 5_000_000},-0.099,0.1416,0.0251,8.16,-0.15,-1.92")
    (mav0 / "imu0" / "data.csv").write_bytes("\r\n".join(imu).encode() + b"\r\n")
    gt_dir = mav0 / "state_groundtruth_estimate0"
    gt_dir.mkdir()
    gt = ["#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z [], "
          "v_RS_R_x [m s^-1], v_RS_R_y [m s^-1], v_RS_R_z [m s^-1], b_w_RS_S_x [rad s^-1], b_w_RS_S_y [rad s^-1], "
          "b_w_RS_S_z [rad s^-1], b_a_RS_S_x [m s^-2], b_a_RS_S_y [m s^-2], b_a_RS_S_z [m s^-2]"]  # fmt: skip
    for i in range(gt_rows):  # the body rises 1 m/s along EuRoC's +Z (up), yawing about +Z
        t = T0 + i * 5_000_000
        x, y, z, w = Rotation.from_euler("z", 0.1 * i * 0.005).as_quat()
        gt.append(f"{t},4.6,-1.8,{0.8 + i * 0.005},{w},{x},{y},{z},0,0,1,0,0,0,0,0,0")
    (gt_dir / "data.csv").write_bytes("\r\n".join(gt).encode() + b"\r\n")
    return root


def test_euroc_layout_gives_images_imu_truth_and_rig(tmp_path):
    source = hardware.open_source(f"euroc:{make_euroc(tmp_path)}")
    frames = list(source)
    assert [f.t_ns for f in frames] == [T0 + i * 50_000_000 for i in range(4)]
    assert all(len(f.images) == 2 and f.images[0].dtype == np.uint8 for f in frames)
    assert [int(f.images[1][0, 0]) for f in frames] == [0, 10, 20, 30]
    assert [len(f.imu) for f in frames] == [10, 10, 10, 10]  # 200 Hz IMU, 20 Hz camera
    assert source.rate_hz == 20
    assert source.rig.baseline_m == pytest.approx(0.110, abs=0.002)  # the VI-Sensor's 11 cm baseline
    assert source.rig.cam0.fx == 458.654 and source.rig.cam0.dist[3] == pytest.approx(1.76187114e-05)


def test_euroc_truth_is_in_openxr_world_with_euroc_up_as_plus_y(tmp_path):
    frames = list(hardware.open_source(f"euroc:{make_euroc(tmp_path)}"))
    head_positions = np.array([f.truth.T_world_head[:3, 3] for f in frames])
    step = np.diff(head_positions, axis=0)
    assert np.allclose(step[:, 1], 0.05, atol=1e-3)  # rising along EuRoC +Z is rising along OpenXR +Y
    assert np.allclose(step[:, [0, 2]], 0.0, atol=2e-3)
    assert np.allclose(T_XR_R[:3, :3] @ [0, 0, 1], [0, 1, 0])


def test_euroc_truth_is_interpolated_between_samples(tmp_path):
    root = make_euroc(tmp_path)
    (frame0,) = [f for f in hardware.open_source(f"euroc:{root}") if f.t_ns == T0 + 50_000_000]
    shifted = root / "mav0" / "state_groundtruth_estimate0" / "data.csv"
    lines = shifted.read_text().splitlines()
    shifted.write_text("\n".join([lines[0]] + lines[2::2]) + "\n")  # drop the row at the frame time, and every other
    (frame1,) = [f for f in hardware.open_source(f"euroc:{root}") if f.t_ns == T0 + 50_000_000]
    assert np.allclose(frame0.truth.T_world_head, frame1.truth.T_world_head, atol=1e-9)


def test_euroc_frames_outside_the_truth_span_have_no_truth(tmp_path):
    frames = list(hardware.open_source(f"euroc:{make_euroc(tmp_path, frames=4, gt_rows=25)}"))
    assert [f.truth is not None for f in frames] == [True, True, True, False]


def test_euroc_without_optional_parts_is_mono_without_imu_or_truth(tmp_path, caplog):
    root = make_euroc(tmp_path)
    for part in ("cam1", "imu0", "state_groundtruth_estimate0"):
        shutil.rmtree(root / "mav0" / part)
    with caplog.at_level(logging.INFO, logger="hardware.euroc"):
        source = hardware.open_source(f"euroc:{root / 'mav0'}")
    frames = list(source)
    assert len(frames) == 4 and all(len(f.images) == 1 and f.imu is None and f.truth is None for f in frames)
    assert source.rig is None
    assert "no cam1" in caplog.text and "no imu0" in caplog.text and "no state_groundtruth" in caplog.text


def test_euroc_timestamp_going_backwards_is_a_clear_error(tmp_path):
    root = make_euroc(tmp_path)
    csv = root / "mav0" / "cam0" / "data.csv"
    lines = csv.read_text().splitlines()
    lines[2], lines[3] = lines[3], lines[2]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(TimestampError, match="cam0/data.csv: timestamp .* is not after .*must strictly increase"):
        hardware.open_source(f"euroc:{root}")


def test_euroc_export_of_a_source_reads_back_identically(tmp_path):
    source = MovingTextureSource(15)
    assert write_euroc(source, tmp_path / "ds", source.rig, source.rate_hz) == 15
    euroc = hardware.open_source(f"euroc:{tmp_path / 'ds'}")
    for a, b in zip(source, euroc, strict=True):
        assert (a.seq, a.t_ns) == (b.seq, b.t_ns)
        assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))
        assert np.array_equal(a.imu, b.imu)
        assert np.allclose(a.truth.T_world_head, b.truth.T_world_head, atol=1e-12)
    for name in ("T_cam0_cam1", "T_head_cam0", "T_head_imu"):
        assert np.allclose(getattr(euroc.rig, name), getattr(source.rig, name), atol=1e-12)
    assert np.array_equal(euroc.rig.cam0.K, source.rig.cam0.K)
    assert np.array_equal(euroc.rig.cam1.dist, source.rig.cam1.dist)


def test_synthetic_world_exported_to_euroc_reads_back_with_imu_truth_and_rig(tmp_path):
    uri = "synthetic:seated?seconds=0.2"
    assert export.main(["--source", uri, "--euroc", str(tmp_path / "ds")]) == 0
    original = hardware.open_source(uri)
    euroc = hardware.open_source(f"euroc:{tmp_path / 'ds'}")
    assert (tmp_path / "ds" / "mav0" / "cam1" / "sensor.yaml").is_file()
    pairs = list(zip(original, euroc, strict=True))
    assert len(pairs) == 12
    for a, b in pairs:
        assert a.t_ns == b.t_ns
        assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))
        assert np.array_equal(a.imu, b.imu)
        assert np.allclose(a.truth.T_world_head, b.truth.T_world_head, atol=1e-9)
    assert euroc.rig.baseline_m == pytest.approx(original.rig.baseline_m, abs=1e-12)
    assert np.allclose(euroc.rig.T_head_cam0, original.rig.T_head_cam0, atol=1e-12)
    assert np.allclose(euroc.rig.cam0.K, original.rig.cam0.K)
