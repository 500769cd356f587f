"""Tracking accuracy metrics and the evaluation command line.

Metrics are pure functions on arrays; ``python -m tracking.evaluate`` runs the Tracker over a source and writes
them as JSON, with the estimated and true head trajectories in TUM format.

- ATE (absolute trajectory error): RMSE of positions after the SE(3) alignment of Umeyama (IEEE PAMI 13(4),
  1991; no scale), following the TUM RGB-D benchmark (Sturm et al., IROS 2012); ``ate_deg`` is the RMS angle
  of the aligned orientation errors.
- RPE (relative pose error): RMSE of the translation error of the relative motion over a fixed time step
  (TUM RGB-D benchmark, eq. 2), reported in metres per that step.
- MPJPE: mean per-joint position error (mm) of the 21 hand joints in the world, after the head's pose alignment.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from skiptrack_types import InvalidInputError, SkipTrackError
from tracking.pose.geometry import invert, make_transform, pose_to_tum_row, transform_points
from tracking.refine.gates import DEFAULT_GATES_PATH

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alignment:
    """The rigid transform (4, 4) taking estimated world coordinates into the truth's world."""

    T_gt_est: np.ndarray


def umeyama_alignment(est_xyz: np.ndarray, gt_xyz: np.ndarray) -> Alignment:
    """SE(3) alignment minimising Σ‖gt − (R·est + t)‖² (Umeyama 1991, without scale); both (N, 3), N ≥ 3."""
    est_xyz, gt_xyz = _check_pair(est_xyz, gt_xyz)
    if len(est_xyz) < 3:
        raise InvalidInputError(f"alignment needs at least 3 poses, got {len(est_xyz)}")
    mu_e, mu_g = est_xyz.mean(axis=0), gt_xyz.mean(axis=0)
    cov = (gt_xyz - mu_g).T @ (est_xyz - mu_e) / len(est_xyz)
    U, _, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    return Alignment(make_transform(R, mu_g - R @ mu_e))


def pose_alignment(est: np.ndarray, gt: np.ndarray, arm_m: float = 1.0) -> Alignment:
    """SE(3) Umeyama alignment of whole poses (N, 4, 4): each pose contributes its origin and the tips of its
    three axes scaled to ``arm_m``, so orientation constrains the alignment even when the head barely moves
    (a seated user's few centimetres leave a positions-only alignment's rotation ill-conditioned)."""
    est, gt = _check_pair(est, gt)
    tips = np.array([[0.0, 0.0, 0.0], [arm_m, 0.0, 0.0], [0.0, arm_m, 0.0], [0.0, 0.0, arm_m]])

    def points(T: np.ndarray) -> np.ndarray:
        return (np.einsum("nij,kj->nki", T[:, :3, :3], tips) + T[:, None, :3, 3]).reshape(-1, 3)

    return umeyama_alignment(points(est), points(gt))


def ate(est: np.ndarray, gt: np.ndarray) -> tuple[float, float, Alignment]:
    """(ATE m, ATE deg, pose alignment) of estimated poses ``est`` (N, 4, 4) against ``gt`` (N, 4, 4).

    ATE m uses the classic positions-only alignment (as the TUM tools and evo do); ATE deg compares orientations
    after ``pose_alignment``, which is also returned for aligning other estimates (hands)."""
    _check_pair(est, gt)
    positions = umeyama_alignment(est[:, :3, 3], gt[:, :3, 3])
    err_m = np.linalg.norm(transform_points(positions.T_gt_est, est[:, :3, 3]) - gt[:, :3, 3], axis=1)
    alignment = pose_alignment(est, gt)
    aligned = alignment.T_gt_est @ est
    rel = np.einsum("nji,njk->nik", aligned[:, :3, :3], gt[:, :3, :3])
    err_rad = np.linalg.norm(Rotation.from_matrix(rel).as_rotvec(), axis=1)
    return float(np.sqrt(np.mean(err_m**2))), float(np.degrees(np.sqrt(np.mean(err_rad**2)))), alignment


