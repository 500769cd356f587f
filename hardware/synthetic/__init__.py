"""The synthetic headset world: a textured room, a stereo headset rig with IMU, articulated hands, ground truth.

``open_synthetic("seated", seconds=5)`` (or ``hardware.open_source("synthetic:seated?seconds=5")``) gives a
``SyntheticSource`` whose frames carry images, IMU samples and complete truth. See docs/synthetic.md.
"""

from hardware.synthetic.rig import make_rig
from hardware.synthetic.scenarios import SCENARIOS, Scenario
from hardware.synthetic.source import RenderedFrame, SyntheticSource, open_synthetic, parse_size
from hardware.synthetic.world import World, build_world

__all__ = [
    "SCENARIOS",
    "RenderedFrame",
    "Scenario",
    "SyntheticSource",
    "World",
    "build_world",
    "make_rig",
    "open_synthetic",
    "parse_size",
]
