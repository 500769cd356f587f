"""The synthetic headset's stereo rig: two forward cameras, 64 mm apart, slightly toed out, mild barrel distortion.

Head frame: OpenXR axes (x right, y up, z backward); camera frames: OpenCV axes (x right, y down, z forward).
The IMU sits at the head origin with the head's axes, so ``T_head_imu`` is the identity.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from skiptrack_types import CameraModel, StereoRig

BASELINE_M = 0.064
TOE_OUT_DEG = 3.0
REFERENCE_WIDTH_PX = 320
FOCAL_AT_REFERENCE_PX = 148.0  # about 98 degrees horizontal field of view at 320 px with the distortion below
DISTORTION = (-0.06, 0.008, 0.0002, -0.0001, 0.0)  # k1 k2 p1 p2 k3: barrel, monotonic for every radius
PRINCIPAL_OFFSET_PX = ((0.6, -0.4), (-0.5, 0.3))  # per camera, at the reference width: cameras are never ideal

HEAD_R_CAM_FORWARD = np.diag([1.0, -1.0, -1.0])
"""Rotation of a forward-looking OpenCV camera in the OpenXR head frame."""


def make_rig(size: tuple[int, int]) -> StereoRig:
    """The rig for images of ``size`` (width, height) pixels; intrinsics scale with the width."""
    width, height = size
    scale = width / REFERENCE_WIDTH_PX
    cameras = []
    for dx, dy in PRINCIPAL_OFFSET_PX:
        f = FOCAL_AT_REFERENCE_PX * scale
        cx = (width - 1) / 2 + dx * scale
        cy = (height - 1) / 2 + dy * scale
        cameras.append(CameraModel.from_intrinsics(width, height, f, f, cx, cy, dist=list(DISTORTION)))
    T_head_cam0 = _camera_on_head(-BASELINE_M / 2, +TOE_OUT_DEG)
    T_head_cam1 = _camera_on_head(+BASELINE_M / 2, -TOE_OUT_DEG)
    return StereoRig(
        cam0=cameras[0],
        cam1=cameras[1],
        T_cam0_cam1=np.linalg.inv(T_head_cam0) @ T_head_cam1,
        T_head_cam0=T_head_cam0,
        T_head_imu=np.eye(4),
    )


def _camera_on_head(x_m: float, yaw_deg: float) -> np.ndarray:
    """Camera at (x_m, 0, 0) in the head, turned by ``yaw_deg`` about head +y (positive turns it to the left)."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix() @ HEAD_R_CAM_FORWARD
    T[:3, 3] = (x_m, 0.0, 0.0)
    return T
