"""Export any source to EuRoC/ASL folders or a TUM trajectory, for Kalibr, OpenVINS, Basalt and evo.

    python -m hardware.export --source mcap:session.mcap --euroc out/session   (writes out/session/mav0/...)
    python -m hardware.export --source synthetic:seated --tum truth.txt

The TUM file holds the truth trajectory ``T_world_head`` in SkipTrack's OpenXR world (+Y up), one line per frame
with truth: ``t tx ty tz qx qy qz qw`` with t in seconds. The EuRoC folder follows hardware/euroc.py's conventions
(world +Z up, body = IMU frame), so ``euroc:`` reads back the same frames, IMU, truth and rig.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation
from tqdm import tqdm

import hardware
from calibration.files import save_euroc_rig
from hardware import euroc
from skiptrack_types import Frame, Gap, SkipTrackError, SourceError, StereoRig

log = logging.getLogger(__name__)

_GT_HEADER = (
    "#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z [], "
    "v_RS_R_x [m s^-1], v_RS_R_y [m s^-1], v_RS_R_z [m s^-1], b_w_RS_S_x [rad s^-1], b_w_RS_S_y [rad s^-1], "
    "b_w_RS_S_z [rad s^-1], b_a_RS_S_x [m s^-2], b_a_RS_S_y [m s^-2], b_a_RS_S_z [m s^-2]\n"
)
_IMU_HEADER = (
    "#timestamp [ns],w_RS_S_x [rad s^-1],w_RS_S_y [rad s^-1],w_RS_S_z [rad s^-1],"
    "a_RS_S_x [m s^-2],a_RS_S_y [m s^-2],a_RS_S_z [m s^-2]\n"
)


def _frames(items: Iterable[Frame | Gap]) -> Iterable[Frame]:
    return (item for item in items if isinstance(item, Frame))


def write_euroc(items: Iterable[Frame | Gap], root: str | Path, rig: StereoRig | None, rate_hz: float | None) -> int:
    """Write frames as ``root/mav0`` (cam0, cam1, imu0, state_groundtruth_estimate0, sensor.yaml files); return the
    number of frames. Truth is written as the pose of the IMU (body) frame in EuRoC's +Z-up world."""
    mav0 = Path(root) / "mav0"
    T_head_imu = rig.T_head_imu if rig is not None else np.eye(4)
    T_R_xr = np.linalg.inv(euroc.T_XR_R)
    count, gt_rows = 0, []
    with ExitStack() as stack:
        cams: list = []
        imu_file = None
        for frame in _frames(items):
            if not cams:
                cams = [_open_camera_dir(stack, mav0 / f"cam{i}") for i in range(len(frame.images))]
            for (data_dir, csv_file), image in zip(cams, frame.images, strict=True):
                name = f"{frame.t_ns}.png"
                if not cv2.imwrite(str(data_dir / name), image):
                    raise SourceError(f"cannot write {data_dir / name}; is the disk full or the folder read-only?")
                csv_file.write(f"{frame.t_ns},{name}\n")
            if frame.imu is not None and len(frame.imu):
                if imu_file is None:
                    (mav0 / "imu0").mkdir(parents=True, exist_ok=True)
                    imu_file = stack.enter_context(open(mav0 / "imu0" / "data.csv", "w"))
                    imu_file.write(_IMU_HEADER)
                for row in frame.imu:
                    imu_file.write(f"{int(round(row[0]))}," + ",".join(repr(float(v)) for v in row[1:]) + "\n")
            if frame.truth is not None:
                T_R_S = T_R_xr @ frame.truth.T_world_head @ T_head_imu
                gt_rows.append((frame.t_ns, T_R_S))
            count += 1
    if count == 0:
        raise SourceError("the source gave no frames; nothing to export")
    _write_groundtruth(mav0, gt_rows)
    _write_calibration(mav0, rig, rate_hz, imu_file is not None)
    return count


