"""The command line, run as users run it: ``python -m calibration ...`` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.boards import png_dpi
from calibration.files import load_calibration

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "chessboard_stereo"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calibration", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(cwd)},
    )  # fmt: skip


@pytest.mark.parametrize("name", ["board.pdf", "board.png"])
def test_board_command_writes_a_printable_board(tmp_path, name):
    result = run_cli("board", "--spec", "chessboard:9x6:0.025", "--out", name, "--dpi", "200", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / name).stat().st_size > 1000
    assert "print at 100%" in result.stdout
    if name.endswith(".png"):
        assert png_dpi(tmp_path / name) == pytest.approx(200, rel=0.02)


def test_solve_command_writes_calibration_and_reports(tmp_path):
    result = run_cli(
        "solve", "--images", str(PHOTOS / "left*.jpg"), "--board", "chessboard:9x6:0.025", "--fix-aspect-ratio",
        "--out", "calib.yaml", "--json", "report.json", "--report-png", "report.png", "--board-poses", "poses.tum",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["rms"] <= 0.5
    assert report["fx"] == pytest.approx(535.9157, rel=0.01)
    assert len(report["per_view_errors"]) == 13 and report["rejected_views"] == []
    assert 0 < report["coverage"]["cell_fraction"] <= 1
    assert load_calibration(tmp_path / "calib.yaml").fx == pytest.approx(report["fx"], abs=1e-4)
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")
    assert len((tmp_path / "poses.tum").read_text().splitlines()) == 14


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", "--images", "x*.png", "--json", "r.json"], "the following arguments are required: --out"),
        (["board", "--spec", "charuco:5x7", "--out", "b.pdf"], "must have 5 ':'-separated fields"),
        (["board", "--out", "board.svg"], "must end in .pdf or .png"),
        (["solve", "--images", "missing/*.png", "--out", "c.yaml", "--json", "r.json"], "no images match"),
        (["solve", "--images", "x.png", "--model", "kannala", "--out", "c.yaml", "--json", "r.json"],
         "invalid choice: 'kannala'"),
    ],
    ids=["missing-out", "bad-spec", "bad-extension", "no-images", "bad-model"],
)  # fmt: skip
def test_bad_arguments_give_one_clear_line_and_fail(tmp_path, args, message):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_record_then_solve_session_from_real_stereo_photos(tmp_path):
    # OpenCV's stereo photos as a folder of side-by-side frames, read by the video: source like a stereo camera.
    frames = tmp_path / "frames"
    frames.mkdir()
    for left in sorted(PHOTOS.glob("left*.jpg")):
        pair = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in (left, PHOTOS / left.name.replace("left", "right"))]
        cv2.imwrite(str(frames / left.name.replace("left", "pair").replace(".jpg", ".png")), np.hstack(pair))
    record = run_cli("record", "--source", f"video:{frames}?stereo=sbs", "--board", "chessboard:9x6:0.025",
                     "--out", "session", cwd=tmp_path)  # fmt: skip
    assert record.returncode == 0, record.stderr
    assert "no window available" in record.stderr
    assert record.stdout.count("KEPT") >= 10
    solve = run_cli("solve", "--session", "session", "--fix-aspect-ratio", "--out", "rig.yaml", "--json", "r.json",
                    cwd=tmp_path)  # fmt: skip
    assert solve.returncode == 0, solve.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["rms"] <= 0.5 and report["stereo"]["rms"] <= 0.6
    assert report["stereo"]["baseline_m"] == pytest.approx(0.0832, rel=0.02)
