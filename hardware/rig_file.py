"""The stereo rig of a source from a calibration file, read by the calibration package (one reader per format)."""

from __future__ import annotations

import logging

from calibration.files import load_calibration
from skiptrack_types import StereoRig

log = logging.getLogger(__name__)


def load_rig(path: str) -> StereoRig | None:
    """A stereo rig from a calibration file, through the calibration package's reader."""
    result = load_calibration(path)
    if not isinstance(result, StereoRig):
        log.info("calibration %s holds one camera, not a stereo rig; the source has no rig", path)
        return None
    return result
