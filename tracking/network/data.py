"""Training data for the keypoint network, made on the fly: pairs of views of the same scene points.

A pair is two ``View``s whose scene points share identities (``point_ids``): the left and right camera of one
synthetic frame, the same camera a few frames apart, or (``real_fraction`` of the pairs) one real video frame
under two random warps with corners from a classical detector (Shi-Tomasi, the teacher) as targets. Every view is
augmented: small affine warps (rotation, zoom, shift) and photometric changes (gamma, gain, vignetting, blur,
sensor noise). Pair ``index`` of a ``TrainingData`` is a pure function of (seed, index), so a run is reproducible
and resumes exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from hardware.synthetic import SCENARIOS, SyntheticSource, open_synthetic
from skiptrack_types import HAND_SIDES, Frame, InvalidInputError, SourceError
from tracking.network.model import CELL_CLASSES, HAND_JOINTS, STRIDE, to_input

log = logging.getLogger(__name__)

IMAGE_SIZE = (320, 240)
"""(width, height) of every rendered image."""
CROP_SIZE = (192, 160)
"""(width, height) of the training crops: 40% of the pixels per image, 2.5x the steps for the same compute. The
offset is a multiple of 8 (the deepest stride), so a crop sees the same stride phase as a full image."""
TRAIN_WORLD_SEEDS = tuple(range(100, 124))
"""Synthetic world seeds used for training; evaluation uses seeds outside this range (held out)."""
REAL_TRAIN_SHARE = 0.6
"""The first 60% of a real video's frames are for training; the rest stay held out for evaluation."""
JOINT_SIGMA_CELLS = 0.75
"""Standard deviation of a joint's Gaussian heatmap target, in cells."""


@dataclass(frozen=True, eq=False)
class View:
    """One training image and its supervision.

    ``image`` (H, W) uint8; ``points_px`` (N, 2) scene points (pixel-centre convention) with ``point_ids`` (N,)
    shared with the other view of the pair; per hand side (left, right): ``joints_px`` (2, 21, 2) and
    ``joints_visible`` (2, 21) (in the image and not hidden). A hidden joint is a negative for its heatmap: the
    network is to report only what the camera sees (the hand model infers the rest, and a confident guess at a
    hidden joint lands on the surface in front of it, which both cameras then agree on at the wrong depth).
    """

    image: np.ndarray
    points_px: np.ndarray
    point_ids: np.ndarray
    joints_px: np.ndarray
    joints_visible: np.ndarray


@dataclass
class Batch:
    """Collated pairs: views 2k and 2k+1 are pair k.

    ``images`` (B, 1, H, W); ``scene_classes`` (B, h, w) long, the target class per cell (16 = no point);
    ``hand_heat`` (B, 42, h, w) Gaussian targets, ``hand_peaks`` (B, 42, h, w) bool the cell of each visible
    joint; ``joints_px`` (B, 42, 2) and ``joints_visible``
    (B, 42); ``matches`` per pair: (points in view 2k (M, 2), points in view 2k+1 (M, 2)) of the same ids.
    """

    images: torch.Tensor
    scene_classes: torch.Tensor
    hand_heat: torch.Tensor
    hand_peaks: torch.Tensor
    joints_px: torch.Tensor
    joints_visible: torch.Tensor
    matches: list[tuple[torch.Tensor, torch.Tensor]]