def rpe(est: np.ndarray, gt: np.ndarray, step: int) -> float:
    """RMSE (m) of the translation of (gt_i⁻¹ gt_{i+step})⁻¹ (est_i⁻¹ est_{i+step}) over all i."""
    _check_pair(est, gt)
    if step < 1 or step >= len(est):
        raise InvalidInputError(f"RPE step must be in [1, {len(est) - 1}] poses, got {step}")
    errors = []
    for i in range(len(est) - step):
        d_est = invert(est[i]) @ est[i + step]
        d_gt = invert(gt[i]) @ gt[i + step]
        errors.append(np.linalg.norm((invert(d_gt) @ d_est)[:3, 3]))
    return float(np.sqrt(np.mean(np.square(errors))))


def mpjpe_mm(est_joints: np.ndarray, gt_joints: np.ndarray) -> float:
    """Mean per-joint position error (mm) of ``est_joints`` against ``gt_joints``, both (..., 3) metres."""
    _check_pair(est_joints, gt_joints)
    if len(est_joints) == 0:
        return float("nan")
    return float(np.linalg.norm(est_joints - gt_joints, axis=-1).mean() * 1e3)


def write_tum(path: Path, t_ns: np.ndarray, poses: np.ndarray) -> None:
    """Write poses (N, 4, 4) at times ``t_ns`` (N,) as a TUM trajectory (t tx ty tz qx qy qz qw, seconds)."""
    rows = [pose_to_tum_row(t * 1e-9, T) for t, T in zip(t_ns, poses, strict=True)]
    np.savetxt(path, np.array(rows).reshape(-1, 8), fmt="%.9f", header="t tx ty tz qx qy qz qw")


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InvalidInputError(f"trajectories must have the same shape, got {a.shape} and {b.shape}")
    return a, b


# --------------------------------------------------------------------------------------------------- running

OPENXR_TO_MEDIAPIPE = np.array([1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 17, 18, 19, 20, 22, 23, 24, 25])
"""Rows of the 26 OpenXR joints that are the 21 MediaPipe joints, in MediaPipe order."""


@dataclass
class Run:
    """Everything one pass of the tracker over a sequence produced, for the metrics."""

    t_ns: list[int]
    est: list[np.ndarray]
    gt: list[np.ndarray]
    tracked: list[bool]
    covered: list[bool]
    exit_stages: list[int]
    refine_cost: int
    hand_est: list[np.ndarray]
    hand_gt: list[np.ndarray]
    hand_tracked: list[np.ndarray]
    head_stage_ms: list[float] = field(default_factory=list)


def run_tracker(
    frames,
    rig,
    gates_path: Path | None,
    threshold: float | None = None,
    keypoints: list[tuple] | None = None,
) -> Run:
    """Track ``frames`` (a list of Frame) with a fresh Tracker (``gates_path`` None: no early exit); keep poses
    next to the truth. ``keypoints``: one tuple per frame (e.g. the network's, computed once for several runs);
    None lets the tracker's default provider (truth keypoints) find them."""
    from tracking.network.low_light import COVERED_MEAN
    from tracking.tracker import Tracker, TrackerConfig

    config = TrackerConfig(gates_path=gates_path, exit_threshold=threshold)
    run = Run([], [], [], [], [], [], 0, [], [], [])
    with Tracker(rig, config) as tracker:
        for i, frame in enumerate(frames):
            result = tracker.process(frame, keypoints[i] if keypoints is not None else None)
            if "head_ms" in result.timings_ms:
                run.head_stage_ms.append(result.timings_ms["head_ms"] + result.timings_ms["filter_ms"])
            if result.problems or result.head is None or getattr(frame, "truth", None) is None:
                continue
            run.t_ns.append(frame.t_ns)
            run.est.append(result.head.T_world_head)
            run.gt.append(frame.truth.T_world_head)
            run.tracked.append(result.head.flags.position_tracked)
            run.covered.append(min(float(img.mean()) for img in frame.images) < COVERED_MEAN)
            run.exit_stages.append(result.exit_stage)
            run.refine_cost += result.refine_cost
            for hand in result.hands:
                truth = frame.truth.hand(hand.side)
                if truth is None or not hand.flags.position_tracked:
                    continue
                run.hand_est.append(hand.joint_positions[OPENXR_TO_MEDIAPIPE])
                run.hand_gt.append(truth.joints_world)
                run.hand_tracked.append(hand.joint_tracked[OPENXR_TO_MEDIAPIPE])
    return run


