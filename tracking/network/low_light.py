"""Low-light conditioning: a dark, noisy camera image is smoothed and brightened before the keypoint network sees it.

The network was trained on renders at 0.45-1.4 times their brightness with read noise of up to 5 grey levels
(``tracking.network.data.photometric``). In a dim room the image is darker and its noise larger against the little
contrast left: the synthetic ``dark`` scenario (22 % light, read noise 6 grey levels) averages 24 grey levels
against 112 seated. There the dense network still tracked the head (14.6 mm ATE, seed 1), but the skip-convolution
engine's keypoints on landmarks fell to half the dense network's, and the tracker with it lost the head on 95 % of
the frames. A Gaussian blur of ``BLUR_SIGMA_PX`` takes the noise down towards what the network was trained on, and a
gain brings the mean back towards ``TARGET_MEAN``; ``KeypointModel`` also runs the skip gate exact meanwhile (in
the dark, noise is as large as the change head motion makes). The head is then tracked on every frame at the dense
network's accuracy (docs/network.md, "Low light").

The gain moves in steps of ``GAIN_STEP`` and only when the brightness has drifted ``GAIN_HYSTERESIS`` from what the
current gain was set for, and the mode switches with hysteresis too: a gain that changed every frame would change
every pixel, and the skip-convolution engine would recompute the whole network on every frame. No frame of the
synthetic scenarios in normal light (seed 1, 20 s each) nor of vtest.avi has a mean between ``COVERED_MEAN`` and
``DARK_MEAN`` (occlusion's covered camera is below), so there nothing changes.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)

COVERED_MEAN = 12.0
"""Mean grey level below which the camera sees nothing (a covered lens): the image is left alone, not amplified
(and the evaluation counts the camera as covered, tracking.evaluate)."""
DARK_MEAN = 60.0
"""Mean grey level below which an image is conditioned (an indoor scene under normal light averages 110-120)."""
BRIGHT_MEAN = 75.0
"""Mean grey level above which conditioning stops again."""
TARGET_MEAN = 100.0
"""Mean grey level the gain aims for."""
BLUR_SIGMA_PX = 1.0
"""Gaussian blur of a dark image (on `dark` seed 1 with the skip gate at its shipped ε: σ 0.7 px left the head lost,
1.0 and 1.2 tracked every frame, 1.5 was less accurate)."""
GAIN_STEP = 0.25
MAX_GAIN = 6.0
GAIN_HYSTERESIS = 0.15
"""Relative drift of the wanted gain from the current one before the gain changes."""


class LowLight:
    """Per camera: ``condition(image)`` returns ``image`` itself in normal light, a smoothed and brightened copy in
    low light. Keeps its mode and gain between frames (one instance per camera)."""

    def __init__(self) -> None:
        self.active = False
        self.gain = 1.0

    def condition(self, image: np.ndarray) -> np.ndarray:
        """The uint8 (H, W) image the network should see."""
        mean = cv2.mean(image)[0]  # numpy's mean of a uint8 image converts it to float64 first: 20x slower
        if mean < COVERED_MEAN:
            return image
        if self.active and mean > BRIGHT_MEAN:
            self.active, self.gain = False, 1.0
            log.info(
                "normal light again (image mean %.0f grey levels): the network sees the camera image as it is", mean
            )
        elif not self.active and mean < DARK_MEAN:
            self.active = True
            log.info(
                "low light (image mean %.0f grey levels): the network sees the image smoothed and brightened", mean
            )
        if not self.active:
            return image
        wanted = TARGET_MEAN / mean  # mean >= COVERED_MEAN here
        if abs(wanted / self.gain - 1.0) > GAIN_HYSTERESIS:
            self.gain = float(np.clip(round(wanted / GAIN_STEP) * GAIN_STEP, 1.0, MAX_GAIN))
        smooth = cv2.GaussianBlur(image, (0, 0), BLUR_SIGMA_PX)
        return cv2.convertScaleAbs(smooth, alpha=self.gain)
