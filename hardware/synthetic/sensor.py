"""Sensor effects applied to rendered images: gain (exposure, low light), a covered lens, and read noise.

Noise comes from a bank of pre-drawn integer Gaussian images, cut at a random offset per frame: drawing fresh
Gaussian noise for every pixel of every frame would cost more than rendering the room.
"""

from __future__ import annotations

import cv2
import numpy as np

_BANK_SIZE = 6
_PAD = 24
COVERED_GAIN = 0.04
COVERED_LEVEL = 4.0


class SensorNoise:
    """Zero-mean rounded Gaussian noise of ``sigma`` grey levels for (h, w) images, deterministic per seed."""

    def __init__(self, shape: tuple[int, int], sigma: float, seed: int) -> None:
        h, w = shape
        self.shape = shape
        rng = np.random.default_rng([seed, 3001, int(round(sigma * 1000))])
        noise = np.round(rng.normal(0.0, sigma, (_BANK_SIZE, h + _PAD, w + _PAD))).clip(-255, 255).astype(np.int16)
        # Split into positive and negative parts so that two saturating uint8 ops apply it.
        self._plus = np.clip(noise, 0, 255).astype(np.uint8)
        self._minus = np.clip(-noise, 0, 255).astype(np.uint8)

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``image`` (h, w) uint8 plus noise, saturated to 0..255 (a new array)."""
        h, w = self.shape
        k, dy, dx = int(rng.integers(_BANK_SIZE)), int(rng.integers(_PAD)), int(rng.integers(_PAD))
        out = cv2.add(image, self._plus[k, dy : dy + h, dx : dx + w])
        return cv2.subtract(out, self._minus[k, dy : dy + h, dx : dx + w])


def apply_gain(image: np.ndarray, gain: float, covered: bool) -> np.ndarray:
    """Scale brightness by ``gain``; a covered lens lets almost nothing through."""
    if covered:
        return cv2.convertScaleAbs(image, alpha=COVERED_GAIN * gain, beta=COVERED_LEVEL)
    if abs(gain - 1.0) < 1e-6:
        return image
    return cv2.convertScaleAbs(image, alpha=gain)
