"""Camera-to-headset (hand-eye) calibration on a synthetic problem with known T_head_cam0."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from calibration.__main__ import main
from calibration.files import load_calibration, save_calibration
from calibration.handeye import (
    HandEyeMethod,
    Trajectory,
    match_by_time,
    read_tum,
    solve_hand_eye,
    write_tum,
)
from skiptrack_types import CalibrationError, CameraModel, StereoRig


def pose(rotvec: np.ndarray, translation: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = translation
    return T


# Camera 0 on the headset: OpenCV axes (z forward) in the OpenXR head frame (z backward), 3 cm left, 5 cm ahead.
T_HEAD_CAM0 = pose(np.array([np.pi, 0.0, 0.0]), np.array([-0.032, 0.004, -0.05])) @ pose(
    np.radians([2.0, -3.0, 1.0]), np.zeros(3)
)
T_WORLD_BOARD = pose(np.radians([80.0, 5.0, -10.0]), np.array([0.1, 1.2, -0.6]))


def synthetic_problem(count: int, seed: int, noise_m: float = 0.0, noise_deg: float = 0.0):
    """Headset poses looking at the board from varied angles, and the board poses camera 0 would measure."""
    rng = np.random.default_rng(seed)
    heads, boards = [], []
    for _ in range(count):
        T_world_head = pose(rng.normal(0.0, 0.35, 3), np.array([0.1, 1.5, 0.0]) + rng.normal(0.0, 0.1, 3))
        T_cam0_board = np.linalg.inv(T_HEAD_CAM0) @ np.linalg.inv(T_world_head) @ T_WORLD_BOARD
        T_cam0_board = pose(rng.normal(0.0, np.radians(noise_deg), 3), rng.normal(0.0, noise_m, 3)) @ T_cam0_board
        heads.append(T_world_head)
        boards.append(T_cam0_board)
    return np.array(heads), np.array(boards)


@pytest.mark.parametrize("method", list(HandEyeMethod), ids=lambda m: m.name.lower())
def test_exact_poses_recover_the_known_camera_mount(method):
    heads, boards = synthetic_problem(12, seed=1)
    result = solve_hand_eye(heads, boards, method)
    np.testing.assert_allclose(result.T_head_cam0, T_HEAD_CAM0, atol=1e-6)
    assert result.board_spread_m < 1e-6


def test_noisy_poses_recover_the_mount_within_millimetres():
    heads, boards = synthetic_problem(25, seed=2, noise_m=0.0005, noise_deg=0.05)
    result = solve_hand_eye(heads, boards)
    error_m = np.linalg.norm(result.T_head_cam0[:3, 3] - T_HEAD_CAM0[:3, 3])
    error_deg = np.degrees(Rotation.from_matrix(result.T_head_cam0[:3, :3] @ T_HEAD_CAM0[:3, :3].T).magnitude())
    assert error_m < 0.003
    assert error_deg < 0.2
    assert result.pairs == 25


def test_rotation_about_one_axis_only_is_degenerate():
    heads, boards = synthetic_problem(8, seed=3)
    for i in range(len(heads)):
        heads[i, :3, :3] = Rotation.from_rotvec([0.0, 0.2 * i, 0.0]).as_matrix()
    with pytest.raises(CalibrationError, match="rotate about at least two different axes"):
        solve_hand_eye(heads, boards)


def test_too_few_pairs_raise_a_clear_error():
    heads, boards = synthetic_problem(2, seed=4)
    with pytest.raises(CalibrationError, match="at least 3 matched poses, got 2"):
        solve_hand_eye(heads, boards)


def test_tum_files_round_trip_and_match_by_time(tmp_path):
    heads, _ = synthetic_problem(5, seed=5)
    path = write_tum(tmp_path / "head.tum", Trajectory(np.arange(5) * 0.1 + 10.0, heads))
    loaded = read_tum(path)
    np.testing.assert_allclose(loaded.T, heads, atol=1e-8)
    cameras = Trajectory(np.array([10.0021, 10.1, 10.25, 10.399]), heads[:4])
    assert match_by_time(cameras, loaded, max_dt_s=0.005) == [(0, 0), (1, 1), (3, 4)]


def test_bad_tum_line_names_file_and_line(tmp_path):
    path = tmp_path / "head.tum"
    path.write_text("# t tx ty tz qx qy qz qw\n1.0 0 0 0 0 0 0 1\n2.0 0 0 0 0 0 1\n")
    with pytest.raises(CalibrationError, match=r"head.tum:3: expected 8 finite numbers"):
        read_tum(path)


def test_handeye_command_matches_poses_by_time_and_updates_a_rig(tmp_path, capsys):
    heads, boards = synthetic_problem(10, seed=6)
    times = np.arange(10) * 0.5
    write_tum(tmp_path / "board.tum", Trajectory(times + 0.001, boards))
    write_tum(tmp_path / "head.tum", Trajectory(times, heads))
    camera = CameraModel.from_intrinsics(320, 240, 160, 160, 160, 120)
    T_cam0_cam1 = np.eye(4)
    T_cam0_cam1[0, 3] = 0.064
    save_calibration(StereoRig(camera, camera, T_cam0_cam1), tmp_path / "rig.yaml")
    code = main(["handeye", "--camera-poses", str(tmp_path / "board.tum"), "--headset-poses",
                 str(tmp_path / "head.tum"), "--calib", str(tmp_path / "rig.yaml"), "--calib-out",
                 str(tmp_path / "mounted.yaml")])  # fmt: skip
    assert code == 0
    assert "10 pose pairs" in capsys.readouterr().out
    mounted = load_calibration(tmp_path / "mounted.yaml")
    np.testing.assert_allclose(mounted.T_head_cam0, T_HEAD_CAM0, atol=1e-6)
    np.testing.assert_allclose(mounted.T_cam0_cam1, T_cam0_cam1, atol=1e-12)
