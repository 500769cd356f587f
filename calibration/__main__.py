"""Command line: ``python -m calibration {board,record,solve,handeye} ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from calibration.boards import DEFAULT_BOARD_SPEC, BoardSpec, write_printable
from calibration.files import FileFormat, load_calibration, save_calibration
from calibration.handeye import HandEyeMethod, Trajectory, match_by_time, read_tum, solve_hand_eye, write_tum
from calibration.report import report_json, write_report_json, write_report_png
from calibration.session import Feedback, draw_feedback, load_session, record_session, views_from_images
from calibration.solve import CameraCalibration, StereoCalibration, View, calibrate_camera, calibrate_stereo
from skiptrack_types import CalibrationError, CameraModel, CameraModelKind, SkipTrackError, StereoRig

log = logging.getLogger("calibration")

_MODELS = {"pinhole": CameraModelKind.PINHOLE_RADTAN, "fisheye": CameraModelKind.FISHEYE}
_WINDOW = "SkipTrack calibration"


class _Parser(argparse.ArgumentParser):
    """Bad arguments give one line on stderr (not the usage block) and exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except SkipTrackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m calibration", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, dest="command", parser_class=_Parser)

    board = sub.add_parser("board", help="write a printable board (PDF or PNG) at true scale")
    board.add_argument("--spec", default=DEFAULT_BOARD_SPEC, help=f"board spec (default {DEFAULT_BOARD_SPEC})")
    board.add_argument("--out", required=True, type=Path, help="output .pdf or .png")
    board.add_argument("--dpi", type=float, default=300.0, help="PNG resolution / PDF raster resolution")
    board.set_defaults(run=_run_board)

    record = sub.add_parser("record", help="record a calibration session with live coverage feedback")
    record.add_argument(
        "--source", required=True, help="frame source URI, e.g. camera:uvc_stereo_sbs or video:folder?stereo=sbs"
    )
    record.add_argument("--board", default=DEFAULT_BOARD_SPEC, help="board spec")
    record.add_argument("--out", required=True, type=Path, help="session to write: a .mcap file or a folder")
    record.add_argument("--max-views", type=int, default=None, help="stop after this many kept views")
    record.add_argument("--no-window", action="store_true", help="text feedback only, even if a window could open")
    record.set_defaults(run=_run_record)

    solve = sub.add_parser("solve", help="solve intrinsics (and stereo extrinsics) from images or a session")
    source = solve.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="glob of (left) camera images, quoted")
    source.add_argument("--session", type=Path, help="session (.mcap file or folder) written by 'record'")
    solve.add_argument("--right-images", help="glob of right camera images, paired with --images by sorted name")
    solve.add_argument("--board", default=None, help=f"board spec (default: the session's, else {DEFAULT_BOARD_SPEC})")
    solve.add_argument("--model", choices=sorted(_MODELS), default="pinhole", help="camera model")
    solve.add_argument("--fix-aspect-ratio", action="store_true", help="force fx = fy (pinhole only)")
    solve.add_argument("--keep-outliers", action="store_true", help="do not reject views with large errors")
    solve.add_argument("--out", required=True, type=Path, help="calibration file to write (.yaml)")
    solve.add_argument("--format", choices=[f.value for f in FileFormat], default="opencv", help="--out format")
    solve.add_argument("--json", required=True, type=Path, help="report JSON to write")
    solve.add_argument("--report-png", type=Path, help="report figure to write")
    solve.add_argument("--board-poses", type=Path, help="write camera 0's board poses (TUM) for 'handeye'")
    solve.set_defaults(run=_run_solve)

    handeye = sub.add_parser("handeye", help="solve T_head_cam0 from board poses and headset poses")
    handeye.add_argument("--camera-poses", required=True, type=Path, help="TUM file of T_cam0_board (from solve)")
    handeye.add_argument("--headset-poses", required=True, type=Path, help="TUM file of T_world_head")
    handeye.add_argument("--max-dt-ms", type=float, default=5.0, help="largest time difference to match poses")
    handeye.add_argument("--method", choices=[m.name.lower() for m in HandEyeMethod], default="tsai")
    handeye.add_argument("--calib", type=Path, help="stereo calibration to update with T_head_cam0")
    handeye.add_argument("--calib-out", type=Path, help="where to write the updated calibration (OpenCV YAML)")
    handeye.set_defaults(run=_run_handeye)
    return parser


def _run_board(args: argparse.Namespace) -> int:
    board = BoardSpec.parse(args.spec)
    path = write_printable(board, args.out, args.dpi)
    w, h = board.size_m
    print(f"wrote {path}: {board}, checkered area {w * 1000:g} x {h * 1000:g} mm; print at 100% and measure a square")
    return 0


def _run_record(args: argparse.Namespace) -> int:
    from hardware import open_source

    board = BoardSpec.parse(args.board)
    show = not args.no_window and _window_available()
    if not show:
        print("no window available (headless OpenCV or no display): text feedback", file=sys.stderr)

    def feedback(report: Feedback) -> None:
        if show:
            cv2.imshow(_WINDOW, draw_feedback(report))
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                raise KeyboardInterrupt
        if report.kept or not show:
            print(report.summary(), flush=True)

    with open_source(args.source) as source:
        folder = record_session(source, board, args.out, feedback, rig=source.rig, max_views=args.max_views)
    if show:
        cv2.destroyWindow(_WINDOW)
    print(f"wrote session {folder}; next: python -m calibration solve --session {folder} --out calib.yaml "
          "--json report.json")  # fmt: skip
    return 0