def run_metrics(run: Run, rate_hz: float) -> dict[str, float | dict[str, int]]:
    """The evaluation metrics of one run (see the module docstring)."""
    if len(run.est) < 3:
        raise SkipTrackError(f"only {len(run.est)} poses were tracked; need at least 3 to evaluate")
    est, gt = np.array(run.est), np.array(run.gt)
    ate_m, ate_deg, alignment = ate(est, gt)
    step = max(1, min(int(round(rate_hz)), len(est) - 1))
    hand_mm = hand_tracked_mm = float("nan")
    if run.hand_est:
        hand_est = np.array(run.hand_est) @ alignment.T_gt_est[:3, :3].T + alignment.T_gt_est[:3, 3]
        hand_gt = np.array(run.hand_gt)
        hand_mm = mpjpe_mm(hand_est, hand_gt)
        tracked = np.array(run.hand_tracked)
        hand_tracked_mm = mpjpe_mm(hand_est[tracked], hand_gt[tracked])
    return {
        "frames": len(est),
        "head_ate_m": ate_m,
        "head_ate_deg": ate_deg,
        "head_rpe_m": rpe(est, gt, step),
        "rpe_step_s": step / rate_hz,
        "hand_mpjpe_mm": hand_mm,
        "hand_mpjpe_tracked_mm": hand_tracked_mm,
        "hand_frames": len(run.hand_est),
        "exit_stage_hist": {str(k): v for k, v in sorted(Counter(run.exit_stages).items())},
        "refine_cost": run.refine_cost,
        "tracked_fraction": float(np.mean(run.tracked)),
        "relocalization_s": _longest_lost_s(run),
        "uncover_to_tracked_s": _uncover_to_tracked_s(run),
        "covered_s": float(np.sum(run.covered)) / rate_hz,
        "head_stage_ms_p50": float(np.median(run.head_stage_ms)) if run.head_stage_ms else float("nan"),
        "head_stage_ms_p99": float(np.percentile(run.head_stage_ms, 99)) if run.head_stage_ms else float("nan"),
    }


def _longest_lost_s(run: Run) -> float:
    """Longest stretch (s) from a frame not position-tracked to the next tracked one; 0 when never lost."""
    longest, lost_since = 0.0, None
    for t, tracked in zip(run.t_ns, run.tracked, strict=True):
        if not tracked and lost_since is None:
            lost_since = t
        elif tracked and lost_since is not None:
            longest = max(longest, (t - lost_since) * 1e-9)
            lost_since = None
    if lost_since is not None:
        longest = max(longest, (run.t_ns[-1] - lost_since) * 1e-9)
    return longest


def _uncover_to_tracked_s(run: Run) -> float:
    """Worst time (s) from a camera being uncovered to the head being tracked again; 0 without covers."""
    worst = 0.0
    for i in range(1, len(run.t_ns)):
        if run.covered[i - 1] and not run.covered[i]:
            j = next((k for k in range(i, len(run.t_ns)) if run.tracked[k]), None)
            end = run.t_ns[j] if j is not None else run.t_ns[-1]
            worst = max(worst, (end - run.t_ns[i]) * 1e-9)
    return worst


