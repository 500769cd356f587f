"""``SyntheticSource``: frames of a scenario in the synthetic world, with IMU and complete ground truth."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from hardware.sources import FrameSource
from hardware.synthetic.render import RenderedView, SceneRenderer
from hardware.synthetic.rig import make_rig
from hardware.synthetic.scenarios import SCENARIOS, Scenario
from hardware.synthetic.sensor import SensorNoise, apply_gain
from hardware.synthetic.trajectory import ImuErrors, imu_samples, imu_times_ns
from hardware.synthetic.world import build_world
from skiptrack_types import Frame, HandTruth, InvalidInputError, SourceError, Truth

log = logging.getLogger(__name__)

T0_NS = 1_000_000_000
"""Capture time of frame 0 on the synthetic clock."""
MAX_SIZE = (640, 480)
MIN_SIZE = (64, 48)
MAX_RATE_HZ = 500.0


@dataclass(frozen=True)
class RenderedFrame:
    """Images (one uint8 (H, W) per camera) and the truth for one instant."""

    images: tuple[np.ndarray, ...]
    truth: Truth


class SyntheticSource(FrameSource):
    """Frames ``seq`` 0..num_frames-1 of ``scenario`` at ``rate_hz``; iterating twice yields identical frames.

    ``rig`` (StereoRig with ``T_head_cam0`` and ``T_head_imu`` set), ``landmarks_world`` (N, 3) metres,
    ``imu_errors`` (the constant biases of this seed's IMU).
    """

    def __init__(self, scenario: Scenario, seconds: float, rate: float, size: tuple[int, int], seed: int) -> None:
        self.spec = scenario
        self.scenario = scenario.name
        self.seed = seed
        self.rate_hz = float(rate)
        self.num_frames = max(1, int(round(seconds * rate)))
        self.rig = make_rig(size)
        self.world = build_world(seed)
        self.landmarks_world = self.world.landmarks_world
        self.imu_errors = ImuErrors.for_seed(seed)
        self._renderer = SceneRenderer(self.world, self.rig)
        self._noise = SensorNoise((size[1], size[0]), scenario.noise_sigma, seed)
        self._T_head_cams = (self.rig.T_head_cam0, self.rig.T_head_cam1)
        self._prerendered: list[Frame] | None = None

    def prerender(self, progress: Callable[[int], None] | None = None) -> None:
        """Render every frame now and keep them in memory (about 160 kB a stereo 320x240 frame), so that ``frame``
        costs nothing afterwards, as a real camera's frames cost the host's CPU nothing. ``progress(n)`` is told
        of each rendered frame."""
        frames = []
        for seq in range(self.num_frames):
            frames.append(self.frame(seq))
            if progress is not None:
                progress(1)
        self._prerendered = frames

    @property
    def prerendered(self) -> bool:
        """Whether ``prerender`` has run: ``frame`` then costs nothing, as a camera's frame."""
        return self._prerendered is not None

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self) -> Iterator[Frame]:
        for seq in range(self.num_frames):
            yield self.frame(seq)

    def t_ns(self, seq: int) -> int:
        """Capture time (mid-exposure) of frame ``seq``, integer ns; frame -1 is the start of frame 0's IMU."""
        return T0_NS + int(round(seq * 1e9 / self.rate_hz))

    def frame(self, seq: int) -> Frame:
        """Frame ``seq`` (any order, always the same)."""
        if not 0 <= seq < self.num_frames:
            raise InvalidInputError(f"frame seq must be in 0..{self.num_frames - 1}, got {seq}")
        if self._prerendered is not None:
            return self._prerendered[seq]
        t_ns = self.t_ns(seq)
        t_s = (t_ns - T0_NS) * 1e-9
        rendered = self.render(self.spec.head.T_world_head(t_s), t_s, seq=seq)
        return Frame(seq=seq, t_ns=t_ns, images=rendered.images, imu=self.imu(seq), truth=rendered.truth)

    def imu(self, seq: int) -> np.ndarray:
        """Frame ``seq``'s IMU samples (those since frame ``seq - 1``), the same as ``frame(seq).imu``, without
        rendering it."""
        imu_rng = np.random.default_rng([self.seed, seq, 2])
        return imu_samples(self.spec.head, self.imu_errors, imu_times_ns(self.t_ns(seq - 1), self.t_ns(seq)), T0_NS,
                           imu_rng)  # fmt: skip

    def render(self, T_world_head: np.ndarray, t_s: float, seq: int = 0, hands: bool = True) -> RenderedFrame:
        """Render the world from head pose ``T_world_head`` (4, 4) with the scenario's hands at time ``t_s``.

        For training code that wants views off the scripted path. ``seq`` picks the noise; ``hands=False`` leaves
        the hands out (their truth is still reported, with nothing visible). Motion blur and the lens cover
        follow the scenario's head motion and time, so they apply only on the scripted path.
        """
        spec = self.spec
        scripts = spec.hands if hands else ()
        rng = np.random.default_rng([self.seed, seq, 1])
        offsets = [0.0]
        if spec.blur_samples > 1:
            offsets = list(np.linspace(-0.5, 0.5, spec.blur_samples) * spec.exposure_s)
        gain = spec.light * (1.0 + spec.exposure_variation * np.sin(2.0 * np.pi * 0.13 * t_s))
        instants = []
        for dt in offsets:
            T_world_head_dt = spec.head.T_world_head(t_s + dt) if dt else T_world_head
            instants.append(
                (T_world_head_dt, tuple(_to_world(T_world_head_dt, s.joints_head(t_s + dt)) for s in scripts))
            )
        images, views = [], []
        for cam, T_head_cam in enumerate(self._T_head_cams):
            samples = [self._renderer.render(cam, T @ T_head_cam, hands_world) for T, hands_world in instants]
            views.append(samples[len(samples) // 2])
            image = samples[0].image if len(samples) == 1 else _average([v.image for v in samples])
            covered = self._covered(cam, t_s)
            images.append(np.ascontiguousarray(self._noise.apply(apply_gain(image, gain, covered), rng)))
        if hands:
            hands_world = instants[len(instants) // 2][1]
        else:
            hands_world = tuple(_to_world(T_world_head, s.joints_head(t_s)) for s in spec.hands)
        return RenderedFrame(tuple(images), self._truth(T_world_head, hands_world, t_s, views, bool(hands)))

    def _covered(self, cam: int, t_s: float) -> bool:
        cover = self.spec.cover
        if cover is None or cover.camera != cam:
            return False
        middle = self.num_frames / self.rate_hz / 2
        return abs(t_s - middle) <= cover.duration_s / 2

    def _truth(
        self,
        T_world_head: np.ndarray,
        hands_world: tuple[np.ndarray, ...],
        t_s: float,
        views: list[RenderedView],
        hands_drawn: bool,
    ) -> Truth:
        """Projections and visibility of every landmark and hand joint (21, 3 per hand, world) in both cameras."""
        n = len(self.landmarks_world)
        points_world = np.vstack([self.landmarks_world, *hands_world])
        landmarks_px, landmarks_visible = [], []
        joints_px = [[] for _ in hands_world]
        joints_visible = [[] for _ in hands_world]
        for cam, (camera, T_head_cam, view) in enumerate(zip(self.rig.cameras, self._T_head_cams, views, strict=True)):
            T_world_cam = T_world_head @ T_head_cam
            T_cam_world = np.linalg.inv(T_world_cam)
            points_cam = points_world @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
            px = camera.project(points_cam)
            seen = _in_image(px, points_cam, camera.size) & (not self._covered(cam, t_s))
            labels = view.label_at(points_cam)
            visible = seen[:n] & (labels[:n] == 0)
            candidates = np.flatnonzero(visible)
            visible[candidates[self.world.occluded_by_boxes(T_world_cam[:3, 3], self.landmarks_world[candidates])]] = (
                False
            )
            landmarks_px.append(px[:n])
            landmarks_visible.append(visible)
            drawn_hands = {owner for owner, _ in view.label_owners} if hands_drawn else set()
            for h in range(len(hands_world)):
                rows = slice(n + 21 * h, n + 21 * (h + 1))
                vis = seen[rows] & (h in drawn_hands)
                # A joint is hidden when the front-most hand primitive at its pixel is not one of its own.
                for j, label in enumerate(labels[rows].tolist()):
                    if vis[j] and label:
                        owner_hand, owner_joints = view.label_owners[label - 1]
                        vis[j] = owner_hand == h and j in owner_joints
                joints_px[h].append(px[rows])
                joints_visible[h].append(vis)
        hand_truths = tuple(
            HandTruth(script.side, hands_world[h], tuple(joints_px[h]), tuple(joints_visible[h]))
            for h, script in enumerate(self.spec.hands)
        )
        return Truth(T_world_head, hand_truths, tuple(landmarks_px), tuple(landmarks_visible))


def _to_world(T_world_head: np.ndarray, points_head: np.ndarray) -> np.ndarray:
    return points_head @ T_world_head[:3, :3].T + T_world_head[:3, 3]


def _in_image(px: np.ndarray, points_cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """In front of the camera and inside the image (pixel-centre convention: the image spans -0.5..W-0.5)."""
    w, h = size
    with np.errstate(invalid="ignore"):
        return (
            (points_cam[:, 2] > 0.05)
            & (px[:, 0] >= -0.5)
            & (px[:, 0] < w - 0.5)
            & (px[:, 1] >= -0.5)
            & (px[:, 1] < h - 0.5)
        )


def _average(images: list[np.ndarray]) -> np.ndarray:
    return np.round(np.mean(images, axis=0)).astype(np.uint8)


# ------------------------------------------------------------------------------------------------- options

_OPTION_HELP = {
    "seconds": "duration in seconds (> 0)",
    "rate": f"frames per second (0 < rate <= {MAX_RATE_HZ:g})",
    "size": f"image size per camera, WxH (e.g. 320x240; at most {MAX_SIZE[0]}x{MAX_SIZE[1]})",
    "seed": "integer >= 0 selecting textures, IMU biases and noise",
}


def open_synthetic(
    target: str,
    seconds: object = 10.0,
    rate: object = 60.0,
    size: object = (320, 240),
    seed: object = 0,
    **unknown: object,
) -> SyntheticSource:
    """Open scenario ``target`` (a key of ``SCENARIOS``). Options may be strings, as they come from a URI query:
    ``synthetic:seated?seconds=5&size=640x480&seed=3``."""
    if target not in SCENARIOS:
        raise SourceError(
            f"unknown synthetic scenario {target!r}; choose one of: {', '.join(SCENARIOS)} (e.g. synthetic:seated)"
        )
    if unknown:
        valid = "; ".join(f"{k}: {v}" for k, v in _OPTION_HELP.items())
        raise InvalidInputError(f"unknown synthetic option(s) {', '.join(sorted(unknown))}; valid options: {valid}")
    seconds_f = _number("seconds", seconds, float)
    if seconds_f <= 0:
        raise InvalidInputError(f"synthetic option seconds must be > 0, got {seconds_f:g}")
    rate_f = _number("rate", rate, float)
    if not 0 < rate_f <= MAX_RATE_HZ:
        raise InvalidInputError(f"synthetic option rate must be in (0, {MAX_RATE_HZ:g}] Hz, got {rate_f:g}")
    seed_i = _number("seed", seed, int)
    if seed_i < 0:
        raise InvalidInputError(f"synthetic option seed must be >= 0, got {seed_i}")
    return SyntheticSource(SCENARIOS[target], seconds_f, rate_f, parse_size(size), seed_i)


def _number(name: str, value: object, kind: type) -> float | int:
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"synthetic option {name} must be {_OPTION_HELP[name]}, got {value!r}") from None
    if not np.isfinite(number):
        raise InvalidInputError(f"synthetic option {name} must be finite, got {value!r}")
    return number


def parse_size(size: object) -> tuple[int, int]:
    """(width, height) from "WxH" or a pair; checked against ``MIN_SIZE`` .. ``MAX_SIZE``."""
    try:
        if isinstance(size, str):
            w_str, h_str = size.lower().replace("*", "x").split("x")
            width, height = int(w_str), int(h_str)
        else:
            width, height = (int(v) for v in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InvalidInputError(f"synthetic option size must be {_OPTION_HELP['size']}, got {size!r}") from None
    if not (MIN_SIZE[0] <= width <= MAX_SIZE[0] and MIN_SIZE[1] <= height <= MAX_SIZE[1]):
        raise InvalidInputError(
            f"synthetic image size {width}x{height} is out of range; use {MIN_SIZE[0]}x{MIN_SIZE[1]} up to "
            f"{MAX_SIZE[0]}x{MAX_SIZE[1]} (e.g. size=320x240)"
        )
    return width, height