class TrainingData:
    """Pairs of views from the synthetic world (all scenarios, ``world_seeds``) and, when given, real frames."""

    def __init__(
        self,
        seed: int,
        world_seeds: tuple[int, ...] = TRAIN_WORLD_SEEDS,
        scenarios: tuple[str, ...] = tuple(SCENARIOS),
        real_frames: np.ndarray | None = None,
        real_fraction: float = 0.15,
    ) -> None:
        unknown = [s for s in scenarios if s not in SCENARIOS]
        if unknown:
            raise InvalidInputError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
        self.seed = seed
        self.world_seeds = world_seeds
        self.scenarios = scenarios
        self.real_frames = real_frames
        self.real_fraction = real_fraction if real_frames is not None and len(real_frames) else 0.0
        self._sources: dict[tuple[str, int], SyntheticSource] = {}
        self._teacher: dict[int, np.ndarray] = {}

    def pair(self, index: int) -> tuple[View, View]:
        """Pair ``index``: a deterministic function of (seed, index)."""
        rng = np.random.default_rng([self.seed, index])
        if rng.random() < self.real_fraction:
            a, b = self._real_pair(rng)
        else:
            a, b = self._synthetic_pair(rng)
        a, b = augment(a, rng), augment(b, rng)
        x0, y0 = crop_origin(a, rng)
        return crop(a, x0, y0), crop(b, x0, y0)

    def batch(self, first_index: int, pairs: int) -> Batch:
        """Pairs ``first_index`` .. ``first_index + pairs - 1`` collated."""
        views = [v for i in range(first_index, first_index + pairs) for v in self.pair(i)]
        return collate(views)

    def _source(self, scenario: str, world_seed: int) -> SyntheticSource:
        key = (scenario, world_seed)
        if key not in self._sources:
            self._sources[key] = open_synthetic(scenario, seconds=30.0, seed=world_seed)
        return self._sources[key]

    def _synthetic_pair(self, rng: np.random.Generator) -> tuple[View, View]:
        source = self._source(str(rng.choice(self.scenarios)), int(rng.choice(self.world_seeds)))
        seq = int(rng.integers(0, len(source) - 40))
        # Off the scripted path: look elsewhere in the room so that every wall and box is seen in training.
        wobble = np.eye(4)
        if rng.random() < 0.5:
            yaw, pitch = rng.uniform(-70, 70), rng.uniform(-20, 15)
            wobble[:3, :3] = Rotation.from_euler("yx", [yaw, pitch], degrees=True).as_matrix()
        frame = _render(source, seq, wobble)
        if rng.random() < 0.5:
            return view_of(frame, 0), view_of(frame, 1)
        camera = int(rng.integers(0, 2))
        later = _render(source, seq + int(rng.integers(3, 40)), wobble)
        return view_of(frame, camera), view_of(later, camera)

    def _real_pair(self, rng: np.random.Generator) -> tuple[View, View]:
        index = int(rng.integers(0, len(self.real_frames)))
        image = self.real_frames[index]
        if index not in self._teacher:
            self._teacher[index] = teacher_corners(image)
        corners = self._teacher[index]
        view = View(image, corners, np.arange(len(corners)), *_no_hands())
        return view, view


def _render(source: SyntheticSource, seq: int, wobble: np.ndarray) -> Frame:
    if np.array_equal(wobble, np.eye(4)):
        return source.frame(seq)
    t_s = seq / source.rate_hz
    rendered = source.render(source.spec.head.T_world_head(t_s) @ wobble, t_s, seq=seq)
    return Frame(seq=seq, t_ns=source.t_ns(seq), images=rendered.images, truth=rendered.truth)


def teacher_corners(image: np.ndarray, max_corners: int = 300) -> np.ndarray:
    """Shi-Tomasi corners (N, 2) float32 of a grayscale image, refined to sub-pixel: the classical teacher."""
    corners = cv2.goodFeaturesToTrack(image, max_corners, 0.01, 5, blockSize=5)
    if corners is None:
        return np.zeros((0, 2), np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.01)
    refined = cv2.cornerSubPix(image, corners.astype(np.float32), (3, 3), (-1, -1), criteria)
    return refined.reshape(-1, 2)


def _no_hands() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((2, HAND_JOINTS, 2), np.float32), np.zeros((2, HAND_JOINTS), bool)