def cover_both_cameras(frames: list) -> list:
    """``frames`` with both cameras covered wherever one is (the darker image stands in for both): the scenario's
    one-camera cover becomes a full blackout, so that tracking is lost and must relocalize."""
    from skiptrack_types import Frame
    from tracking.network.low_light import COVERED_MEAN

    out = []
    for frame in frames:
        darkest = min(frame.images, key=lambda image: float(image.mean()))
        if float(darkest.mean()) < COVERED_MEAN:
            frame = Frame(frame.seq, frame.t_ns, tuple(darkest.copy() for _ in frame.images), frame.imu, frame.truth)
        out.append(frame)
    return out


def seeds_from(text: str) -> list[int]:
    """World seeds from a command line: ``"1-6"`` (a range, both ends included) or ``"1,3,5"``."""
    try:
        if "-" in text:
            first, last = text.split("-")
            seeds = list(range(int(first), int(last) + 1))
        else:
            seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise InvalidInputError(f"seeds must look like 1-6 or 1,3,5, got {text!r}") from None
    if not seeds:
        raise InvalidInputError(f"no seeds in {text!r}: a range is written first-last, with first <= last")
    return seeds


def network_keypoints(frames: list, skip: bool = True, precision: str = "auto") -> list[tuple]:
    """The shipped keypoint network's keypoints of every frame: the skip-convolution engine at its own threshold,
    or (``skip=False``) the same weights run densely; ``precision`` of the whole-image dense passes (as the
    tracker's ``NetworkKeypointProvider``)."""
    from tracking.providers import NetworkKeypointProvider

    provider = NetworkKeypointProvider(skip=skip, precision=precision)
    return [provider(frame) for frame in frames]


def pose_difference_mm(a: Run, b: Run) -> dict[str, float]:
    """Head position difference (mm) between two runs over the same frames, where both tracked the position:
    median, 95th percentile and maximum (no alignment: both runs start from the same first frame), and
    ``median_aligned``, the median after the rigid alignment of one trajectory onto the other (what is left when a
    difference that stays constant, such as a world a millimetre apart from the first frames on, is taken out)."""
    b_tracked = {t: T for t, T, tracked in zip(b.t_ns, b.est, b.tracked, strict=True) if tracked}
    common = [(T[:3, 3], b_tracked[t][:3, 3]) for t, T, tracked in zip(a.t_ns, a.est, a.tracked, strict=True)
              if tracked and t in b_tracked]  # fmt: skip
    if not common:
        return {"median": float("nan"), "p95": float("nan"), "max": float("nan"), "median_aligned": float("nan"),
                "frames": 0}  # fmt: skip
    pa, pb = (np.array(p) for p in zip(*common, strict=True))
    diffs = 1e3 * np.linalg.norm(pa - pb, axis=1)
    aligned = float("nan")
    if len(pa) >= 3:
        pa_on_b = transform_points(umeyama_alignment(pa, pb).T_gt_est, pa)
        aligned = float(np.median(1e3 * np.linalg.norm(pa_on_b - pb, axis=1)))
    return {"median": float(np.median(diffs)), "p95": float(np.percentile(diffs, 95)), "max": float(np.max(diffs)),
            "median_aligned": aligned, "frames": len(diffs)}  # fmt: skip


