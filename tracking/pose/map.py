"""The local landmark map: 3D landmarks with descriptors, fused over many stereo observations, and keyframes.

Each stereo observation of a landmark is a Gaussian in the world whose covariance is long along the viewing ray
(depth from disparity) and thin across it (pixel noise). The map keeps, per landmark, the summed information
matrix and vector of its observations (Λ (3, 3), η (3,)), so that its position Λ⁻¹η is the least-squares
triangulation over every viewpoint that saw it — far better than any single stereo pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracking.pose.geometry import pose_delta, transform_points
from tracking.pose.stereo import StereoPoints

UNMATCHED = -1
"""Landmark id of a keypoint that matched nothing in the map (it becomes a new landmark)."""
REJECTED = -2
"""Landmark id of a keypoint whose match the robust pose fit rejected (it is left out of the map)."""


@dataclass(frozen=True)
class MapConfig:
    """Descriptor similarity floor, pixel noise (px) assumed for fusion, keyframe spacing."""

    min_similarity: float = 0.8
    pixel_sigma: float = 0.5
    keyframe_distance_m: float = 0.15
    keyframe_angle_deg: float = 15.0
    max_keyframes: int = 300


@dataclass(frozen=True, eq=False)
class Keyframe:
    """A past view: ``T_world_head`` (4, 4) and the landmark ids (K,) it saw."""

    seq: int
    T_world_head: np.ndarray
    landmark_ids: np.ndarray


class LandmarkMap:
    """Landmarks (N) with world positions (N, 3) metres and descriptors (N, D); keyframes for relocalization."""

    def __init__(self, descriptor_dim: int, config: MapConfig | None = None) -> None:
        self.config = config or MapConfig()
        self.descriptors = np.zeros((0, descriptor_dim), np.float32)
        self._info = np.zeros((0, 3, 3))
        self._info_vec = np.zeros((0, 3))
        self.positions = np.zeros((0, 3))
        self.observations = np.zeros(0, dtype=np.int64)
        self.keyframes: list[Keyframe] = []

    def __len__(self) -> int:
        return len(self.positions)

    def match(
        self, descriptors: np.ndarray, candidate_ids: np.ndarray, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mutual-best descriptor matches of query ``descriptors`` (M, D) against landmarks ``candidate_ids`` (C,).

        ``allowed`` (M, C) bool restricts pairs (e.g. to those near the predicted projection). Returns
        (query indices (K,), landmark ids (K,)).
        """
        if len(descriptors) == 0 or len(candidate_ids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        similarity = descriptors @ self.descriptors[candidate_ids].T
        if allowed is not None:
            similarity = np.where(allowed, similarity, -np.inf)
        best_c = np.argmax(similarity, axis=1)
        best_q = np.argmax(similarity, axis=0)
        q = np.arange(len(descriptors))
        keep = (best_q[best_c] == q) & (similarity[q, best_c] >= self.config.min_similarity)
        return q[keep], candidate_ids[best_c[keep]]

    def fuse(self, T_world_cam0: np.ndarray, stereo: StereoPoints, left_ids: np.ndarray, focal_px: float) -> np.ndarray:
        """Fuse stereo points seen from ``T_world_cam0`` into the map.

        ``left_ids`` gives, per left keypoint, its landmark id, UNMATCHED (a new landmark) or REJECTED (skip).
        Returns the landmark id of every stereo point (REJECTED where skipped).
        """
        ids = left_ids[stereo.left_index].copy() if len(stereo) else np.zeros(0, np.int64)
        if len(stereo) == 0:
            return ids
        R = T_world_cam0[:3, :3]
        depth = np.linalg.norm(stereo.points_cam0, axis=1)
        ray = stereo.points_cam0 / depth[:, None]
        # Weigh an observation of a known landmark by the depth the map predicts, not the one it measured: a
        # measured depth that came out short (noise) would otherwise earn a larger weight and bias the map near.
        known = ids >= 0
        if known.any():
            rel = self.positions[ids[known]] - T_world_cam0[:3, 3]
            depth = depth.copy()
            depth[known] = np.linalg.norm(rel, axis=1)
        sigma_ratio = stereo.depth_sigma / np.linalg.norm(stereo.points_cam0, axis=1) ** 2
        lateral_var = (depth * self.config.pixel_sigma / focal_px) ** 2
        depth_var = np.maximum((sigma_ratio * depth**2) ** 2, lateral_var)
        outer = ray[:, :, None] * ray[:, None, :]
        info_cam = (np.eye(3) - outer) / lateral_var[:, None, None] + outer / depth_var[:, None, None]
        info_world = R @ info_cam @ R.T
        points_world = transform_points(T_world_cam0, stereo.points_cam0)
        info_vec = np.einsum("nij,nj->ni", info_world, points_world)

        new = ids == UNMATCHED
        ids[new] = np.arange(len(self), len(self) + int(new.sum()))
        self.descriptors = np.vstack([self.descriptors, stereo.descriptors[new]])
        self._info = np.concatenate([self._info, np.zeros((int(new.sum()), 3, 3))])
        self._info_vec = np.vstack([self._info_vec, np.zeros((int(new.sum()), 3))])
        self.positions = np.vstack([self.positions, points_world[new]])
        self.observations = np.concatenate([self.observations, np.zeros(int(new.sum()), np.int64)])

        use = ids >= 0
        np.add.at(self._info, ids[use], info_world[use])
        np.add.at(self._info_vec, ids[use], info_vec[use])
        np.add.at(self.observations, ids[use], 1)
        touched = np.unique(ids[use])
        self.positions[touched] = np.linalg.solve(self._info[touched], self._info_vec[touched][:, :, None])[:, :, 0]
        return ids

    def needs_keyframe(self, T_world_head: np.ndarray) -> bool:
        """True when no keyframe is within the configured distance and angle of ``T_world_head``."""
        for kf in self.keyframes:
            dt, dr = pose_delta(kf.T_world_head, T_world_head)
            if dt < self.config.keyframe_distance_m and np.degrees(dr) < self.config.keyframe_angle_deg:
                return False
        return True

    def add_keyframe(self, seq: int, T_world_head: np.ndarray, landmark_ids: np.ndarray) -> None:
        """Remember a view; the oldest is dropped beyond ``max_keyframes``."""
        self.keyframes.append(Keyframe(seq, T_world_head.copy(), np.unique(landmark_ids[landmark_ids >= 0])))
        if len(self.keyframes) > self.config.max_keyframes:
            self.keyframes.pop(0)
