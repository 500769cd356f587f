"""Gyro–vision fusion of the head pose: PnP with a prior on the camera's orientation.

With a narrow field of view and a scene at a few metres, a small rotation and a sideways translation move the
image almost alike, so PnP on one camera trades one for the other: with the keypoint network's detections the
head's position error was 90 % explained by its orientation error (2.7-2.9 m per rad, about the scene's depth).
The gyro knows the rotation since the last frame to a few microradians. So the pose stages refine PnP's pose by a
few Gauss-Newton steps on the reprojection errors of its inliers plus a prior on the orientation: the last fused
orientation carried forward by the gyro, with a covariance grown by the gyro's drift since then (an error-state
Kalman filter on orientation whose measurement is the PnP problem itself). Where the images cannot tell rotation
from translation the prior decides the rotation and the translation follows along the ambiguity; where they can,
the images win.

The reprojection terms weigh each point by ``HeadConfig.fusion_pixel_sigma`` (4 px), far above a detector's
per-point noise: the errors of neighbouring keypoints are correlated (shared texture, shared blur), so N points
carry much less than N independent measurements' information.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracking.pose.geometry import matrix_to_rotvec, rotvec_to_matrix, skew


@dataclass(frozen=True, eq=False)
class RotationPrior:
    """What the gyro says about this frame's head orientation: ``R_world_head`` (3, 3) and the covariance (3, 3)
    rad² of its error, as a rotation vector in the head frame (R_true = R · exp(error))."""

    R_world_head: np.ndarray
    covariance: np.ndarray


def fuse_rotation_prior(
    points_world: np.ndarray,
    normalized: np.ndarray,
    T_cam_world: np.ndarray,
    R_head_cam: np.ndarray,
    prior: RotationPrior,
    sigma: float,
    iterations: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Refine ``T_cam_world`` (4, 4) so that it fits the observations (``points_world`` (N, 3) seen at undistorted
    normalised coordinates ``normalized`` (N, 2), each with noise ``sigma`` in normalised units) and the orientation
    ``prior`` together. Returns (T_cam_world (4, 4), covariance (3, 3) of the head orientation's error in the head
    frame, as in RotationPrior).

    Perturbations are on the left of T_cam_world, X_c' = exp(δθ) X_c + δt; a head-frame orientation error φ is the
    camera-frame δθ = −R_cam_head φ, so covariances carry over by R_cam_head · P · R_cam_headᵀ."""
    R_cam_head = R_head_cam.T
    R_cw_prior = R_cam_head @ prior.R_world_head.T
    info_prior = np.linalg.inv(R_cam_head @ prior.covariance @ R_cam_head.T)
    weight = 1.0 / sigma**2
    R, t = T_cam_world[:3, :3].copy(), T_cam_world[:3, 3].copy()
    H = np.eye(6)
    for _ in range(iterations):
        X = points_world @ R.T + t
        inv_z = 1.0 / X[:, 2]
        residual = (X[:, :2] * inv_z[:, None] - normalized).ravel()
        d_uv_d_x = np.zeros((len(X), 2, 3))
        d_uv_d_x[:, 0, 0] = d_uv_d_x[:, 1, 1] = inv_z
        d_uv_d_x[:, :, 2] = -X[:, :2] * inv_z[:, None] ** 2
        J = np.concatenate([-d_uv_d_x @ skew(X), d_uv_d_x], axis=2).reshape(-1, 6)
        prior_residual = matrix_to_rotvec(R @ R_cw_prior.T)  # δθ = −this takes R onto the prior
        H = weight * (J.T @ J)
        H[:3, :3] += info_prior
        g = weight * (J.T @ residual)
        g[:3] += info_prior @ prior_residual
        step = -np.linalg.solve(H, g)
        dR = rotvec_to_matrix(step[:3])
        R, t = dR @ R, dR @ t + step[3:]
    covariance_cam = np.linalg.inv(H)[:3, :3]
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T, R_head_cam @ covariance_cam @ R_head_cam.T
