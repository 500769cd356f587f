"""From the network's raw outputs to ``Keypoints``: scene heatmap -> NMS'd sub-pixel points, descriptors sampled at
them, hand joint heatmaps -> sub-pixel joints by local soft-argmax.

Pixel coordinates use the pixel-centre convention (integer (x, y) is the centre of pixel column x, row y), the
same as OpenCV's projections and the synthetic world's truth. Cell (i, j) of a stride-4 map covers pixels
4j..4j+3, 4i..4i+3; its centre is pixel (4j + 1.5, 4i + 1.5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from skiptrack_types import HAND_SIDES
from tracking.keypoints import HandKeypoints, Keypoints
from tracking.network.model import HAND_CHANNELS, HAND_JOINTS, STRIDE

HandsCallback = Callable[[list[tuple[HandKeypoints, ...]]], None]
"""Called with each image's hands, in image (camera) order, before the scene points are decoded."""


@dataclass(frozen=True)
class DecodeConfig:
    """``detection_threshold``: minimum probability mass of a scene point's 3x3 neighbourhood; ``nms_radius`` px;
    ``max_points`` kept (highest scores); ``border`` px without points; ``joint_radius`` cells: half-size of the
    soft-argmax window; ``presence_threshold``: hands whose presence is below it are not reported.

    ``nms_radius`` 5 rather than 3: two detections 3-5 px apart sit on one blob of the image with near-equal
    descriptors, and which of them survives differs between views, so a match between them pairs neighbouring
    landmarks (77 % of the wrong mutual matches on held-out seated seed 7: the true landmark undetected, a
    neighbour 3-5 px away matched instead). At 5 px, with about a quarter fewer points, descriptor precision on
    seeds 7-10 rose from 0.867-0.884 to 0.886-0.913, repeatability fell 0.7-2.6 points, and the head trajectory on
    network keypoints improved (seated seed 1: 5.86 -> 5.37 mm ATE; 4.38 with the exit gates retrained for these
    points, docs/pose.md stop 20)."""

    detection_threshold: float = 0.015
    nms_radius: int = 5
    max_points: int = 400
    border: int = 3
    joint_radius: int = 2
    presence_threshold: float = 0.3