def _run_solve(args: argparse.Namespace) -> int:
    kind = _MODELS[args.model]
    if args.session is not None:
        if args.right_images:
            raise CalibrationError("--right-images goes with --images; a session already holds every camera")
        session = load_session(args.session, BoardSpec.parse(args.board) if args.board else None)
        board, size, per_camera, pairs = session.board, session.image_size, list(session.views), session.pairs
    else:
        board = BoardSpec.parse(args.board or DEFAULT_BOARD_SPEC)
        per_camera, pairs, size = _image_views(args.images, args.right_images, board)
    cameras = [
        calibrate_camera(views, board, size, kind, args.fix_aspect_ratio, not args.keep_outliers)
        for views in per_camera[:2]
    ]
    stereo: StereoCalibration | None = None
    result: CameraModel | StereoRig = cameras[0].camera
    if len(cameras) == 2:
        stereo = calibrate_stereo(pairs, board, cameras[0], cameras[1], not args.keep_outliers)
        result = stereo.rig
    save_calibration(result, args.out, FileFormat(args.format))
    report = report_json(board, cameras, stereo)
    write_report_json(args.json, report)
    if args.report_png:
        write_report_png(args.report_png, cameras, title=f"{board}  {args.model}")
    if args.board_poses:
        write_tum(args.board_poses, _board_trajectory(cameras[0]))
    _print_summary(cameras, stereo, args)
    return 0


def _run_handeye(args: argparse.Namespace) -> int:
    board_poses, head_poses = read_tum(args.camera_poses), read_tum(args.headset_poses)
    matches = match_by_time(board_poses, head_poses, args.max_dt_ms / 1000.0)
    log.info("%d of %d board poses matched a headset pose within %g ms", len(matches), len(board_poses),
             args.max_dt_ms)  # fmt: skip
    i, j = (np.array(v, dtype=int) for v in zip(*matches, strict=True)) if matches else (np.zeros(0, int),) * 2
    result = solve_hand_eye(head_poses.T[j], board_poses.T[i], HandEyeMethod[args.method.upper()])
    print("T_head_cam0 =")
    print(np.array2string(result.T_head_cam0, precision=6, suppress_small=True))
    print(f"{result.pairs} pose pairs; implied board pose spread {result.board_spread_m * 1000:.2f} mm, "
          f"{result.board_spread_deg:.3f} deg")  # fmt: skip
    if args.calib is not None:
        rig = load_calibration(args.calib)
        if not isinstance(rig, StereoRig):
            raise CalibrationError(f"{args.calib}: --calib must hold a stereo rig (T_head_cam0 is a rig field)")
        # Keep the camera-to-IMU relation fixed while moving the cameras on the head.
        T_head_imu = result.T_head_cam0 @ np.linalg.inv(rig.T_head_cam0) @ rig.T_head_imu
        updated = replace(rig, T_head_cam0=result.T_head_cam0, T_head_imu=T_head_imu)
        out = save_calibration(updated, args.calib_out or args.calib)
        print(f"wrote {out}")
    return 0


def _image_views(
    left: str, right: str | None, board: BoardSpec
) -> tuple[list[list[View]], list[tuple[View, View]], tuple[int, int]]:
    left_views, size = views_from_images(left, board)
    if right is None:
        return [[v for v in left_views if v is not None]], [], size
    right_views, right_size = views_from_images(right, board)
    if len(right_views) != len(left_views):
        raise CalibrationError(
            f"--images matched {len(left_views)} files but --right-images {len(right_views)}; pairs are made by "
            "sorted name, so both globs must match one file per pair"
        )
    if right_size != size:
        raise CalibrationError(f"left images are {size[0]}x{size[1]} but right images {right_size[0]}x{right_size[1]}")
    pairs = [(a, b) for a, b in zip(left_views, right_views, strict=True) if a is not None and b is not None]
    per_camera = [[v for v in left_views if v is not None], [v for v in right_views if v is not None]]
    return per_camera, pairs, size


def _board_trajectory(calib: CameraCalibration) -> Trajectory:
    times = [v.t_ns / 1e9 if v.t_ns is not None else float(i) for i, v in enumerate(calib.views)]
    return Trajectory(np.array(times), np.array(calib.T_cam_board))


def _print_summary(
    cameras: list[CameraCalibration], stereo: StereoCalibration | None, args: argparse.Namespace
) -> None:
    for i, c in enumerate(cameras):
        cam = c.camera
        rejected = f", rejected {', '.join(c.rejected)}" if c.rejected else ""
        print(f"camera {i}: RMS {c.rms_px:.3f} px over {len(c.views)} views{rejected}; fx {cam.fx:.2f} fy {cam.fy:.2f} "
              f"cx {cam.cx:.2f} cy {cam.cy:.2f}")  # fmt: skip
    if stereo is not None:
        print(f"stereo: RMS {stereo.rms_px:.3f} px, baseline {stereo.rig.baseline_m:.5f} m, "
              f"rectified row error {stereo.rectified_row_error_px:.3f} px")  # fmt: skip
    print(f"wrote {args.out} and {args.json}" + (f" and {args.report_png}" if args.report_png else ""))


def _window_available() -> bool:
    """cv2.imshow needs a GUI build of OpenCV (opencv-python-headless has none) and, on Linux, a display."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(_WINDOW)
    except cv2.error:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