def emit_json(data: dict, path: Path | None, indent: int = 2) -> None:
    """Print ``data`` as JSON and, given a ``path``, write the same text there: how the evaluation commands and the
    benchmarks built on them end."""
    text = json.dumps(data, indent=indent)
    print(text)
    if path is not None:
        path.write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracking.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="source URI, e.g. synthetic:seated")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--no-exit", action="store_true", help="always run the full cascade (no early exit)")
    parser.add_argument("--threshold", type=float, default=None, help="gate exit threshold (default: trained)")
    parser.add_argument("--gates", type=Path, default=DEFAULT_GATES_PATH, help="gate file (default: shipped)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the metrics")
    parser.add_argument("--tum-dir", type=Path, default=None, help="write gt.tum and est.tum here")
    parser.add_argument("--keypoints", choices=("truth", "network"), default="truth",
                        help="truth keypoints with 0.5 px noise (default) or the shipped keypoint network")  # fmt: skip
    parser.add_argument("--dense", action="store_true", help="with --keypoints network: run the network densely "
                        "(the baseline, same weights)")  # fmt: skip
    parser.add_argument("--vs-dense", action="store_true", help="with --keypoints network: also track with the dense "
                        "network's keypoints and report the head position difference (skip_vs_dense_mm; "
                        "skip_vs_dense_no_exit_mm: both always running the full cascade)")  # fmt: skip
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="with --keypoints network: arithmetic of the network's whole-image dense passes (as "
                        "run_tracker.py; auto: bf16 on a CPU with bfloat16 instructions)")  # fmt: skip
    parser.add_argument("--cover", choices=("scenario", "both"), default="scenario",
                        help="'both': where the scenario covers one camera, cover both (tracking is lost and must "
                        "relocalize)")  # fmt: skip
    args = parser.parse_args(argv)
    if (args.dense or args.vs_dense) and args.keypoints != "network":
        parser.error("--dense and --vs-dense apply to --keypoints network")
    if args.dense and args.vs_dense:
        parser.error("--vs-dense compares the skip network with the dense one; leave out --dense")
    logging.basicConfig(level=logging.ERROR)
    from hardware import open_source
    from tracking.network.api import resolve_precision

    options = {k: v for k, v in (("seed", args.seed), ("seconds", args.seconds)) if v is not None}
    try:
        with open_source(args.source, **options) as source:
            rig, rate = source.rig, float(source.rate_hz or 60.0)
            if rig is None:
                raise SkipTrackError(f"source {args.source} has no calibration (rig); evaluation needs one")
            frames = list(source)
        if args.cover == "both":
            frames = cover_both_cameras(frames)
        network = args.keypoints == "network"
        keypoints = network_keypoints(frames, not args.dense, args.precision) if network else None
        runs = {"no_exit": run_tracker(frames, rig, gates_path=None, keypoints=keypoints)}
        if not args.no_exit:
            runs["exit"] = run_tracker(frames, rig, args.gates, args.threshold, keypoints)
        main_run = runs["no_exit" if args.no_exit else "exit"]
        metrics = run_metrics(main_run, rate)
        if args.vs_dense:
            dense_keypoints = network_keypoints(frames, False, args.precision)
            dense_full = run_tracker(frames, rig, None, keypoints=dense_keypoints)
            dense_run = dense_full if args.no_exit else run_tracker(frames, rig, args.gates, args.threshold,
                                                                    dense_keypoints)  # fmt: skip
            metrics["skip_vs_dense_mm"] = pose_difference_mm(main_run, dense_run)
            # without early exit: the gates' choices flip on tiny input differences and the runs' maps part
            metrics["skip_vs_dense_no_exit_mm"] = pose_difference_mm(runs["no_exit"], dense_full)
            metrics["dense_head_ate_m"] = run_metrics(dense_run, rate)["head_ate_m"]
        full = run_metrics(runs["no_exit"], rate)
        metrics["refine_saving"] = full["refine_cost"] / max(metrics["refine_cost"], 1)
        compared = ("head_ate_m", "head_ate_deg", "head_rpe_m", "hand_mpjpe_mm", "hand_mpjpe_tracked_mm")
        metrics["no_exit"] = {k: full[k] for k in (*compared, "refine_cost", "relocalization_s")}
        metrics.update(
            source=args.source,
            seed=args.seed,
            seconds=args.seconds,
            early_exit=not args.no_exit,
            keypoints=args.keypoints,
            network=("dense" if args.dense else "skip") if network else None,
            precision=resolve_precision(args.precision) if network else None,
            cover=args.cover,
        )
    except SkipTrackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(metrics, indent=1))
    if args.tum_dir is not None:
        args.tum_dir.mkdir(parents=True, exist_ok=True)
        t = np.array(main_run.t_ns)
        write_tum(args.tum_dir / "gt.tum", t, np.array(main_run.gt))
        write_tum(args.tum_dir / "est.tum", t, np.array(main_run.est))
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
