"""The ``euroc:`` source: EuRoC / ASL dataset folders (``mav0``), and the conventions to write them.

Layout read (``euroc:path/to/MH_01_easy`` or ``euroc:path/to/MH_01_easy/mav0``)::

    mav0/cam0/data.csv  (#timestamp [ns],filename)   mav0/cam0/data/<t_ns>.png   mav0/cam0/sensor.yaml
    mav0/cam1/...       optional: without it frames are mono and ``rig`` is None
    mav0/imu0/data.csv  optional: t_ns, w_RS_S_x/y/z [rad/s], a_RS_S_x/y/z [m/s^2]   mav0/imu0/sensor.yaml
    mav0/state_groundtruth_estimate0/data.csv  optional: t_ns, p_RS_R (3) [m], q_RS (w, x, y, z), v, b_w, b_a

Frames (and their order) come from cam0; a cam1 image is paired with the cam0 image of the same timestamp (within
half a frame). IMU rows between two frames go with the later frame. Truth is interpolated at each frame time
(position linearly, orientation by slerp) and is None outside the ground truth's time span.

Frames and conventions. EuRoC calls the IMU frame S (body B = S), the ground truth gives T_R_S with R a gravity
aligned world with +Z up, and each sensor.yaml gives ``T_BS`` (the sensor's pose in B). SkipTrack wants an OpenXR
world (+Y up) and a head frame with OpenXR axes. We use:

- ``T_xr_R``: x_xr = x_R, y_xr = z_R, z_xr = -y_R (a -90 degree rotation about x), so EuRoC's up is OpenXR's up;
- the head frame: ``T_head_B`` from ``mav0/body.yaml`` when it has that key (a SkipTrack extension, written by
  our exporter so that round trips keep the head frame), else the head sits at cam0 with OpenXR axes (x right,
  y up, z backward): ``T_head_B = diag(1, -1, -1) @ inv(T_B_cam0)``;
- so ``T_head_cam0 = T_head_B @ T_B_cam0``, ``T_head_imu = T_head_B @ T_B_imu``,
  ``T_cam0_cam1 = inv(T_B_cam0) @ T_B_cam1`` and ``T_world_head = T_xr_R @ T_R_S @ inv(T_head_imu)``.

Camera sensor.yaml files are read by calibration.files (``load_euroc_rig``), the project's one reader of
calibration formats.

IMU timestamps are stored in ``Frame.imu`` as float64 like every source; at EuRoC's epoch-scale nanosecond stamps
(~1.4e18) that rounds them to 256 ns. Frame ``t_ns`` stays exact.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import yaml
from scipy.spatial.transform import Rotation, Slerp

from calibration.files import load_euroc_rig
from hardware.images import to_gray
from hardware.options import reject_unknown
from hardware.sources import FrameSource
from skiptrack_types import (
    CalibrationError,
    Frame,
    SourceError,
    StereoRig,
    TimestampError,
    Truth,
)

log = logging.getLogger(__name__)

T_XR_R = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
"""OpenXR world (+Y up) from EuRoC's gravity-aligned world R (+Z up)."""

T_HEAD_CAM0 = np.diag([1.0, -1.0, -1.0, 1.0])
"""The head frame is cam0 with OpenXR axes (x right, y up, z backward) instead of OpenCV's."""


# --------------------------------------------------------------------------------------------------- yaml files
# Camera sensor.yaml files are read and written by calibration.files (one reader per format); this module reads
# only what that one does not cover: the T_BS of imu0/sensor.yaml (and of cam0 when there is no cam1) and
# SkipTrack's body.yaml.


def read_sensor_yaml(path: Path) -> dict:
    """Load a sensor.yaml; EuRoC's start with an OpenCV-style ``%YAML:1.0`` line that PyYAML rejects."""
    try:
        lines = path.read_text().splitlines()
        doc = yaml.safe_load("\n".join(line for line in lines if not line.startswith("%YAML"))) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CalibrationError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise CalibrationError(f"{path} must be a YAML mapping of fields")
    return doc


def read_matrix(doc: dict, key: str, path: Path) -> np.ndarray:
    """A 4x4 transform stored EuRoC-style: ``{rows: 4, cols: 4, data: [16 numbers, row-major]}``."""
    try:
        return np.array(doc[key]["data"], dtype=np.float64).reshape(4, 4)
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{path}: {key} must be a 4x4 matrix with a 'data' list of 16 numbers") from exc