def _open_camera_dir(stack: ExitStack, cam_dir: Path):
    (cam_dir / "data").mkdir(parents=True, exist_ok=True)
    csv_file = stack.enter_context(open(cam_dir / "data.csv", "w"))
    csv_file.write("#timestamp [ns],filename\n")
    return cam_dir / "data", csv_file


def _write_groundtruth(mav0: Path, rows: list[tuple[int, np.ndarray]]) -> None:
    if not rows:
        log.info("no frame had truth: no state_groundtruth_estimate0 written")
        return
    t_s = np.array([t for t, _ in rows], dtype=np.float64) / 1e9
    positions = np.array([T[:3, 3] for _, T in rows])
    # velocity by finite differences; EuRoC's estimator also gives IMU biases, which a truth source has as zero
    velocities = np.gradient(positions, t_s, axis=0) if len(rows) > 1 else np.zeros((1, 3))
    gt_dir = mav0 / "state_groundtruth_estimate0"
    gt_dir.mkdir(parents=True, exist_ok=True)
    with open(gt_dir / "data.csv", "w") as f:
        f.write(_GT_HEADER)
        for (t_ns, T), v in zip(rows, velocities, strict=True):
            x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
            values = [*T[:3, 3], w, x, y, z, *v, *np.zeros(6)]
            f.write(f"{t_ns}," + ",".join(repr(float(val)) for val in values) + "\n")


def _write_calibration(mav0: Path, rig: StereoRig | None, rate_hz: float | None, has_imu: bool) -> None:
    if rig is None:
        log.info("the source has no rig: no sensor.yaml written (EuRoC readers will need a calibration)")
        return
    save_euroc_rig(rig, mav0, rate_hz or 20.0)  # cam0/ and cam1/sensor.yaml, body frame = the IMU
    if has_imu:
        euroc.write_imu_yaml(mav0 / "imu0" / "sensor.yaml", np.eye(4), None)
    euroc.write_body_yaml(mav0 / "body.yaml", rig.T_head_imu)


def write_tum(items: Iterable[Frame | Gap], path: str | Path) -> int:
    """Write the truth trajectory as TUM lines ``t tx ty tz qx qy qz qw`` (t in seconds); return the line count."""
    lines = []
    for frame in _frames(items):
        if frame.truth is None:
            continue
        T = frame.truth.T_world_head
        q = Rotation.from_matrix(T[:3, :3]).as_quat()
        lines.append(f"{frame.t_ns / 1e9:.9f} " + " ".join(f"{v:.9f}" for v in (*T[:3, 3], *q)))
    if not lines:
        raise SourceError("the source gave no frames with truth; a TUM trajectory needs ground truth")
    Path(path).write_text("# t tx ty tz qx qy qz qw (OpenXR world, +Y up, T_world_head)\n" + "\n".join(lines) + "\n")
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hardware.export", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="source URI, e.g. mcap:session.mcap or synthetic:seated")
    parser.add_argument("--euroc", help="folder to write a EuRoC/ASL dataset into (mav0/ is created inside)")
    parser.add_argument("--tum", help="file to write the truth trajectory to, TUM format")
    args = parser.parse_args(argv)
    if not args.euroc and not args.tum:
        parser.error("give --euroc DIR and/or --tum FILE")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.euroc:
            with hardware.open_source(args.source, **_fast(args.source)) as source:
                n = write_euroc(tqdm(source, unit="frame", desc="euroc"), args.euroc, source.rig, source.rate_hz)
            print(f"wrote {n} frames to {Path(args.euroc) / 'mav0'}")
        if args.tum:
            with hardware.open_source(args.source, **_fast(args.source)) as source:
                n = write_tum(tqdm(source, unit="frame", desc="tum"), args.tum)
            print(f"wrote {n} poses to {args.tum}")
    except SkipTrackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _fast(uri: str) -> dict[str, object]:
    """Recordings export as fast as they read, not in real time."""
    return {"realtime": False} if uri.startswith("mcap:") else {}


if __name__ == "__main__":
    sys.exit(main())
