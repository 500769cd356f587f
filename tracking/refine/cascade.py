"""The early-exit refinement cascade for the head pose, and the head's motion state.

Stages of increasing cost (``ExitStage``): 0 predict from the gyro and the motion model; 1 guided tracking of the
landmarks predicted in view (tight search window, LM from the prediction, no RANSAC; its map update refines the
matched landmarks every ``track_map_every`` frames, and adds new ones where the map explains nearly every keypoint
or the view is new, see ``HeadStages._label_left``: elsewhere the map grows at the full stage); 2 full frame-to-map
matching + RANSAC PnP + LM and the map update (new landmarks, keyframes); 3 relocalize against keyframes. After
stages 0 and 1 a learned gate (tracking.refine.gates) decides whether to stop. Hard rules keep the map alive
whatever the gates say: a full stage at least every ``max_since_full_s``, and whenever tracking found fewer than
``min_tracked`` landmarks or explained clearly fewer keypoints than it did on its first frame after the last full
stage (less than ``min_matched_ratio`` of that: a new view the map must grow into). The rule is relative because
detectors differ: truth keypoints are almost all map points, a network's top-k keypoints are not. With no gates the
cascade always runs to the full stage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from skiptrack_types import StereoRig, TrackingFlags
from tracking.keypoints import Keypoints
from tracking.pose.fusion import RotationPrior
from tracking.pose.geometry import make_transform, matrix_to_rotvec, pose_delta, rotvec_to_matrix
from tracking.pose.head import HeadConfig, HeadStages, StageResult, gravity_aligned_orientation, integrate_gyro
from tracking.pose.map import UNMATCHED
from tracking.refine.gates import GATE_FEATURES, GateSet


class ExitStage(enum.IntEnum):
    """The stage a pose exited at."""

    PREDICT = 0
    TRACK = 1
    FULL = 2
    RELOCALIZE = 3


@dataclass(frozen=True)
class CascadeConfig:
    """``gates`` None = always run the full cascade; ``threshold`` overrides the gates' own; ``supervise`` runs
    every stage on every frame (for on-the-fly gate labels) while committing what the gates choose.

    Gyro fusion (tracking.pose.fusion): the orientation's uncertainty grows by ``gyro_drift_rad_per_sqrt_s`` per
    √s between frames and starts at ``vision_rotation_sigma_rad`` (per axis) after a pose from the images alone.
    Both were chosen on seated seeds 1 and 2 with the network's keypoints and seed 1 with truth keypoints."""

    head: HeadConfig = field(default_factory=HeadConfig)
    gates: GateSet | None = None
    threshold: float | None = None
    max_since_full_s: float = 0.5
    min_tracked: int = 20
    min_matched_ratio: float = 0.85
    track_map_every: int = 1
    max_predict_s: float = 0.1
    lost_position_s: float = 1.0
    bias_window_s: float = 0.3
    bias_gain: float = 0.3
    gyro_drift_rad_per_sqrt_s: float = 5e-3
    vision_rotation_sigma_rad: float = 5e-3
    supervise: bool = False


@dataclass(frozen=True, eq=False)
class CascadeOutcome:
    """One frame's head result: ``T_world_head`` (4, 4), exit stage, flags, world-frame velocities (m/s, rad/s),
    compute units per stage run, and (for training) the gate features and pose after every stage that ran."""

    T_world_head: np.ndarray
    exit_stage: ExitStage
    flags: TrackingFlags
    linear_velocity: np.ndarray
    angular_velocity: np.ndarray
    stage_costs: dict[int, int]
    spent_cost: int
    features: dict[int, np.ndarray]
    stage_poses: dict[int, np.ndarray]
    relocalized: bool = False


