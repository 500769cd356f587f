"""Frame sources: synthetic headset world, devkit cameras, video, datasets and recordings."""

from hardware.sources import SCHEMES, FrameSource, open_source, parse_uri

__all__ = ["SCHEMES", "FrameSource", "open_source", "parse_uri"]
