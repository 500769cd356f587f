"""Head pose stages: gyro/motion-model prediction, cheap tracking of a landmark subset, full frame-to-map matching
with robust PnP, relocalization against keyframes, and map initialization/update.

Every stage returns a ``StageResult`` with the head pose ``T_world_head`` (world: OpenXR axes, gravity-aligned when
an IMU is present), quality features for the refinement gates, and its compute in deterministic units: one unit is
one point reprojection, one descriptor comparison or one integrated IMU sample (so tests never depend on timing).
PnP runs on undistorted, normalised coordinates (K = I) so pinhole and fisheye cameras share one path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from skiptrack_types import StereoRig
from tracking.keypoints import Keypoints
from tracking.pose.fusion import RotationPrior, fuse_rotation_prior
from tracking.pose.geometry import (
    from_rvec_tvec,
    invert,
    rotation_between,
    to_rvec_tvec,
    transform_points,
)
from tracking.pose.map import REJECTED, UNMATCHED, LandmarkMap, MapConfig
from tracking.pose.matching import pairs_within
from tracking.pose.stereo import StereoConfig, match_stereo

GRAVITY_WORLD = np.array([0.0, -9.81, 0.0])


@dataclass(frozen=True)
class HeadConfig:
    """Tolerances of the head stages (pixels are image pixels of the cameras)."""

    stereo: StereoConfig = field(default_factory=StereoConfig)
    map: MapConfig = field(default_factory=MapConfig)
    track_subset: int = 1000
    track_lm_iterations: int = 10
    track_radius_px: float = 10.0
    grow_explained_fraction: float = 0.75
    search_radius_px: float = 30.0
    tracked_search_radius_px: float = 15.0
    search_growth_px_per_s: float = 400.0
    max_search_radius_px: float = 250.0
    min_inliers: int = 10
    min_reloc_inliers: int = 15
    inlier_px: float = 2.5
    ransac_iterations: int = 100
    reloc_iterations: int = 500
    lm_iterations: int = 20
    reloc_keyframes: int = 3
    fusion_pixel_sigma: float = 4.0
    fusion_iterations: int = 2


@dataclass(frozen=True, eq=False)
class StageResult:
    """What one stage made of the frame: ``T_world_head`` (4, 4), whether it succeeded, its inlier count and RMS
    reprojection residual (px), the landmark ids (K,) it tracked, the camera it used, and its compute units."""

    T_world_head: np.ndarray
    ok: bool
    inliers: int = 0
    residual_px: float = 0.0
    tracked_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    camera: int = 0
    cost: int = 0
    left_ids: np.ndarray | None = None
    """Per camera-0 keypoint: its landmark id, UNMATCHED or REJECTED (for the map update; None when the stage
    used camera 1)."""
    rotation_covariance: np.ndarray | None = None
    """With a gyro prior: the covariance (3, 3) of the fused orientation (see tracking.pose.fusion)."""


def _stage_labels(n: int, kp_index: np.ndarray, landmark_ids: np.ndarray, inlier: np.ndarray) -> np.ndarray:
    """Per keypoint (``n``) of a stage that matched keypoints ``kp_index`` to ``landmark_ids`` (``inlier`` the ones
    its pose kept): the landmark of an inlier, REJECTED for an outlier, UNMATCHED (a new landmark) for the rest."""
    left_ids = np.full(n, UNMATCHED)
    left_ids[kp_index] = REJECTED
    left_ids[kp_index[inlier]] = landmark_ids[inlier]
    return left_ids


def gravity_aligned_orientation(imu: np.ndarray, T_head_imu: np.ndarray) -> np.ndarray:
    """World-from-head rotation (3, 3) whose +Y is up according to the mean accelerometer reading of ``imu``
    (rows t_ns, gx, gy, gz, ax, ay, az); the smallest such rotation, so the start heading is kept."""
    f_head = T_head_imu[:3, :3] @ imu[:, 4:7].mean(axis=0)
    return rotation_between(f_head, -GRAVITY_WORLD)


def integrate_gyro(
    R_world_head: np.ndarray, imu: np.ndarray, prev_t_ns: int, t_ns: int, T_head_imu: np.ndarray, bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate ``R_world_head`` by the gyro over (``prev_t_ns``, ``t_ns``], from the samples of ``imu`` after
    ``prev_t_ns``; returns (R (3, 3), mean angular velocity in the head frame (3,) rad/s).

    Each sample stands for the rate from halfway to its neighbours, the first from ``prev_t_ns`` and the last until
    ``t_ns``: samples fall anywhere between frames, and summing each sample's rate over the stretch before it
    drops the stretch after the last one (a third of a millisecond of every 16.7 ms frame at 1 kHz, 2 % of every
    rotation, which the fusion with the images would take for the truth)."""
    t = imu[:, 0]
    keep = t > prev_t_ns
    if not keep.any() or t_ns <= prev_t_ns:
        return R_world_head, np.zeros(3)
    t = t[keep]
    omega_head = (imu[keep, 1:4] - bias) @ T_head_imu[:3, :3].T
    edges = np.clip(np.concatenate([[prev_t_ns], (t[:-1] + t[1:]) / 2, [t_ns]]), prev_t_ns, t_ns)
    dt = np.diff(edges) * 1e-9
    R = R_world_head
    for step in Rotation.from_rotvec(omega_head * dt[:, None]).as_matrix():  # one batched conversion
        R = R @ step
    return R, omega_head.mean(axis=0)