class RefinementCascade:
    """Runs the head stages frame by frame and keeps the motion state between frames."""

    def __init__(self, rig: StereoRig, descriptor_dim: int, config: CascadeConfig | None = None) -> None:
        self.config = config or CascadeConfig()
        self.rig = rig
        self.stages = HeadStages(rig, descriptor_dim, self.config.head)
        self._T: np.ndarray | None = None
        self._velocity = np.zeros(3)
        self._omega_world = np.zeros(3)
        self._bias = np.zeros(3)
        self._tracked_ids = np.zeros(0, np.int64)
        self._ok = False
        self._prev_t_ns: int | None = None
        self._fix_t_ns: int | None = None
        self._fix_position = np.zeros(3)
        self._full_t_ns: int | None = None
        self._full_matched: float | None = None
        self._frames_since_map_update = 0
        self._anchor: tuple[int, np.ndarray] | None = None
        self._gyro_since_anchor = np.eye(3)
        self._rotation_covariance: np.ndarray | None = None

    @property
    def initialized(self) -> bool:
        return self._T is not None

    def break_motion(self) -> None:
        """Forget the motion prior (after a gap in the frames): the next frame is matched in full."""
        self._velocity = np.zeros(3)
        self._ok = False
        self._anchor = None
        self._rotation_covariance = None

    def step(
        self,
        seq: int,
        t_ns: int,
        keypoints: tuple[Keypoints, ...],
        imu: np.ndarray | None,
        images: tuple[np.ndarray, ...] | None = None,
    ) -> CascadeOutcome:
        """Estimate the head pose of one frame from its keypoints (one per camera) and IMU rows (or None);
        ``images``, the frame's camera images, refine the stereo matches that update the map (None: keypoints
        alone)."""
        imu = imu if imu is not None and len(imu) else None
        if self._T is None:
            return self._initialize(seq, t_ns, keypoints, imu, images)
        cfg = self.config
        dt = max((t_ns - self._prev_t_ns) * 1e-9, 1e-6)
        since_fix = (t_ns - self._fix_t_ns) * 1e-9
        since_full = (t_ns - self._full_t_ns) * 1e-9

        # stage 0: gyro (or the last angular velocity) and constant velocity
        R_prev = self._T[:3, :3]
        if imu is not None:
            R_pred, omega_head = integrate_gyro(R_prev, imu, self._prev_t_ns, t_ns, self.rig.T_head_imu, self._bias)
            self._omega_world = R_pred @ omega_head
        else:
            R_pred = rotvec_to_matrix(self._omega_world * dt) @ R_prev
        velocity = self._velocity if self._ok else np.zeros(3)
        T_pred = make_transform(R_pred, self._T[:3, 3] + velocity * dt)
        prior = self._rotation_prior(R_pred, dt) if imu is not None else None
        costs = {0: len(imu) if imu is not None else 1}
        gyro_rate = float(np.linalg.norm(self._omega_world))
        speed = float(np.linalg.norm(velocity))
        features = {0: _features(None, T_pred, T_pred, 1.0, gyro_rate, speed, since_full)}
        poses = {0: T_pred}
        forced = not self._ok or since_full >= cfg.max_since_full_s or len(self._tracked_ids) < cfg.min_tracked

        committed: tuple[ExitStage, StageResult | None] | None = None
        if not forced and self._gate(0, features[0]):
            committed = (ExitStage.PREDICT, None)
        r1: StageResult | None = None
        # a frame already bound for the full stage skips tracking (its pose would only seed the full stage)
        if self._ok and (cfg.supervise or (committed is None and not forced)):
            r1 = self.stages.track_guided(T_pred, keypoints, prior)
            costs[1] = r1.cost
            matched = r1.inliers / max(len(keypoints[r1.camera]), 1)
            features[1] = _features(r1, r1.T_world_head, T_pred, matched, gyro_rate, speed, since_full)
            if r1.ok:
                poses[1] = r1.T_world_head
                if self._full_matched is None:
                    self._full_matched = matched  # the first tracking after a full stage sets the reference
                # few landmarks, or many keypoints the map does not explain yet (a new view): grow the map
                thin = len(r1.tracked_ids) < cfg.min_tracked or matched < cfg.min_matched_ratio * self._full_matched
                if committed is None and not forced and not thin and self._gate(1, features[1]):
                    committed = (ExitStage.TRACK, r1)
                    if self._map_update_due(r1):
                        costs[1] += self.stages.update_map(seq, r1.T_world_head, keypoints, r1.left_ids, images)
        relocalized = False
        if committed is None or cfg.supervise:
            tracked = r1 is not None and r1.ok
            r2 = self.stages.match_full(r1.T_world_head if tracked else T_pred, keypoints, since_fix, tracked, prior)
            costs[2] = r2.cost
            if r2.ok:
                poses[2] = r2.T_world_head
                if committed is None:
                    committed = (ExitStage.FULL, r2)
                    self._full_matched = None
                    if r2.left_ids is not None:
                        costs[2] += self.stages.update_map(seq, r2.T_world_head, keypoints, r2.left_ids, images)
            else:
                r3 = self.stages.relocalize(T_pred, keypoints)
                costs[3] = r3.cost
                if r3.ok:
                    poses[3] = r3.T_world_head
                    if committed is None:
                        committed = (ExitStage.RELOCALIZE, r3)
                        self._full_matched = None
                        relocalized = not self._ok or since_fix > cfg.max_predict_s
        return self._commit(seq, t_ns, imu, T_pred, prior, committed, costs, features, poses, relocalized)

    # ------------------------------------------------------------------------------------------- internals

    def _map_update_due(self, r1: StageResult) -> bool:
        """Whether the tracking stage's frame goes into the map: always when it brings new landmarks (see
        ``HeadStages._label_left``), else every ``track_map_every`` frames. Default 1: every 2nd frame saved
        6 % of the compute units but cost 4 % ATE on look_around (seed 1), more than early exit may."""
        if r1.left_ids is None:
            return False
        self._frames_since_map_update += 1
        if (r1.left_ids == UNMATCHED).any() or self._frames_since_map_update >= self.config.track_map_every:
            self._frames_since_map_update = 0
            return True
        return False

    def _rotation_prior(self, R_pred: np.ndarray, dt: float) -> RotationPrior | None:
        """The gyro's word on this frame's orientation: the last orientation carried forward (``R_pred``), its
        covariance grown by the gyro's drift over ``dt``; None while the orientation is unknown (not tracking)."""
        if not self._ok or self._rotation_covariance is None:
            return None
        growth = self.config.gyro_drift_rad_per_sqrt_s**2 * dt
        return RotationPrior(R_pred, self._rotation_covariance + growth * np.eye(3))

    def _gate(self, stage: int, features: np.ndarray) -> bool:
        gates = self.config.gates
        return gates is not None and gates.should_exit(stage, features, self.config.threshold)

    def _initialize(
        self,
        seq: int,
        t_ns: int,
        keypoints: tuple[Keypoints, ...],
        imu: np.ndarray | None,
        images: tuple[np.ndarray, ...] | None,
    ) -> CascadeOutcome:
        R0 = gravity_aligned_orientation(imu, self.rig.T_head_imu) if imu is not None else np.eye(3)
        T0 = make_transform(R0, np.zeros(3))
        result = self.stages.initialize(seq, T0, (keypoints[0], keypoints[1]), images)
        self._prev_t_ns = t_ns
        costs = {int(ExitStage.FULL): result.cost}
        if result.ok:
            self._T = T0
            self._tracked_ids = result.tracked_ids
            self._ok = True
            self._fix_t_ns = self._full_t_ns = t_ns
            self._fix_position = T0[:3, 3].copy()
            self._anchor = (t_ns, R0.copy())
            if imu is not None:
                self._rotation_covariance = self.config.vision_rotation_sigma_rad**2 * np.eye(3)
            flags = TrackingFlags.tracked()
        else:
            flags = TrackingFlags.lost()
        return CascadeOutcome(
            T0, ExitStage.FULL, flags, np.zeros(3), np.zeros(3), costs, result.cost, {}, {int(ExitStage.FULL): T0}
        )

    def _commit(
        self,
        seq: int,
        t_ns: int,
        imu: np.ndarray | None,
        T_pred: np.ndarray,
        prior: RotationPrior | None,
        committed: tuple[ExitStage, StageResult | None] | None,
        costs: dict[int, int],
        features: dict[int, np.ndarray],
        poses: dict[int, np.ndarray],
        relocalized: bool,
    ) -> CascadeOutcome:
        cfg = self.config
        R_prev = self._T[:3, :3]
        if imu is not None:
            self._gyro_since_anchor = self._gyro_since_anchor @ (R_prev.T @ T_pred[:3, :3])
        if committed is None:
            stage = max(costs)
            T = T_pred
            self._ok = False
            since_fix = (t_ns - self._fix_t_ns) * 1e-9
            flags = TrackingFlags(
                orientation_valid=True,
                orientation_tracked=imu is not None and since_fix < cfg.lost_position_s,
                position_valid=since_fix < cfg.lost_position_s,
                position_tracked=False,
            )
            self._velocity = np.zeros(3)
            self._anchor = None
            self._rotation_covariance = None
        else:
            stage, result = committed
            T = T_pred if result is None else result.T_world_head
            if result is None:
                since_fix = (t_ns - self._fix_t_ns) * 1e-9
                flags = TrackingFlags.tracked() if since_fix <= cfg.max_predict_s else TrackingFlags.predicted()
                self._rotation_covariance = None if prior is None else prior.covariance
            else:
                self._rotation_covariance = self._fused_covariance(result, imu is not None)
                self._vision_fix(t_ns, T, imu is not None)
                self._tracked_ids = result.tracked_ids
                self._ok = True
                flags = TrackingFlags.tracked()
                if stage >= ExitStage.FULL:
                    self._full_t_ns = t_ns
        if imu is None and committed is not None and committed[1] is not None:
            dt = max((t_ns - self._prev_t_ns) * 1e-9, 1e-6)
            self._omega_world = matrix_to_rotvec(T[:3, :3] @ R_prev.T) / dt
        self._T = T
        self._prev_t_ns = t_ns
        new_ids = self.stages.map.compact()
        if new_ids is not None:
            self._tracked_ids = new_ids[self._tracked_ids][new_ids[self._tracked_ids] >= 0]
        spent = sum(c for k, c in costs.items() if k <= stage) if committed is not None else sum(costs.values())
        return CascadeOutcome(
            T,
            ExitStage(stage),
            flags,
            self._velocity.copy(),
            self._omega_world.copy(),
            costs,
            spent,
            features,
            poses,
            relocalized,
        )

    def _fused_covariance(self, result: StageResult, has_imu: bool) -> np.ndarray | None:
        """The orientation covariance after a stage that saw the images: the fusion's, or for a pose the images
        gave alone (no prior yet, a relocalization) ``vision_rotation_sigma_rad`` on each axis."""
        if not has_imu:
            return None
        if result.rotation_covariance is not None:
            return result.rotation_covariance
        return self.config.vision_rotation_sigma_rad**2 * np.eye(3)

    def _vision_fix(self, t_ns: int, T: np.ndarray, has_imu: bool) -> None:
        """Update velocity and gyro bias from a pose the cameras confirmed."""
        since_fix = (t_ns - self._fix_t_ns) * 1e-9
        if self._ok and since_fix > 0:
            v_new = (T[:3, 3] - self._fix_position) / since_fix
            self._velocity = 0.5 * self._velocity + 0.5 * v_new
        self._fix_t_ns = t_ns
        self._fix_position = T[:3, 3].copy()
        if not has_imu:
            return
        if self._anchor is None:
            self._anchor, self._gyro_since_anchor = (t_ns, T[:3, :3].copy()), np.eye(3)
            return
        anchor_t, R_anchor = self._anchor
        window = (t_ns - anchor_t) * 1e-9
        if window >= self.config.bias_window_s:
            # gyro said R_anchor · ΔR; vision says T: the difference over the window is the residual bias
            residual = matrix_to_rotvec((R_anchor @ self._gyro_since_anchor).T @ T[:3, :3])
            self._bias = self._bias - self.config.bias_gain * (self.rig.T_head_imu[:3, :3].T @ residual) / window
            self._anchor, self._gyro_since_anchor = (t_ns, T[:3, :3].copy()), np.eye(3)


def _features(
    result: StageResult | None,
    T_stage: np.ndarray,
    T_pred: np.ndarray,
    found_fraction: float,
    gyro_rate: float,
    speed: float,
    since_full: float,
) -> np.ndarray:
    """The gate feature vector (GATE_FEATURES order) after a stage."""
    dt, dr = pose_delta(T_stage, T_pred)
    failed = result is not None and not result.ok
    inliers = result.inliers if result is not None else 0
    residual = result.residual_px if result is not None else 0.0
    values = (
        float(failed),
        np.log1p(inliers),
        residual,
        found_fraction,
        dt * 1e3,
        np.degrees(dr),
        gyro_rate,
        speed,
        since_full,
    )
    return np.array(values, dtype=np.float64).reshape(len(GATE_FEATURES))