def cell_centres(index: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Pixel coordinate of the centre of cells ``index`` (any shape, integer or float) along one axis."""
    return index * STRIDE + (STRIDE - 1) / 2


def scene_probabilities(scene_logits: torch.Tensor) -> torch.Tensor:
    """(17, h, w) cell logits -> (4h, 4w) probability that each pixel holds an interest point."""
    prob = torch.softmax(scene_logits.float(), dim=0)[:-1]
    _, h, w = prob.shape
    # F.pixel_shuffle written out: on the channels-last maps the network writes, 0.19 instead of 0.31 ms an image
    return prob.reshape(STRIDE, STRIDE, h, w).permute(2, 0, 3, 1).reshape(h * STRIDE, w * STRIDE)


def detect_points(prob: torch.Tensor, config: DecodeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Points from the pixel probability map ``prob`` (H, W), best ``max_points`` first: (points (N, 2) float32 px,
    scores (N,) float32).

    A point's score is the probability mass of its 3x3 neighbourhood (a network unsure which of two pixels holds
    the point splits its mass between them); points are local maxima of that mass within ``nms_radius`` and above
    ``detection_threshold``, refined to sub-pixel by the probability-weighted centroid of the neighbourhood.
    NumPy and OpenCV throughout: on one 320x240 map each torch call would cost a parallel region's start-up.
    """
    p = np.ascontiguousarray(prob.numpy(), dtype=np.float32)
    h, w = p.shape
    r = config.nms_radius
    mass_map = cv2.boxFilter(p, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)  # zero outside
    # The local maximum is OpenCV's dilation (outside the image counts as -inf, as in max pooling).
    peaks = mass_map == cv2.dilate(mass_map, np.ones((2 * r + 1, 2 * r + 1), np.uint8))
    peaks &= mass_map > config.detection_threshold
    b = config.border
    peaks[:b], peaks[h - b :], peaks[:, :b], peaks[:, w - b :] = False, False, False, False
    ys, xs = np.divmod(_break_ties(mass_map, np.flatnonzero(peaks), r), w)  # 2-D np.nonzero is 10x slower
    scores = mass_map[ys, xs]
    order = np.argsort(-scores, kind="stable")[: config.max_points]
    ys, xs, scores = ys[order], xs[order], scores[order]
    offsets = np.arange(-1, 2)
    patch = p[np.clip(ys[:, None, None] + offsets[None, :, None], 0, h - 1),
              np.clip(xs[:, None, None] + offsets[None, None, :], 0, w - 1)]  # fmt: skip
    mass = np.maximum(patch.sum((1, 2)), 1e-12)
    dx = (patch * offsets[None, None, :]).sum((1, 2)) / mass
    dy = (patch * offsets[None, :, None]).sum((1, 2)) / mass
    points = np.stack([xs + dx, ys + dy], 1)
    return points.astype(np.float32), scores.astype(np.float32)


def _break_ties(mass_map: np.ndarray, peaks: np.ndarray, r: int) -> np.ndarray:
    """Of the window maxima ``peaks`` (flat indices), drop those sharing their value with a pixel later in raster
    order within their window (a point midway between two pixels), as a vanishing ramp added to the map would: one
    peak survives, not two. Only the maxima's windows are read, in a copy of the map padded with -inf."""
    h, w = mass_map.shape
    padded = np.pad(mass_map, r, constant_values=-np.inf).ravel()
    pw = w + 2 * r
    offsets = (np.arange(-r, r + 1)[:, None] * pw + np.arange(-r, r + 1)[None, :]).ravel()
    later = offsets > 0  # row-major: a later row, or the same row further right
    centres = (peaks // w + r) * pw + peaks % w + r
    values = padded[centres[:, None] + offsets[later][None, :]]
    beaten = (values == padded[centres][:, None]).any(axis=1)
    return peaks[~beaten]


def sample_descriptors(descriptors: torch.Tensor, points_px: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Bilinearly sample the (D, h, w) descriptor map at ``points_px`` (N, 2) of an image of ``image_size``
    (width, height); returns (N, D) float32 unit vectors."""
    d = sample_descriptors_torch(descriptors[None].float(), torch.from_numpy(points_px)[None], image_size)[0]
    return d.numpy().astype(np.float32)


def sample_descriptors_torch(
    descriptors: torch.Tensor, points_px: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """Differentiable form: (B, D, h, w) maps, (B, N, 2) pixels -> (B, N, D) L2-normalised descriptors."""
    w, h = image_size
    grid = torch.stack([(points_px[..., 0] + 0.5) / w * 2 - 1, (points_px[..., 1] + 0.5) / h * 2 - 1], -1)
    sampled = F.grid_sample(descriptors, grid[:, :, None].float(), mode="bilinear", align_corners=False)
    return F.normalize(sampled[..., 0].transpose(1, 2), dim=-1)


def window_soft_argmax(logits: torch.Tensor, centres: torch.Tensor, radius: int) -> torch.Tensor:
    """Sub-pixel positions from heatmap logits by a softmax over a window around given cells.

    ``logits`` (N, h, w), one heatmap per row; ``centres`` (N, 2) integer cells (column, row); the window is
    (2 radius + 1)^2 cells clipped at the border. Returns (N, 2) pixel coordinates, differentiable in ``logits``
    (the training loss uses the same function, so inference reads positions the way they were trained).
    """
    n, h, w = logits.shape
    offsets = torch.arange(-radius, radius + 1)
    cy = centres[:, 1, None, None] + offsets[None, :, None]
    cx = centres[:, 0, None, None] + offsets[None, None, :]
    inside = (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
    rows = torch.arange(n)[:, None, None]
    window = logits[rows, cy.clamp(0, h - 1), cx.clamp(0, w - 1)]
    window = window.masked_fill(~inside, -1e4).reshape(n, -1)
    weights = torch.softmax(window, dim=1).reshape(n, 2 * radius + 1, 2 * radius + 1)
    x = (weights * cell_centres(cx.float())).sum((1, 2))
    y = (weights * cell_centres(cy.float())).sum((1, 2))
    return torch.stack([x, y], 1)


def decode_hands(hand_logits: torch.Tensor, config: DecodeConfig) -> tuple[HandKeypoints, ...]:
    """(42, h, w) joint logits -> the hands whose presence passes the threshold.

    Per joint: the peak cell of its heatmap, refined by a softmax over the window of ``joint_radius`` cells around
    it (``window_soft_argmax``, the training loss's reading, here in NumPy: a dozen small torch calls cost more
    than the arithmetic); confidence = sigmoid of
    the peak logit. Presence = mean of the 5 highest joint confidences (a hand half out of view still counts).
    """
    return decode_hands_many(hand_logits.detach().float().numpy(), config)[0]


def decode_hands_many(logits: np.ndarray, config: DecodeConfig) -> list[tuple[HandKeypoints, ...]]:
    """``decode_hands`` of B images at once: their (42, h, w) logits concatenated, (B * 42, h, w) float32."""
    c, h, w = logits.shape
    flat = logits.reshape(c, -1)
    index = flat.argmax(1)
    rows = np.arange(c)
    peak = flat[rows, index]
    offsets = np.arange(-config.joint_radius, config.joint_radius + 1)
    cy = (index // w)[:, None, None] + offsets[None, :, None]
    cx = (index % w)[:, None, None] + offsets[None, None, :]
    inside = (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
    window = np.where(inside, logits[rows[:, None, None], cy.clip(0, h - 1), cx.clip(0, w - 1)], -1e4)
    weights = np.exp(window - peak[:, None, None])  # the peak is the window's maximum: no overflow
    weights /= weights.sum((1, 2), keepdims=True)
    x = (weights * cell_centres(cx)).sum((1, 2))
    y = (weights * cell_centres(cy)).sum((1, 2))
    joints = np.stack([x, y], 1).astype(np.float32)
    confidence = (1.0 / (1.0 + np.exp(-peak))).astype(np.float32)
    presence = np.sort(confidence.reshape(-1, HAND_JOINTS), axis=1)[:, -5:].mean(1)
    out = []
    for image in range(c // HAND_CHANNELS):
        hands = []
        for s, side in enumerate(HAND_SIDES):
            k = image * len(HAND_SIDES) + s
            if presence[k] >= config.presence_threshold:
                part = slice(k * HAND_JOINTS, (k + 1) * HAND_JOINTS)
                hands.append(HandKeypoints(side, joints[part], confidence[part], float(presence[k])))
        out.append(tuple(hands))
    return out


def decode(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], image_size: tuple[int, int], config: DecodeConfig
) -> Keypoints:
    """One image's (scene (17, h, w), descriptors (D, h, w), hands (42, h, w)) -> Keypoints; ``image_size`` is
    (width, height) of the input image."""
    return decode_many([outputs], image_size, config)[0]


def decode_many(
    outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    image_size: tuple[int, int],
    config: DecodeConfig,
    on_hands: HandsCallback | None = None,
) -> list[Keypoints]:
    """``decode`` of several images of one size (the cameras of a frame), with the same results: the hands of all
    of them at once, then each image's scene points. ``on_hands`` is called with every image's hands as soon as
    they are decoded, before the scene points (the Tracker's hand worker starts fitting them meanwhile)."""
    hand_logits = np.concatenate([o[2].detach().float().numpy() for o in outputs])  # 3x faster than torch.cat
    hands = decode_hands_many(hand_logits, config)
    if on_hands is not None:
        on_hands(hands)
    out = []
    for (scene, descriptors, _), hand in zip(outputs, hands, strict=True):
        points, scores = detect_points(scene_probabilities(scene), config)
        out.append(Keypoints(points, scores, sample_descriptors(descriptors, points, image_size), hand))
    return out
