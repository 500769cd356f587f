"""The keypoint network: scene points, descriptors and 21-joint hands from one grayscale image, run with skip
convolutions. ``load_default()`` gives one camera's model; see docs/network.md."""

from tracking.network.api import KeypointModel, load_default, load_weights
from tracking.network.decode import DecodeConfig
from tracking.network.model import KeypointNet, count_macs

__all__ = ["DecodeConfig", "KeypointModel", "KeypointNet", "count_macs", "load_default", "load_weights"]
