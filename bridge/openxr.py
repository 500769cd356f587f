"""SkipTrack poses as OpenXR structures (pyopenxr, ``import xr``), and a probe for an installed runtime.

    python -m bridge.openxr probe

Conversions work without a runtime: they only build ctypes structures. Times: SkipTrack's ``t_ns`` is
``time.monotonic_ns()`` (CLOCK_MONOTONIC); an XrTime comes from XR_KHR_convert_timespec_time when an instance
with that extension is given, otherwise the monotonic nanoseconds are used as they are (what Monado and
SteamVR on Linux use as XrTime base; check your runtime before relying on it).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import numpy as np
import xr

from skiptrack_types import HandPose, HeadPose, TrackingFlags

_JOINT_VALID = xr.SpaceLocationFlags.ORIENTATION_VALID_BIT | xr.SpaceLocationFlags.POSITION_VALID_BIT
_JOINT_TRACKED = xr.SpaceLocationFlags.ORIENTATION_TRACKED_BIT | xr.SpaceLocationFlags.POSITION_TRACKED_BIT


def to_posef(position: np.ndarray, orientation: np.ndarray) -> xr.Posef:
    """An ``xr.Posef`` from a position (3,) m and a quaternion (4,) (x, y, z, w)."""
    px, py, pz = (float(v) for v in position)
    qx, qy, qz, qw = (float(v) for v in orientation)
    return xr.Posef(orientation=xr.Quaternionf(qx, qy, qz, qw), position=xr.Vector3f(px, py, pz))


def location_flags(flags: TrackingFlags) -> xr.SpaceLocationFlags:
    """TrackingFlags as ``XrSpaceLocationFlags`` (the bit order is OpenXR's, see TrackingFlags.to_bits)."""
    return xr.SpaceLocationFlags(flags.to_bits())


def space_location(pose: HeadPose) -> xr.SpaceLocation:
    """The head pose as ``xr.SpaceLocation`` (what ``xrLocateSpace`` returns for the view space)."""
    return xr.SpaceLocation(location_flags=location_flags(pose.flags), pose=to_posef(pose.position, pose.orientation))


def hand_joint_locations(hand: HandPose) -> xr.HandJointLocationsEXT:
    """The hand as ``xr.HandJointLocationsEXT`` holding 26 ``XrHandJointLocationEXT`` (XrHandJointEXT order).

    Per joint: valid sets both VALID bits, tracked both TRACKED bits; ``is_active`` when any joint is tracked.
    The array is kept alive on the returned structure (``.joint_locations``)."""
    joints = (xr.HandJointLocationEXT * xr.HAND_JOINT_COUNT_EXT)()
    for i, joint in enumerate(joints):
        flags = xr.SpaceLocationFlags(0)
        if hand.joint_valid[i]:
            flags |= _JOINT_VALID
            if hand.joint_tracked[i]:
                flags |= _JOINT_TRACKED
        joint.location_flags = flags
        joint.pose = to_posef(hand.joint_positions[i], hand.joint_orientations[i])
        joint.radius = float(hand.joint_radii[i])
    return xr.HandJointLocationsEXT(
        is_active=int(bool(hand.joint_tracked.any())), joint_count=len(joints), joint_locations=joints
    )


class XrClock:
    """Maps SkipTrack capture times (monotonic ns) to XrTime.

    With an ``xr.Instance`` created with XR_KHR_convert_timespec_time, the runtime converts; without one the
    monotonic nanoseconds are the XrTime."""

    def __init__(self, instance: xr.Instance | None = None) -> None:
        self.instance = instance

    def to_xr_time(self, t_ns: int) -> int:
        if self.instance is None:
            return int(t_ns)
        spec = xr.timespec(tv_sec=int(t_ns) // 1_000_000_000, tv_nsec=int(t_ns) % 1_000_000_000)
        return int(xr.convert_timespec_time_to_time_khr(self.instance, spec).value)


@dataclass(frozen=True)
class ProbeResult:
    """What ``probe`` found: whether a runtime loaded, its name and version, and the extensions we use."""

    available: bool
    runtime: str = ""
    hand_tracking: bool = False
    convert_timespec: bool = False
    error: str = ""

    def report(self) -> str:
        if not self.available:
            return (
                "no OpenXR runtime is installed or active on this machine "
                f"(the OpenXR loader said: {self.error}). Install and activate one (Monado, SteamVR, the headset "
                "vendor's runtime) to feed poses into OpenXR applications. The ZeroMQ bridge does not need a "
                "runtime and works as it is: python -m bridge.listen"
            )
        return (
            f"OpenXR runtime: {self.runtime}\n"
            f"  {xr.EXT_HAND_TRACKING_EXTENSION_NAME}: {'yes' if self.hand_tracking else 'no'}\n"
            f"  {xr.KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME}: {'yes' if self.convert_timespec else 'no'}"
        )


def probe() -> ProbeResult:
    """Ask the OpenXR loader for a runtime; never raises for a missing one (pyopenxr raises
    ``xr.exception.RuntimeUnavailableError`` then, caught here)."""
    try:
        extensions = {e.extension_name.decode() for e in xr.enumerate_instance_extension_properties()}
        info = xr.InstanceCreateInfo(application_info=xr.ApplicationInfo(application_name="skiptrack-probe"))
        instance = xr.create_instance(info)
        try:
            props = xr.get_instance_properties(instance)
            version = xr.Version(props.runtime_version)
            runtime = f"{props.runtime_name.decode()} {version.major}.{version.minor}.{version.patch}"
        finally:
            xr.destroy_instance(instance)
    except (xr.exception.RuntimeUnavailableError, xr.exception.RuntimeFailureError) as err:
        return ProbeResult(available=False, error=str(err).rstrip("."))
    return ProbeResult(
        available=True,
        runtime=runtime,
        hand_tracking=xr.EXT_HAND_TRACKING_EXTENSION_NAME in extensions,
        convert_timespec=xr.KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME in extensions,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.openxr", description="OpenXR helpers for SkipTrack")
    parser.add_argument("command", choices=["probe"], help="probe: report the installed OpenXR runtime")
    parser.add_argument("--loader-debug", action="store_true", help="show the OpenXR loader's own messages")
    args = parser.parse_args(argv)
    if not args.loader_debug:
        # The loader prints its search failures to stderr; the probe's report says the same thing plainly.
        os.environ.setdefault("XR_LOADER_DEBUG", "none")
    result = probe()
    print(result.report())
    return 0 if result.available else 1


if __name__ == "__main__":
    sys.exit(main())
