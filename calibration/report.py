"""Calibration reports: a JSON summary and a PNG with, per camera, the corner coverage heat map, the reprojection
error per view (rejected views in red) and the residual vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from calibration.boards import BoardSpec
from calibration.solve import OUTLIER_FACTOR, OUTLIER_FLOOR_PX, CameraCalibration, StereoCalibration

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_HEATMAP_BINS = (32, 24)


def report_json(
    board: BoardSpec, cameras: list[CameraCalibration], stereo: StereoCalibration | None = None
) -> dict[str, object]:
    """The report as a JSON-ready dict: camera 0's ``rms``, ``fx``, ``fy``, ``cx``, ``cy`` at the top level (pixels),
    every camera under ``cameras``, and the pair under ``stereo`` when there is one."""
    per_camera = [_camera_json(c) for c in cameras]
    report: dict[str, object] = {"board": str(board), **per_camera[0], "cameras": per_camera}
    if stereo is not None:
        baselines = np.array(list(stereo.pair_baselines_m.values()))
        report["stereo"] = {
            "rms": round(stereo.rms_px, 5),
            "baseline_m": round(stereo.rig.baseline_m, 6),
            "T_cam0_cam1": np.round(stereo.rig.T_cam0_cam1, 8).tolist(),
            "per_view_errors": _rounded(stereo.view_rms_px),
            "rejected_views": stereo.rejected,
            "pair_baselines_m": _rounded(stereo.pair_baselines_m, 6),
            "pair_baseline_std_m": round(float(baselines.std()), 6),
            "rectified_row_error_px": round(stereo.rectified_row_error_px, 5),
            "rectified_focal_px": round(stereo.rig.rectification.focal_px, 4),
        }
    return report


def write_report_json(path: Path, report: dict[str, object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def write_report_png(path: Path, cameras: list[CameraCalibration], title: str = "") -> Path:
    """Draw one row per camera: coverage heat map, error per view, residual vectors."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 4.8 * len(cameras)), layout="constrained")
    axes = fig.subplots(len(cameras), 3, squeeze=False)
    for i, calib in enumerate(cameras):
        name = f"camera {i}"
        _draw_coverage(fig, axes[i, 0], calib, name)
        _draw_view_errors(axes[i, 1], calib, name)
        _draw_residuals(axes[i, 2], calib, name)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def _camera_json(calib: CameraCalibration) -> dict[str, object]:
    cam = calib.camera
    return {
        "model": cam.kind.value,
        "image_size": [cam.width, cam.height],
        "rms": round(calib.rms_px, 5),
        "fx": round(cam.fx, 5),
        "fy": round(cam.fy, 5),
        "cx": round(cam.cx, 5),
        "cy": round(cam.cy, 5),
        "dist": [round(float(v), 8) for v in cam.dist],
        "views_used": len(calib.views),
        "per_view_errors": _rounded(calib.view_rms_px),
        "rejected_views": calib.rejected,
        "coverage": {
            **calib.coverage.to_json(),
            "max_tilt_deg": round(max(t.total_deg for t in calib.tilts), 2),
        },
    }


def _draw_coverage(fig: Figure, ax: Axes, calib: CameraCalibration, name: str) -> None:
    w, h = calib.camera.size
    corners = np.vstack([v.detection.corners_px for v in calib.views])
    hist, _, _ = np.histogram2d(corners[:, 1], corners[:, 0], bins=_HEATMAP_BINS[::-1], range=[[0, h], [0, w]])
    im = ax.imshow(hist, extent=(0, w, h, 0), cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="corners per cell")
    rows, cols = calib.coverage.cell_hits.shape
    for x in np.linspace(0, w, cols + 1):
        ax.axvline(x, color="white", lw=0.5, alpha=0.5)
    for y in np.linspace(0, h, rows + 1):
        ax.axhline(y, color="white", lw=0.5, alpha=0.5)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(f"{name}: corner coverage ({100 * calib.coverage.cell_fraction:.0f}% of cells)")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")


def _draw_view_errors(ax: Axes, calib: CameraCalibration, name: str) -> None:
    names = list(calib.view_rms_px)
    errors = np.array([calib.view_rms_px[n] for n in names])
    colors = ["tab:red" if n in calib.rejected else "tab:blue" for n in names]
    ax.bar(range(len(names)), errors, color=colors)
    used = np.array([calib.view_rms_px[v.name] for v in calib.views])
    threshold = max(OUTLIER_FACTOR * float(np.median(used)), OUTLIER_FLOOR_PX)
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"rejection threshold {threshold:.2f} px")
    ax.axhline(calib.rms_px, color="black", ls=":", lw=1, label=f"overall RMS {calib.rms_px:.3f} px")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("RMS reprojection error (px)")
    ax.set_title(f"{name}: error per view ({len(calib.rejected)} rejected, red)")
    ax.legend(fontsize=8)


def _draw_residuals(ax: Axes, calib: CameraCalibration, name: str) -> None:
    w, h = calib.camera.size
    corners = np.vstack([v.detection.corners_px for v in calib.views])
    residuals = np.vstack(calib.residuals_px)
    scale = 0.05 * w / max(float(np.percentile(np.linalg.norm(residuals, axis=1), 95)), 1e-6)
    ax.quiver(corners[:, 0], corners[:, 1], residuals[:, 0] * scale, residuals[:, 1] * scale,
              np.linalg.norm(residuals, axis=1), angles="xy", scale_units="xy", scale=1, cmap="plasma",
              width=0.002)  # fmt: skip
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_title(f"{name}: residuals (detected - projected), arrows x{scale:.0f}")
    ax.set_xlabel("x (px)")


def _rounded(values: dict[str, float], digits: int = 5) -> dict[str, float]:
    return {k: round(float(v), digits) for k, v in values.items()}
