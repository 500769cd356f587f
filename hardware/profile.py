"""Device profiles for the ``camera:`` source: which devices, in which mode, with which calibration.

A profile is a YAML file (see hardware/profiles/ for the shipped ones) with these keys:

    name         profile name (``camera:<name>`` finds hardware/profiles/<name>.yaml)
    devices      list of device indices (0) or paths (/dev/video0): one for mono or side-by-side, two for two_devices
    layout       mono | side_by_side (one device, left half is camera 0) | two_devices (camera 0 first)
    width/height capture size per device in pixels (side_by_side: the whole double-width image); null: the
                 driver's default, and every frame must have the size of the first
    fps          requested frame rate
    fourcc       pixel format, e.g. MJPG or YUYV; null keeps the driver's default
    exposure     CAP_PROP_EXPOSURE in the driver's units (manual exposure); null keeps auto exposure
    gain         CAP_PROP_GAIN; null keeps the driver's default
    calibration  calibration file, relative to the profile's folder; null for none
    imu          IMU input; reserved: no IMU reader exists yet, so frames carry no IMU
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import yaml

from skiptrack_types import SourceError

PROFILE_DIR = Path(__file__).parent / "profiles"


class StereoLayout(enum.Enum):
    MONO = "mono"
    SIDE_BY_SIDE = "side_by_side"
    TWO_DEVICES = "two_devices"


_DEVICE_COUNT = {StereoLayout.MONO: 1, StereoLayout.SIDE_BY_SIDE: 1, StereoLayout.TWO_DEVICES: 2}


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    devices: tuple[int | str, ...]
    layout: StereoLayout = StereoLayout.MONO
    width: int | None = None
    height: int | None = None
    fps: float = 30.0
    fourcc: str | None = None
    exposure: float | None = None
    gain: float | None = None
    calibration: Path | None = None
    imu: str | None = None

    def __post_init__(self) -> None:
        need = _DEVICE_COUNT[self.layout]
        if len(self.devices) != need:
            raise SourceError(
                f"profile {self.name!r}: layout {self.layout.value} needs {need} device(s), got {list(self.devices)}"
            )
        if (self.width is None) != (self.height is None):
            raise SourceError(f"profile {self.name!r}: give both width and height, or neither (driver default)")
        if (self.width is not None and (self.width <= 0 or self.height <= 0)) or self.fps <= 0:
            raise SourceError(f"profile {self.name!r}: width, height and fps must be positive")
        if self.layout is StereoLayout.SIDE_BY_SIDE and self.width is not None and self.width % 2:
            raise SourceError(f"profile {self.name!r}: a side-by-side width must be even, got {self.width}")
        if self.fourcc is not None and len(self.fourcc) != 4:
            raise SourceError(f"profile {self.name!r}: fourcc must be 4 characters such as MJPG, got {self.fourcc!r}")

    @property
    def camera_count(self) -> int:
        return 1 if self.layout is StereoLayout.MONO else 2


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str) -> DeviceProfile:
    """A shipped profile by name, or a profile YAML file by path."""
    path = Path(name_or_path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise SourceError(
                f"no camera profile {name_or_path!r}; shipped profiles: {', '.join(available_profiles())}, "
                "or pass the path of a profile .yaml, a device path (/dev/video0) or an index (0)"
            )
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SourceError(f"cannot read camera profile {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise SourceError(f"camera profile {path} must be a YAML mapping of keys (see hardware/profile.py)")
    known = set(DeviceProfile.__dataclass_fields__)
    unknown = sorted(set(doc) - known)
    if unknown:
        raise SourceError(f"camera profile {path}: unknown key(s) {', '.join(unknown)}; known keys: {sorted(known)}")
    try:
        layout = StereoLayout(doc.get("layout", "mono"))
    except ValueError as exc:
        raise SourceError(f"camera profile {path}: layout must be one of {[m.value for m in StereoLayout]}") from exc
    calibration = doc.get("calibration")
    return DeviceProfile(
        name=str(doc.get("name", path.stem)),
        devices=tuple(doc.get("devices") or ()),
        layout=layout,
        width=None if doc.get("width") is None else int(doc["width"]),
        height=None if doc.get("height") is None else int(doc["height"]),
        fps=float(doc.get("fps", 30.0)),
        fourcc=doc.get("fourcc"),
        exposure=doc.get("exposure"),
        gain=doc.get("gain"),
        calibration=None if calibration is None else (path.parent / calibration),
        imu=doc.get("imu"),
    )


def profile_for_device(device: int | str) -> DeviceProfile:
    """A mono profile for a bare device (``camera:0``, ``camera:/dev/video0``) in the driver's default mode."""
    return DeviceProfile(name=str(device), devices=(device,))