def write_imu_yaml(path: Path, T_B_imu: np.ndarray, rate_hz: float | None) -> None:
    doc = {
        "sensor_type": "imu",
        "comment": "written by SkipTrack",
        "T_BS": {"cols": 4, "rows": 4, "data": T_B_imu.ravel().tolist()},
        "rate_hz": rate_hz,
    }
    path.write_text("%YAML:1.0\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


def write_body_yaml(path: Path, T_head_B: np.ndarray) -> None:
    """body.yaml with SkipTrack's ``T_head_B`` (the body frame in the head frame), so that a round trip keeps
    the head frame; readers that do not know the key ignore it."""
    doc = {"comment": "written by SkipTrack", "T_head_B": {"cols": 4, "rows": 4, "data": T_head_B.ravel().tolist()}}
    path.write_text("%YAML:1.0\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


# --------------------------------------------------------------------------------------------------- csv


def read_csv(path: Path, columns: int) -> list[list[str]]:
    """Rows of a EuRoC csv (comment lines starting with # skipped), each with ``columns`` fields."""
    rows = []
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            if len(row) < columns:
                raise SourceError(f"{path} line {line_no}: expected {columns} comma-separated fields, got {len(row)}")
            rows.append([field.strip() for field in row[:columns]])
    return rows


def csv_numbers(path: Path, rows: list[list[str]]) -> np.ndarray:
    """The rows as float64 (N, columns); a field that is not a number is an error naming the file."""
    try:
        return np.array([[float(v) for v in r] for r in rows], dtype=np.float64).reshape(len(rows), -1)
    except ValueError as exc:
        raise SourceError(f"{path}: {exc}; every field after the header must be a number") from exc


def csv_times(path: Path, rows: list[list[str]]) -> np.ndarray:
    """The first column as int64 nanoseconds, checked to strictly increase."""
    try:
        t_ns = np.array([int(r[0]) for r in rows], dtype=np.int64)
    except ValueError as exc:
        raise SourceError(f"{path}: {exc}; the first column must be integer nanoseconds") from exc
    _check_increasing(path, t_ns)
    return t_ns


def _check_increasing(path: Path, t_ns: np.ndarray) -> None:
    bad = np.flatnonzero(np.diff(t_ns) <= 0)
    if len(bad):
        i = int(bad[0])
        raise TimestampError(
            f"{path}: timestamp {t_ns[i + 1]} (row {i + 2}) is not after {t_ns[i]} (row {i + 1}); EuRoC timestamps "
            "must strictly increase - fix or sort the file"
        )


# --------------------------------------------------------------------------------------------------- source


class EurocSource(FrameSource):
    """Frames of a EuRoC ``mav0`` folder; see the module docstring for layout and frame conventions."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        self.mav0 = root / "mav0" if (root / "mav0").is_dir() else root
        cam0_dir = self.mav0 / "cam0"
        if not (cam0_dir / "data.csv").is_file():
            raise SourceError(
                f"{root} is not a EuRoC folder: {cam0_dir / 'data.csv'} is missing; pass the folder that holds mav0/"
            )
        self.cam0_t, self.cam0_files = self._read_camera_csv(cam0_dir)
        self.cam1_t, self.cam1_files = (None, None)
        if (self.mav0 / "cam1" / "data.csv").is_file():
            self.cam1_t, self.cam1_files = self._read_camera_csv(self.mav0 / "cam1")
        else:
            log.info("%s has no cam1: frames are mono and the source has no stereo rig", self.mav0)
        self.imu = self._read_imu()
        self.T_B_imu = self._read_imu_pose()
        self.rate_hz = 1e9 / float(np.median(np.diff(self.cam0_t))) if len(self.cam0_t) > 1 else None
        self.rig = self._read_calibration()
        self._truth_times, self._truth_interp = self._read_truth()

    def __iter__(self) -> Iterator[Frame]:
        half_frame = np.median(np.diff(self.cam0_t)) / 2 if len(self.cam0_t) > 1 else 0
        prev_t = None
        for seq, (t_ns, name) in enumerate(zip(self.cam0_t, self.cam0_files, strict=True)):
            images = [self._read_image("cam0", name)]
            if self.cam1_t is not None:
                j = int(np.clip(np.searchsorted(self.cam1_t, t_ns), 0, len(self.cam1_t) - 1))
                j = min((j, max(j - 1, 0)), key=lambda k: abs(int(self.cam1_t[k]) - int(t_ns)))
                if abs(int(self.cam1_t[j]) - int(t_ns)) > half_frame:
                    log.warning("cam0 frame at %d ns has no cam1 image within half a frame; skipped", t_ns)
                    continue
                images.append(self._read_image("cam1", self.cam1_files[j]))
            imu = None
            if self.imu is not None:
                lo = 0 if prev_t is None else np.searchsorted(self.imu[:, 0], prev_t, side="right")
                imu = self.imu[lo : np.searchsorted(self.imu[:, 0], t_ns, side="right")]
            prev_t = t_ns
            yield Frame(seq, int(t_ns), tuple(images), imu, self._truth_at(int(t_ns)))

    # ----------------------------------------------------------------------------------------------- reading

    def _read_camera_csv(self, cam_dir: Path) -> tuple[np.ndarray, list[str]]:
        rows = read_csv(cam_dir / "data.csv", 2)
        if not rows:
            raise SourceError(f"{cam_dir / 'data.csv'} lists no images")
        return csv_times(cam_dir / "data.csv", rows), [r[1] for r in rows]

    def _read_image(self, cam: str, name: str) -> np.ndarray:
        path = self.mav0 / cam / "data" / name
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SourceError(f"cannot read image {path} listed in {cam}/data.csv; is the dataset complete?")
        return to_gray(image)

    def _read_imu(self) -> np.ndarray | None:
        path = self.mav0 / "imu0" / "data.csv"
        if not path.is_file():
            log.info("%s has no imu0/data.csv: frames carry no IMU samples", self.mav0)
            return None
        rows = read_csv(path, 7)
        csv_times(path, rows)
        return csv_numbers(path, rows)

    def _read_imu_pose(self) -> np.ndarray:
        path = self.mav0 / "imu0" / "sensor.yaml"
        if not path.is_file():
            return np.eye(4)
        return read_matrix(read_sensor_yaml(path), "T_BS", path)

    def _read_head_pose(self, T_B_cam0: np.ndarray) -> np.ndarray:
        path = self.mav0 / "body.yaml"
        doc = read_sensor_yaml(path) if path.is_file() else {}
        if "T_head_B" in doc:
            return read_matrix(doc, "T_head_B", path)
        return T_HEAD_CAM0 @ np.linalg.inv(T_B_cam0)

    def _read_calibration(self) -> StereoRig | None:
        """The rig, and ``T_head_B``; calibration.files reads the camera files with body = IMU, so
        ``inv(T_head_cam0) @ T_head_imu`` of its rig is ``T_cam0_B``."""
        cam0_yaml, cam1_yaml = self.mav0 / "cam0" / "sensor.yaml", self.mav0 / "cam1" / "sensor.yaml"
        if self.cam1_t is None or not (cam0_yaml.is_file() and cam1_yaml.is_file()):
            T_B_cam0 = read_matrix(read_sensor_yaml(cam0_yaml), "T_BS", cam0_yaml) if cam0_yaml.is_file() else None
            self.T_head_B = self._read_head_pose(np.eye(4) if T_B_cam0 is None else T_B_cam0)
            if self.cam1_t is not None:
                log.info("%s lacks cam0/cam1 sensor.yaml: the source has no calibration", self.mav0)
            return None
        rig = load_euroc_rig(cam0_yaml, cam1_yaml)
        T_B_cam0 = np.linalg.inv(np.linalg.inv(rig.T_head_cam0) @ rig.T_head_imu)
        self.T_head_B = self._read_head_pose(T_B_cam0)
        return StereoRig(rig.cam0, rig.cam1, rig.T_cam0_cam1, self.T_head_B @ T_B_cam0, self.T_head_B @ self.T_B_imu)

    def _read_truth(self) -> tuple[np.ndarray | None, tuple[np.ndarray, Slerp] | None]:
        path = self.mav0 / "state_groundtruth_estimate0" / "data.csv"
        if not path.is_file():
            log.info("%s has no state_groundtruth_estimate0/data.csv: frames carry no truth", self.mav0)
            return None, None
        rows = read_csv(path, 8)
        if len(rows) < 2:
            log.info("%s has fewer than two ground-truth rows: frames carry no truth", path)
            return None, None
        t_ns = csv_times(path, rows)
        values = csv_numbers(path, [r[1:8] for r in rows])
        q_xyzw = values[:, [4, 5, 6, 3]]  # EuRoC writes w first
        slerp = Slerp((t_ns - t_ns[0]).astype(np.float64), Rotation.from_quat(q_xyzw))
        return t_ns, (values[:, :3], slerp)

    def _truth_at(self, t_ns: int) -> Truth | None:
        if self._truth_times is None or not self._truth_times[0] <= t_ns <= self._truth_times[-1]:
            return None
        positions, slerp = self._truth_interp
        rel = np.float64(t_ns - self._truth_times[0])
        rel_times = (self._truth_times - self._truth_times[0]).astype(np.float64)
        T_R_S = np.eye(4)
        T_R_S[:3, :3] = slerp([rel]).as_matrix()[0]
        T_R_S[:3, 3] = [np.interp(rel, rel_times, positions[:, k]) for k in range(3)]
        return Truth(T_XR_R @ T_R_S @ np.linalg.inv(self.T_head_B @ self.T_B_imu))


def open_euroc(target: str, **options: object) -> EurocSource:
    reject_unknown("euroc", options, ())
    return EurocSource(target)
