"""The named scenarios of the synthetic world, in one table: how the head moves, what the hands do, and the
lighting and sensor effects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardware.synthetic.hands import HandScript
from hardware.synthetic.trajectory import HeadMotion, Sine


@dataclass(frozen=True)
class CameraCover:
    """Camera ``camera`` is covered (image near black) for ``duration_s`` centred on the middle of the sequence."""

    camera: int
    duration_s: float


@dataclass(frozen=True)
class Scenario:
    """One scenario. ``light`` scales scene brightness; ``noise_sigma`` is the sensor's read noise (grey levels);
    ``exposure_variation`` the relative amplitude of slow auto-exposure drift; ``blur_samples`` > 1 renders that
    many instants across ``exposure_s`` and averages them (motion blur)."""

    name: str
    description: str
    head: HeadMotion
    hands: tuple[HandScript, ...]
    light: float = 1.0
    noise_sigma: float = 1.6
    exposure_variation: float = 0.0
    blur_samples: int = 1
    exposure_s: float = 0.004
    cover: CameraCover | None = None


def _deg(x: float) -> float:
    return float(np.radians(x))


SEATED_HEAD = HeadMotion(
    position=(0.0, 1.2, 0.4),
    angles=(0.0, _deg(-8.0), 0.0),
    position_terms=((Sine(0.03, 0.11),), (Sine(0.015, 0.17, 1.0),), (Sine(0.025, 0.07, 2.0),)),
    angle_terms=(
        (Sine(_deg(15.0), 0.09), Sine(_deg(3.0), 0.31, 0.5)),
        (Sine(_deg(7.0), 0.13, 1.0),),
        (Sine(_deg(2.5), 0.11, 2.0),),
    ),
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "still_hand",
            "head still (sub-millimetre tremor), the right hand opening and closing in front",
            HeadMotion(
                position=(0.0, 1.2, 0.4),
                angles=(0.0, _deg(-10.0), 0.0),
                position_terms=(
                    (Sine(0.0003, 1.1), Sine(0.0002, 2.3, 1.0)),
                    (Sine(0.0003, 1.7, 2.0), Sine(0.0002, 2.9)),
                    (Sine(0.0003, 1.3, 0.5),),
                ),
                angle_terms=((Sine(_deg(0.01), 3.1),), (Sine(_deg(0.01), 4.3, 1.0),), (Sine(_deg(0.005), 2.9),)),
            ),
            (HandScript("right", "grab"),),
        ),
        Scenario(
            "seated",
            "typical seated VR: small head motion, both hands gesturing (pinch, reach)",
            SEATED_HEAD,
            (HandScript("left", "pinch", 0.3), HandScript("right", "reach")),
            exposure_variation=0.02,
        ),
        Scenario(
            "look_around",
            "seated, turning the head left/right and up/down at up to about 85 deg/s; hands resting in view",
            HeadMotion(
                position=(0.0, 1.2, 0.4),
                angles=(0.0, 0.0, 0.0),
                position_terms=((Sine(0.02, 0.23),), (Sine(0.01, 0.3, 1.0),), (Sine(0.02, 0.19, 2.0),)),
                # A sine and its third harmonic: the yaw rate stays near its peak longer than a pure sine's.
                angle_terms=(
                    (Sine(_deg(55.0), 0.2518, -0.5), Sine(_deg(-55.0 / 9), 3 * 0.2518, -1.5)),
                    (Sine(_deg(15.0), 0.3, 1.0),),
                    (Sine(_deg(3.0), 0.2),),
                ),
            ),
            (HandScript("left", "rest", 0.37), HandScript("right", "rest")),
            exposure_variation=0.05,
        ),
        Scenario(
            "walk",
            "walking figure-eights through the room (about 0.7 m/s, head bob), looking along the way",
            HeadMotion(
                position=(0.0, 1.65, 0.0),
                angles=(0.0, _deg(-5.0), 0.0),
                position_terms=(
                    (Sine(1.2, 0.1),),
                    (Sine(0.02, 1.8), Sine(0.01, 0.9, 1.0)),
                    (Sine(0.6, 0.2, 0.3),),
                ),
                angle_terms=((Sine(_deg(40.0), 0.1, 1.5),), (Sine(_deg(6.0), 0.25),), (Sine(_deg(2.0), 0.9),)),
            ),
            (HandScript("left", "enter_leave", 0.25), HandScript("right", "rest")),
            exposure_variation=0.08,
        ),
        Scenario(
            "fast",
            "fast turns (up to about 180 deg/s) with motion blur from an 8 ms exposure",
            HeadMotion(
                position=(0.0, 1.2, 0.4),
                angles=(0.0, 0.0, 0.0),
                position_terms=((Sine(0.03, 0.3),), (Sine(0.01, 0.5, 1.0),), (Sine(0.03, 0.4, 2.0),)),
                angle_terms=((Sine(_deg(70.0), 0.405),), (Sine(_deg(8.0), 0.5, 1.0),), (Sine(_deg(4.0), 0.3),)),
            ),
            (HandScript("left", "rest", 0.61), HandScript("right", "grab")),
            blur_samples=5,
            exposure_s=0.008,
        ),
        Scenario(
            "dark",
            "the seated motion in a dim room: low signal and heavy sensor noise",
            SEATED_HEAD,
            (HandScript("left", "grab", 0.5), HandScript("right", "wave")),
            light=0.22,
            noise_sigma=6.0,
        ),
        Scenario(
            "occlusion",
            "hands leaving and re-entering the view; the left camera covered for 0.5 s mid-sequence",
            SEATED_HEAD,
            (HandScript("left", "enter_leave", 0.0), HandScript("right", "enter_leave", 0.5)),
            cover=CameraCover(camera=0, duration_s=0.5),
        ),
    )
}
"""name -> Scenario. ``synthetic:<name>`` opens one."""
