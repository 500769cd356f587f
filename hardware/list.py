"""List the camera devices OpenCV can open, and the shipped camera profiles: ``python -m hardware.list``."""

from __future__ import annotations

import argparse
import glob
import sys
from dataclasses import dataclass

import cv2

from hardware.profile import PROFILE_DIR, available_profiles


@dataclass(frozen=True)
class DeviceInfo:
    path: str
    width: int
    height: int
    fps: float
    fourcc: str


def probe_devices(paths: list[str] | None = None) -> list[DeviceInfo]:
    """Open each V4L2 node (default: every /dev/video*) and report the ones that deliver in their default mode."""
    paths = sorted(glob.glob("/dev/video*")) if paths is None else paths
    found = []
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # probing failures are expected, not news
    try:
        for path in paths:
            capture = cv2.VideoCapture(path, cv2.CAP_V4L2)
            if capture.isOpened():
                code = int(capture.get(cv2.CAP_PROP_FOURCC))
                fourcc = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)) if code > 0 else "?"
                found.append(
                    DeviceInfo(
                        path,
                        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                        capture.get(cv2.CAP_PROP_FPS),
                        fourcc,
                    )
                )
            capture.release()
    finally:
        cv2.utils.logging.setLogLevel(level)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hardware.list", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    nodes = sorted(glob.glob("/dev/video*"))
    devices = probe_devices(nodes)
    if devices:
        print("camera devices OpenCV can open:")
        for d in devices:
            print(f"  camera:{d.path}  {d.width}x{d.height} @ {d.fps:g} Hz, {d.fourcc}")
    elif nodes:
        tried = ", ".join(nodes)
        print(f"no camera device OpenCV can open (tried {tried}; check permissions, e.g. the video group)")
    else:
        print("no camera devices: this machine has no /dev/video* node, so there is nothing OpenCV can open")
    print(f"camera profiles ({PROFILE_DIR}):")
    for name in available_profiles():
        print(f"  camera:{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