class HeadStages:
    """The head-pose stages over one rig and one map."""

    def __init__(self, rig: StereoRig, descriptor_dim: int, config: HeadConfig | None = None) -> None:
        self.rig = rig
        self.config = config or HeadConfig()
        self.map = LandmarkMap(descriptor_dim, self.config.map)
        self._T_head_cam = (rig.T_head_cam0, rig.T_head_cam1)

    # ------------------------------------------------------------------------------------------- map

    def initialize(
        self,
        seq: int,
        T_world_head: np.ndarray,
        keypoints: tuple[Keypoints, Keypoints],
        images: tuple[np.ndarray, ...] | None = None,
    ) -> StageResult:
        """Start the map from one stereo frame seen at ``T_world_head``; fails with too few stereo matches.
        ``images``: the frame's camera images, for the stereo matches' refinement (``match_stereo``)."""
        stereo = match_stereo(keypoints[0], keypoints[1], self.rig, self.config.stereo, images)
        cost = len(keypoints[0]) + len(keypoints[1]) + stereo.comparisons + 3 * len(stereo)
        if len(stereo) < self.config.min_reloc_inliers:
            return StageResult(T_world_head, ok=False, cost=cost)
        left_ids = np.full(len(keypoints[0]), UNMATCHED)
        ids = self.map.fuse(T_world_head @ self.rig.T_head_cam0, stereo, left_ids, self.rig.cam0.fx)
        self.map.add_keyframe(seq, T_world_head, ids)
        tracked = ids[self._spread(keypoints[0].points_px[stereo.left_index], ids)]
        return StageResult(T_world_head, True, len(ids), 0.0, tracked, 0, cost)

    def update_map(
        self,
        seq: int,
        T_world_head: np.ndarray,
        keypoints: tuple[Keypoints, Keypoints],
        left_ids: np.ndarray,
        images: tuple[np.ndarray, ...] | None = None,
    ) -> int:
        """Triangulate the stereo pair at the refined pose and fuse it into the map; returns compute units.

        ``left_ids`` per camera-0 keypoint (see StageResult); when none is UNMATCHED (the tracking stage) only
        the matched keypoints are stereo-matched, refining known landmarks without adding new ones. ``images``:
        the frame's camera images, for the stereo matches' refinement (``match_stereo``)."""
        left = keypoints[0]
        known_only = not (left_ids == UNMATCHED).any()
        if known_only:
            # only refine landmarks the frame already matched: stereo-match just those left keypoints
            use = np.flatnonzero(left_ids >= 0)
            left = Keypoints(left.points_px[use], left.scores[use], left.descriptors[use])
            left_ids = left_ids[use]
        stereo = match_stereo(left, keypoints[1], self.rig, self.config.stereo, images)
        ids = self.map.fuse(T_world_head @ self.rig.T_head_cam0, stereo, left_ids, self.rig.cam0.fx)
        if not known_only and self.map.needs_keyframe(T_world_head):
            self.map.add_keyframe(seq, T_world_head, ids)
        return len(left) + len(keypoints[1]) + stereo.comparisons + 3 * len(stereo)

    # ------------------------------------------------------------------------------------------- stages

    def track_guided(
        self, T_pred: np.ndarray, keypoints: tuple[Keypoints, ...], prior: RotationPrior | None = None
    ) -> StageResult:
        """Stage 1: guided tracking. The map landmarks predicted in view (at most ``track_subset``, spread over
        the image, the most reliably found first) are looked for only within ``track_radius_px`` of their
        predicted projections, and the pose is refined by Levenberg–Marquardt from the prediction: no RANSAC, no
        wide search; its map update refines the landmarks it matched and adds new ones where the map explains
        nearly every keypoint or the view is new (``_label_left``). ``prior``: the gyro's orientation, fused
        with the images'."""
        cost = 0
        best = StageResult(T_pred, ok=False)
        for cam in self._camera_order(keypoints):
            kp = keypoints[cam]
            in_view, pixels = self._in_view(T_pred, cam)
            cost += len(self.map.alive_ids())
            if len(kp) < self.config.min_inliers or len(in_view) < self.config.min_inliers:
                continue
            pick = self._spread(pixels, in_view)
            searched = in_view[pick]
            kp_index, landmark_ids, pairs = self.map.match_near(
                kp.descriptors, kp.points_px, searched, pixels[pick], self.config.track_radius_px
            )
            cost += pairs
            if len(kp_index) < self.config.min_inliers:
                continue
            result = self._refine(T_pred, landmark_ids, kp.points_px[kp_index], cam, ransac=False, prior=prior)
            cost += result.cost
            if result.ok:
                self.map.note_search(searched, result.tracked_ids)
                left_ids = None
                if cam == 0:
                    left_ids, new_cost = self._label_left(kp, kp_index, landmark_ids, result, in_view, pixels)
                    cost += new_cost
                return replace(result, cost=cost, left_ids=left_ids)
            best = result
        return StageResult(best.T_world_head, False, best.inliers, best.residual_px, camera=best.camera, cost=cost)

    def match_full(
        self,
        T_pred: np.ndarray,
        keypoints: tuple[Keypoints, ...],
        seconds_since_fix: float,
        prior_from_tracking: bool = False,
        prior: RotationPrior | None = None,
    ) -> StageResult:
        """Stage 2: match every keypoint against every map landmark predicted near it, then RANSAC PnP + LM.

        The search radius grows with the time since the last fix; ``prior_from_tracking`` (``T_pred`` is this
        frame's tracking-stage pose, good to a pixel or two) narrows it to ``tracked_search_radius_px``;
        ``prior``: the gyro's orientation, fused with the images'."""
        cfg = self.config
        radius = min(cfg.search_radius_px + cfg.search_growth_px_per_s * seconds_since_fix, cfg.max_search_radius_px)
        if prior_from_tracking:
            radius = cfg.tracked_search_radius_px
        cost = 0
        failed = StageResult(T_pred, ok=False)
        for cam in self._camera_order(keypoints):
            kp = keypoints[cam]
            in_view, pixels = self._in_view(T_pred, cam)
            cost += len(self.map.alive_ids())
            if len(kp) < self.config.min_inliers or len(in_view) < self.config.min_inliers:
                continue
            kp_index, landmark_ids, pairs = self.map.match_near(kp.descriptors, kp.points_px, in_view, pixels, radius)
            cost += pairs
            if len(kp_index) < self.config.min_inliers:
                continue
            result = self._refine(T_pred, landmark_ids, kp.points_px[kp_index], cam, ransac=True, prior=prior)
            cost += result.cost
            if not result.ok:
                failed = result
                continue
            self.map.note_search(in_view, result.tracked_ids)
            return self._found(result, kp, kp_index, landmark_ids, cost)
        return StageResult(failed.T_world_head, False, failed.inliers, failed.residual_px, cost=cost)

    def relocalize(self, T_guess: np.ndarray, keypoints: tuple[Keypoints, ...]) -> StageResult:
        """Stage 3: find the keyframes sharing most descriptors with the frame and solve PnP against their
        landmarks without any motion prior. One similarity product of the keypoints against the living landmarks
        scores every keyframe (how many of its landmarks are some keypoint's best match)."""
        cost = 0
        if not self.map.keyframes:
            return StageResult(T_guess, ok=False)
        alive = self.map.alive_ids()
        for cam in self._camera_order(keypoints):
            kp = keypoints[cam]
            if len(kp) < self.config.min_reloc_inliers or len(alive) < self.config.min_reloc_inliers:
                continue
            similarity = kp.descriptors @ self.map.descriptors[alive].T
            cost += similarity.size
            hit = np.zeros(len(self.map), bool)
            best = similarity.argmax(axis=1)
            hit[alive[best[similarity[np.arange(len(kp)), best] >= self.config.map.min_similarity]]] = True
            scores = [int(hit[kf.landmark_ids].sum()) for kf in self.map.keyframes]
            order = np.argsort(scores, kind="stable")[::-1][: self.config.reloc_keyframes]
            candidates = np.unique(np.concatenate([self.map.keyframes[i].landmark_ids for i in order]))
            candidates = candidates[self.map.alive[candidates]]
            kp_index, landmark_ids = self.map.match(kp.descriptors, candidates)
            cost += len(kp) * len(candidates)
            if len(kp_index) < self.config.min_reloc_inliers:
                continue
            T_seed = self.map.keyframes[int(order[0])].T_world_head
            result = self._refine(T_seed, landmark_ids, kp.points_px[kp_index], cam, ransac=True, reloc=True)
            cost += result.cost
            if result.ok and result.inliers >= self.config.min_reloc_inliers:
                return self._found(result, kp, kp_index, landmark_ids, cost)
        return StageResult(T_guess, ok=False, cost=cost)

    # ------------------------------------------------------------------------------------------- helpers

    def _camera_order(self, keypoints: tuple[Keypoints, ...]) -> list[int]:
        """Cameras to try, the one with more keypoints first (a covered camera has none)."""
        return sorted(range(len(keypoints)), key=lambda c: -len(keypoints[c]))

    def _in_view(self, T_world_head: np.ndarray, cam: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids (K,) of the living landmarks predicted inside camera ``cam``'s image and their pixels (K, 2)."""
        ids = self.map.alive_ids()
        pixels = self._project(T_world_head, self.map.positions[ids], cam)
        inside = np.isfinite(pixels[:, 0])
        return ids[inside], pixels[inside]

    def _label_left(
        self,
        kp: Keypoints,
        kp_index: np.ndarray,
        landmark_ids: np.ndarray,
        result: StageResult,
        in_view: np.ndarray,
        in_view_px: np.ndarray,
    ) -> tuple[np.ndarray, int]:
        """Per camera-0 keypoint of the tracking stage: its landmark (an inlier), REJECTED, or UNMATCHED (a new
        landmark for the map update); and the comparisons spent.

        Where the tracked landmarks explain at least ``grow_explained_fraction`` of the keypoints (a repeatable
        detector: nearly every keypoint is a map point), every other keypoint is UNMATCHED, as the full stage
        labels them: they are scene points coming into view, and the tracking stage's pose places them as well as
        the full stage's would (with truth keypoints the two poses differ by 2-6 µm, median, on the same map). Near
        a known view the map then grows on every frame as it does when the full stage runs on every frame; adding
        them only at full stages cost 2.5 % of ATE pooled over ten seeds (docs/pose.md, stop 17).

        Where most keypoints are unexplained (a network's top-k, about half of them map points) they are mostly
        detections no later frame repeats: adding them from the tracking stage cost 31 % of ATE (stop 17). There
        only a new view (``LandmarkMap.needs_keyframe``: no keyframe near the pose) adds the keypoints unlike every
        landmark predicted near them (``in_view`` at ``in_view_px``: a new one, so the map grows without
        duplicates), or tracking thins out between full stages (docs/pose.md, stop 11); near a known view the map
        grows at the full stage, which the cascade's rules send a frame to at least every 0.5 s."""
        inlier = np.isin(landmark_ids, result.tracked_ids)
        if np.count_nonzero(inlier) >= self.config.grow_explained_fraction * len(kp):
            return _stage_labels(len(kp), kp_index, landmark_ids, inlier), 0
        left_ids = np.full(len(kp), REJECTED)
        left_ids[kp_index[inlier]] = landmark_ids[inlier]
        rest = np.ones(len(kp), bool)
        rest[kp_index] = False
        rest = np.flatnonzero(rest)
        if len(rest) == 0 or not self.map.needs_keyframe(result.T_world_head):
            return left_ids, 0
        # a duplicate of a landmark lies near its projection: compare with the landmarks within the search window
        rest_idx, near = pairs_within(kp.points_px[rest], in_view_px, self.config.track_radius_px)
        similarity = np.einsum("kd,kd->k", kp.descriptors[rest[rest_idx]], self.map.descriptors[in_view[near]])
        most_similar = np.full(len(rest), -np.inf, np.float32)
        np.maximum.at(most_similar, rest_idx, similarity)
        left_ids[rest[most_similar < self.config.map.min_similarity]] = UNMATCHED
        return left_ids, len(rest_idx)

    def _found(
        self, result: StageResult, kp: Keypoints, kp_index: np.ndarray, landmark_ids: np.ndarray, cost: int
    ) -> StageResult:
        """A full or relocalization stage's success: the landmarks to track next (spread over the image) and,
        for camera 0, every keypoint's label for the map update (unmatched ones become new landmarks)."""
        inlier = np.isin(landmark_ids, result.tracked_ids)
        tracked = landmark_ids[inlier][self._spread(kp.points_px[kp_index[inlier]], landmark_ids[inlier])]
        left_ids = None
        if result.camera == 0:
            left_ids = _stage_labels(len(kp), kp_index, landmark_ids, inlier)
        return replace(result, tracked_ids=tracked, cost=cost, left_ids=left_ids)

    def _project(self, T_world_head: np.ndarray, points_world: np.ndarray, cam: int) -> np.ndarray:
        """Pixels (N, 2) of world points in camera ``cam``; NaN when behind it or outside its image."""
        camera = self.rig.cameras[cam]
        if len(points_world) == 0:
            return np.zeros((0, 2))
        points_cam = transform_points(invert(T_world_head @ self._T_head_cam[cam]), points_world)
        pixels = camera.project(points_cam)
        outside = (
            (pixels[:, 0] < -5)
            | (pixels[:, 0] > camera.width + 5)
            | (pixels[:, 1] < -5)
            | (pixels[:, 1] > camera.height + 5)
        )
        pixels[outside] = np.nan
        return pixels

    def _refine(
        self,
        T_guess: np.ndarray,
        landmark_ids: np.ndarray,
        pixels: np.ndarray,
        cam: int,
        ransac: bool,
        reloc: bool = False,
        prior: RotationPrior | None = None,
    ) -> StageResult:
        """PnP of ``landmark_ids`` observed at ``pixels`` in camera ``cam``: optional RANSAC, then LM on inliers,
        a 3-sigma-style inlier cut at ``inlier_px`` and LM again until the inlier set settles (at most 3 rounds);
        with a gyro ``prior``, the inliers and the prior fused (tracking.pose.fusion). Returns the head pose."""
        cfg = self.config
        camera = self.rig.cameras[cam]
        T_head_cam = self._T_head_cam[cam]
        obj = self.map.positions[landmark_ids].astype(np.float64)
        norm = camera.undistort_points(pixels)
        thresh = cfg.inlier_px / camera.fx
        rvec, tvec = to_rvec_tvec(invert(T_guess @ T_head_cam))
        cost = 0
        keep = np.ones(len(obj), bool)
        if ransac:
            iterations = cfg.reloc_iterations if reloc else cfg.ransac_iterations
            # minimal AP3P hypotheses: a third of the time of iterative ones, and LM below refines on all inliers
            ok, r, t, inl = cv2.solvePnPRansac(
                obj,
                norm,
                np.eye(3),
                None,
                iterationsCount=iterations,
                reprojectionError=thresh,
                confidence=0.999,
                flags=cv2.SOLVEPNP_AP3P,
            )
            cost += iterations * len(obj)
            if not ok or inl is None or len(inl) < cfg.min_inliers:
                return StageResult(T_guess, ok=False, camera=cam, cost=cost)
            rvec, tvec = r, t
            keep = np.zeros(len(obj), bool)
            keep[inl.ravel()] = True
        lm_iterations = cfg.lm_iterations if ransac else cfg.track_lm_iterations
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, lm_iterations, 1e-10)
        for _ in range(3):
            if keep.sum() < cfg.min_inliers:
                return StageResult(T_guess, ok=False, camera=cam, cost=cost)
            rvec, tvec = cv2.solvePnPRefineLM(obj[keep], norm[keep], np.eye(3), None, rvec, tvec, criteria)
            cost += lm_iterations * int(keep.sum())
            proj, _ = cv2.projectPoints(obj, rvec, tvec, np.eye(3), None)
            err_px = np.linalg.norm(proj.reshape(-1, 2) - norm, axis=1) * camera.fx
            cost += len(obj)
            new_keep = err_px < cfg.inlier_px
            if np.array_equal(new_keep, keep):
                break
            keep = new_keep
        inliers = int(keep.sum())
        if inliers < cfg.min_inliers:
            return StageResult(T_guess, ok=False, camera=cam, cost=cost)
        T_cam_world = from_rvec_tvec(rvec, tvec)
        residual = float(np.sqrt(np.mean(err_px[keep] ** 2)))
        if prior is None:
            T_world_head = invert(T_cam_world) @ invert(T_head_cam)
            return StageResult(T_world_head, True, inliers, residual, landmark_ids[keep], cam, cost)
        T_cam_world, covariance = fuse_rotation_prior(
            obj[keep], norm[keep], T_cam_world, T_head_cam[:3, :3], prior,
            cfg.fusion_pixel_sigma / camera.fx, cfg.fusion_iterations,
        )  # fmt: skip
        cost += cfg.fusion_iterations * inliers
        T_world_head = invert(T_cam_world) @ invert(T_head_cam)
        return StageResult(
            T_world_head, True, inliers, residual, landmark_ids[keep], cam, cost, rotation_covariance=covariance
        )

    def _spread(self, pixels: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Indices of up to ``track_subset`` of the landmarks ``ids`` (K,) seen at ``pixels`` (K, 2), spread over a
        4x3 image grid (round-robin over the cells), within a cell the most reliably found first."""
        k = self.config.track_subset
        if len(ids) <= k:
            return np.arange(len(ids))
        cam = self.rig.cam0
        cell = (
            np.clip(pixels[:, 0] * 4 // cam.width, 0, 3) + 4 * np.clip(pixels[:, 1] * 3 // cam.height, 0, 2)
        ).astype(int)
        reliability = (self.map.found[ids] + 1.0) / (self.map.searched[ids] + 2.0)
        by_cell = np.lexsort((-reliability, cell))
        sorted_cell = cell[by_cell]
        first_of_cell = np.searchsorted(sorted_cell, sorted_cell, side="left")
        rank = np.empty(len(ids), int)
        rank[by_cell] = np.arange(len(ids)) - first_of_cell
        return np.lexsort((cell, rank))[:k]
