"""Recording a calibration session from a frame source, and solving from the recorded folder."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from calibration.__main__ import main
from calibration.boards import BoardSpec
from calibration.files import load_calibration
from calibration.render import board_view_poses, render_board_view
from calibration.session import Feedback, draw_feedback, load_session, record_session
from hardware import FrameSource, open_source
from skiptrack_types import CalibrationError, CameraModel, Frame, Gap, StereoRig

BOARD = BoardSpec.parse("charuco:5x7:0.04:0.02:DICT_6X6_250")
CAMERA = CameraModel.from_intrinsics(480, 360, 300.0, 300.0, 242.0, 178.0, [-0.2, 0.05, 0.0, 0.0, 0.0])
T_CAM0_CAM1 = np.eye(4)
T_CAM0_CAM1[0, 3] = 0.064
RIG = StereoRig(CAMERA, CAMERA, T_CAM0_CAM1)


class RenderedBoardSource(FrameSource):
    """A stereo camera pair filmed a board: each pose is shown twice (the second adds no coverage), with a
    board-less frame and a Gap marker in between."""

    rate_hz = 30.0

    def __init__(self, count: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._poses = board_view_poses(BOARD, CAMERA, count, rng, fill=(0.3, 0.45), margin_px=-30.0)
        self._rng = rng

    def __iter__(self) -> Iterator[Frame | Gap]:
        seq = 0
        blank = np.full((CAMERA.height, CAMERA.width), 90, np.uint8)
        for i, T in enumerate(self._poses):
            images = tuple(
                render_board_view(BOARD, CAMERA, T_cam_board, rng=self._rng)
                for T_cam_board in (T, np.linalg.inv(T_CAM0_CAM1) @ T)
            )
            for _ in range(2):
                yield Frame(seq, seq * 33_333_333, images)
                seq += 1
            if i == 2:
                yield Frame(seq, seq * 33_333_333, (blank, blank))
                yield Gap(seq + 1, 1, seq * 33_333_333, "dropped")
                seq += 2


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session")
    reports: list[Feedback] = []
    record_session(RenderedBoardSource(16, seed=21), BOARD, folder, reports.append)
    return folder, reports


def test_recording_keeps_only_views_that_add_coverage(recorded):
    folder, reports = recorded
    kept = [r for r in reports if r.kept]
    assert len(reports) == 33  # 16 poses x 2 + the blank frame (the Gap is skipped)
    assert not any(r.kept for r in reports[1::2][:3])  # the repeated frames added nothing
    assert len(kept) <= 16
    assert all(all(d is None for d in r.detections) for r in reports if r.frame.images[0].max() == 90)
    assert reports[-1].progress > reports[0].progress
    data = json.loads((folder / "detections.json").read_text())
    assert data["board"] == str(BOARD) and data["cameras"] == 2 and len(data["views"]) == len(kept)
    assert all((folder / name).is_file() for view in data["views"] for name in view["images"])


def test_feedback_shows_progress_and_what_is_missing(recorded):
    _, reports = recorded
    line = reports[0].summary()
    assert "KEPT" in line and "progress" in line and "tilts missing" in line
    overlay = draw_feedback(reports[0])
    assert overlay.shape == (CAMERA.height, CAMERA.width, 3)


def test_session_folder_solves_to_the_rig_that_filmed_it(recorded, tmp_path):
    folder, _ = recorded
    session = load_session(folder)
    assert len(session.pairs) >= 8
    code = main(["solve", "--session", str(folder), "--out", str(tmp_path / "rig.yaml"),
                 "--json", str(tmp_path / "report.json")])  # fmt: skip
    assert code == 0
    rig = load_calibration(tmp_path / "rig.yaml")
    assert rig.cam0.fx == pytest.approx(CAMERA.fx, rel=0.01)
    assert rig.baseline_m == pytest.approx(0.064, rel=0.02)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stereo"]["baseline_m"] == pytest.approx(0.064, rel=0.02)


def test_mcap_session_keeps_the_same_views_and_replays_as_a_source(tmp_path):
    path = record_session(RenderedBoardSource(6, seed=21), BOARD, tmp_path / "session.mcap")
    session = load_session(path)
    assert session.board == BOARD and session.image_size == CAMERA.size
    assert len(session.views[0]) >= 4 and len(session.pairs) == len(session.views[0])
    with open_source(f"mcap:{path}?realtime=0") as replay:
        frames = [item for item in replay if isinstance(item, Frame)]
    assert [f.seq for f in frames] == [int(v.name) for v in session.views[0]]
    assert frames[0].images[0].shape == (CAMERA.height, CAMERA.width)


def test_source_without_the_board_records_nothing_and_says_so(tmp_path):
    other = BoardSpec.parse("charuco:5x7:0.04:0.02:DICT_4X4_50")
    with pytest.raises(CalibrationError, match="no view with board charuco:5x7:0.04:0.02:DICT_4X4_50"):
        record_session(RenderedBoardSource(2, seed=1), other, tmp_path / "s")


def test_corrupt_session_entry_is_named(recorded, tmp_path):
    folder, _ = recorded
    data = json.loads((folder / "detections.json").read_text())
    del data["views"][1]["detections"]
    (tmp_path / "detections.json").write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=r"detections.json: field views\[1\] is incomplete or corrupt"):
        load_session(tmp_path)


def test_missing_session_file_raises_a_clear_error(tmp_path):
    with pytest.raises(CalibrationError, match="detections.json: not found"):
        load_session(tmp_path)
