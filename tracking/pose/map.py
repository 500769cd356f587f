"""The local landmark map: 3D landmarks with descriptors, fused over many stereo observations, and keyframes.

Each stereo observation of a landmark is a Gaussian in the world whose covariance is long along the viewing ray
(depth from disparity) and thin across it (pixel noise). The map keeps, per landmark, the summed information
matrix and vector of its observations (Λ (3, 3), η (3,)), so that its position Λ⁻¹η is the least-squares
triangulation over every viewpoint that saw it — far better than any single stereo pair.

A landmark that the stages keep looking for and rarely find (a keypoint the detector does not repeat) is culled,
as ORB-SLAM culls map points whose found/visible ratio stays low, and culled landmarks are compacted away, so the
map (and every stage's cost) stays proportional to the scene, not to the time tracked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracking.pose.geometry import pose_deltas, transform_points
from tracking.pose.matching import mutual_best, pairs_within
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
    cull_after_searches: int = 8
    min_found_ratio: float = 0.3
    keep_found: int = 4
    compact_min_dead: int = 2000


@dataclass(frozen=True, eq=False)
class Keyframe:
    """A past view: ``T_world_head`` (4, 4) and the landmark ids (K,) it saw."""

    seq: int
    T_world_head: np.ndarray
    landmark_ids: np.ndarray


class LandmarkMap:
    """Landmarks (N) with world positions (N, 3) metres and descriptors (N, D); keyframes for relocalization.
    ``searched``/``found`` (N,) count how often a stage looked for a landmark and found it; ``alive`` (N,) is False
    for culled landmarks (ignored by every stage until ``compact`` removes them)."""

    def __init__(self, descriptor_dim: int, config: MapConfig | None = None) -> None:
        self.config = config or MapConfig()
        self.descriptors = np.zeros((0, descriptor_dim), np.float32)
        self._info = np.zeros((0, 3, 3))
        self._info_vec = np.zeros((0, 3))
        self.positions = np.zeros((0, 3))
        self.observations = np.zeros(0, dtype=np.int64)
        self.searched = np.zeros(0, dtype=np.int64)
        self.found = np.zeros(0, dtype=np.int64)
        self.alive = np.zeros(0, dtype=bool)
        self.keyframes: list[Keyframe] = []
        self._keyframe_poses = np.zeros((0, 4, 4))
        self._alive_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def alive_ids(self) -> np.ndarray:
        """Ids (K,) of the landmarks not culled."""
        if self._alive_ids is None:
            self._alive_ids = np.flatnonzero(self.alive)
        return self._alive_ids

    def note_search(self, searched_ids: np.ndarray, found_ids: np.ndarray) -> None:
        """Count a stage's search for ``searched_ids`` of which it found ``found_ids``; cull the landmarks found in
        less than ``min_found_ratio`` of at least ``cull_after_searches`` searches, unless found ``keep_found``
        times already (a landmark triangulated from many views is worth keeping even if often hidden)."""
        self.searched[searched_ids] += 1
        self.found[found_ids] += 1
        cfg = self.config
        ids = searched_ids[self.alive[searched_ids]]
        poor = (
            (self.searched[ids] >= cfg.cull_after_searches)
            & (self.found[ids] < cfg.min_found_ratio * self.searched[ids])
            & (self.found[ids] < cfg.keep_found)
        )
        if poor.any():
            self.alive[ids[poor]] = False
            self._alive_ids = None

    def compact(self) -> np.ndarray | None:
        """Remove culled landmarks once ``compact_min_dead`` of them have piled up (and outnumber the living).
        Returns the new id of every old id (-1 for removed ones), or None when nothing changed; keyframes are
        renumbered here, other holders of ids must apply the returned table."""
        dead = len(self) - int(self.alive.sum())
        if dead < self.config.compact_min_dead or dead < len(self) // 2:
            return None
        keep = self.alive
        new_ids = np.where(keep, np.cumsum(keep) - 1, -1)
        self.descriptors = self.descriptors[keep]
        self._info, self._info_vec, self.positions = self._info[keep], self._info_vec[keep], self.positions[keep]
        self.observations, self.searched, self.found = self.observations[keep], self.searched[keep], self.found[keep]
        self.alive = self.alive[keep]
        self._alive_ids = None
        self.keyframes = [
            Keyframe(kf.seq, kf.T_world_head, new_ids[kf.landmark_ids][new_ids[kf.landmark_ids] >= 0])
            for kf in self.keyframes
        ]
        return new_ids

    def match(self, descriptors: np.ndarray, candidate_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mutual-best descriptor matches of query ``descriptors`` (M, D) against landmarks ``candidate_ids`` (C,),
        every pair considered. Returns (query indices (K,), landmark ids (K,))."""
        if len(descriptors) == 0 or len(candidate_ids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        similarity = descriptors @ self.descriptors[candidate_ids].T
        best_c = np.argmax(similarity, axis=1)
        best_q = np.argmax(similarity, axis=0)
        q = np.arange(len(descriptors))
        keep = (best_q[best_c] == q) & (similarity[q, best_c] >= self.config.min_similarity)
        return q[keep], candidate_ids[best_c[keep]]

    def match_near(
        self,
        descriptors: np.ndarray,
        pixels: np.ndarray,
        candidate_ids: np.ndarray,
        candidate_pixels: np.ndarray,
        radius_px: float,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Mutual-best matches of keypoints (``descriptors`` (M, D) at ``pixels`` (M, 2)) against landmarks
        ``candidate_ids`` (C,) predicted at ``candidate_pixels`` (C, 2), scoring only pairs closer than
        ``radius_px``. Returns (query indices (K,), landmark ids (K,), number of pairs scored)."""
        kp_idx, cand_idx = pairs_within(pixels, candidate_pixels, radius_px)
        q, c = mutual_best(descriptors, self.descriptors[candidate_ids], kp_idx, cand_idx, self.config.min_similarity)
        return q, candidate_ids[c], len(kp_idx)

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
        self.searched = np.concatenate([self.searched, np.zeros(int(new.sum()), np.int64)])
        self.found = np.concatenate([self.found, np.zeros(int(new.sum()), np.int64)])
        self.alive = np.concatenate([self.alive, np.ones(int(new.sum()), bool)])
        if new.any():
            self._alive_ids = None

        use = ids >= 0
        np.add.at(self._info, ids[use], info_world[use])
        np.add.at(self._info_vec, ids[use], info_vec[use])
        np.add.at(self.observations, ids[use], 1)
        touched = np.unique(ids[use])
        self.positions[touched] = np.linalg.solve(self._info[touched], self._info_vec[touched][:, :, None])[:, :, 0]
        return ids

    def needs_keyframe(self, T_world_head: np.ndarray) -> bool:
        """True when no keyframe is within the configured distance and angle of ``T_world_head``."""
        if not self.keyframes:
            return True
        dt, dr = pose_deltas(self._keyframe_poses, T_world_head)
        near = (dt < self.config.keyframe_distance_m) & (np.degrees(dr) < self.config.keyframe_angle_deg)
        return not near.any()

    def add_keyframe(self, seq: int, T_world_head: np.ndarray, landmark_ids: np.ndarray) -> None:
        """Remember a view; the oldest is dropped beyond ``max_keyframes``."""
        self.keyframes.append(Keyframe(seq, T_world_head.copy(), np.unique(landmark_ids[landmark_ids >= 0])))
        self.keyframes = self.keyframes[-self.config.max_keyframes :]
        self._keyframe_poses = np.array([kf.T_world_head for kf in self.keyframes])