def view_of(frame: Frame, camera: int) -> View:
    """The supervision a synthetic ``frame`` gives for ``camera``: visible landmarks (ids = landmark index) and
    the hands' joints."""
    truth = frame.truth
    if truth is None or not truth.landmarks_px:
        raise InvalidInputError("training views need synthetic frames with landmark truth")
    visible = truth.landmarks_visible[camera]
    joints, joints_visible = _no_hands()
    for hand in truth.hands:
        s = HAND_SIDES.index(hand.side)
        joints[s] = np.nan_to_num(hand.joints_px[camera])
        joints_visible[s] = hand.visible[camera]
    return View(
        frame.images[camera],
        truth.landmarks_px[camera][visible].astype(np.float32),
        np.flatnonzero(visible),
        joints,
        joints_visible,
    )


def augment(view: View, rng: np.random.Generator) -> View:
    """A random small affine warp (points and joints follow) and random photometric changes."""
    w, h = view.image.shape[1], view.image.shape[0]
    image, points, ids = view.image, view.points_px, view.point_ids
    joints, joints_visible = view.joints_px, view.joints_visible
    if rng.random() < 0.7:
        # Zoom >= 1 keeps the border filled with real content (no unlabelled mirrored corners).
        M = cv2.getRotationMatrix2D(
            ((w - 1) / 2 + rng.uniform(-8, 8), (h - 1) / 2 + rng.uniform(-8, 8)),
            rng.uniform(-5, 5),
            rng.uniform(1.0, 1.2),
        )
        image = cv2.warpAffine(image, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        points = points @ M[:, :2].T.astype(np.float32) + M[:, 2].astype(np.float32)
        keep = (points[:, 0] > 1) & (points[:, 0] < w - 2) & (points[:, 1] > 1) & (points[:, 1] < h - 2)
        points, ids = points[keep], ids[keep]
        joints = (joints @ M[:, :2].T + M[:, 2]).astype(np.float32)
        inside = (joints[..., 0] > -0.5) & (joints[..., 0] < w - 0.5) & (joints[..., 1] > -0.5)
        inside &= joints[..., 1] < h - 0.5
        joints_visible = joints_visible & inside
    image = photometric(image, rng)
    return replace(view, image=image, points_px=points, point_ids=ids, joints_px=joints,
                   joints_visible=joints_visible)  # fmt: skip


def crop_origin(view: View, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a training crop: around a visible hand's middle most of the time (hands cover a few
    percent of an image), anywhere otherwise."""
    w, h = view.image.shape[1], view.image.shape[0]
    cw, ch = CROP_SIZE
    visible = view.joints_visible.reshape(-1)
    if visible.any() and rng.random() < 0.7:
        centre = view.joints_px.reshape(-1, 2)[visible].mean(0) + rng.uniform(-40, 40, 2)
        x0, y0 = centre[0] - cw / 2, centre[1] - ch / 2
    else:
        x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    x0 = int(np.clip(round(x0 / 8) * 8, 0, (w - cw) // 8 * 8))
    y0 = int(np.clip(round(y0 / 8) * 8, 0, (h - ch) // 8 * 8))
    return x0, y0


def crop(view: View, x0: int, y0: int) -> View:
    """The ``CROP_SIZE`` window of ``view`` at (x0, y0); points and joints outside it are dropped."""
    cw, ch = CROP_SIZE
    offset = np.array([x0, y0], np.float32)
    points = view.points_px - offset
    keep = (points[:, 0] > -0.5) & (points[:, 0] < cw - 0.5) & (points[:, 1] > -0.5) & (points[:, 1] < ch - 0.5)
    joints = view.joints_px - offset
    inside = (joints[..., 0] > -0.5) & (joints[..., 0] < cw - 0.5) & (joints[..., 1] > -0.5)
    inside &= joints[..., 1] < ch - 0.5
    return View(np.ascontiguousarray(view.image[y0 : y0 + ch, x0 : x0 + cw]), points[keep], view.point_ids[keep],
                joints, view.joints_visible & inside)  # fmt: skip


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma, gain/offset, vignetting, blur and noise, each drawn at random (uint8 in, uint8 out)."""
    if rng.random() < 0.15:
        return image
    x = image.astype(np.float32) / 255.0
    x = np.power(x, rng.uniform(0.6, 1.6)) * rng.uniform(0.45, 1.4) + rng.uniform(-0.05, 0.05)
    if rng.random() < 0.5:
        h, w = x.shape
        yy, xx = np.mgrid[0:h, 0:w]
        r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        x *= (1.0 - rng.uniform(0.0, 0.6) * r2).astype(np.float32)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.2))
    x += rng.normal(0.0, rng.uniform(0.0, 5.0) / 255.0, x.shape).astype(np.float32)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def collate(views: list[View]) -> Batch:
    """Targets for a list of same-size views (an even number: consecutive views are pairs)."""
    h, w = views[0].image.shape
    gw, gh = w // STRIDE, h // STRIDE
    b = len(views)
    scene = np.full((b, gh, gw), CELL_CLASSES - 1, np.int64)
    heat = np.zeros((b, 2 * HAND_JOINTS, gh, gw), np.float32)
    peaks = np.zeros((b, 2 * HAND_JOINTS, gh, gw), bool)
    joints = np.zeros((b, 2 * HAND_JOINTS, 2), np.float32)
    joints_visible = np.zeros((b, 2 * HAND_JOINTS), bool)
    gx, gy = np.meshgrid(np.arange(gw), np.arange(gh))
    for i, view in enumerate(views):
        px = np.round(view.points_px).astype(int)
        ok = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        px = px[ok]
        scene[i, px[:, 1] // STRIDE, px[:, 0] // STRIDE] = (px[:, 1] % STRIDE) * STRIDE + px[:, 0] % STRIDE
        flat_joints = view.joints_px.reshape(-1, 2)
        joints[i] = flat_joints
        joints_visible[i] = view.joints_visible.reshape(-1)
        for c in np.flatnonzero(joints_visible[i]):
            u, v = (flat_joints[c] - (STRIDE - 1) / 2) / STRIDE
            heat[i, c] = np.exp(-((gx - u) ** 2 + (gy - v) ** 2) / (2 * JOINT_SIGMA_CELLS**2))
            cu, cv = int(np.clip(round(u), 0, gw - 1)), int(np.clip(round(v), 0, gh - 1))
            peaks[i, c, cv, cu] = True
            heat[i, c, cv, cu] = 1.0
    matches = []
    for a, b_ in zip(views[0::2], views[1::2], strict=True):
        common, ia, ib = np.intersect1d(a.point_ids, b_.point_ids, return_indices=True)
        matches.append((torch.from_numpy(a.points_px[ia]), torch.from_numpy(b_.points_px[ib])))
    return Batch(
        to_input(np.stack([v.image for v in views])),
        torch.from_numpy(scene),
        torch.from_numpy(heat),
        torch.from_numpy(peaks),
        torch.from_numpy(joints),
        torch.from_numpy(joints_visible),
        matches,
    )


def load_video_frames(path: Path, every: int = 1, first_share: float = 1.0, last: bool = False) -> np.ndarray:
    """Frames of a video as (N, 240, 320) uint8 grayscale (resized with area averaging), every ``every``-th one.

    ``first_share`` < 1 keeps only that leading share of the video (``last=True``: the trailing rest), so that
    training and evaluation use disjoint parts of one real video.
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"cannot open video {path}; give a readable video file (e.g. OpenCV's vtest.avi)")
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise SourceError(f"video {path} has no frames")
    cut = int(len(frames) * first_share)
    chosen = frames[cut:] if last else frames[:cut]
    out = [
        cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 else f, IMAGE_SIZE, interpolation=cv2.INTER_AREA)
        for f in chosen[::every]
    ]
    return np.stack(out)
