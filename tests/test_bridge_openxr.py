"""OpenXR structures from SkipTrack poses (pyopenxr), the XrTime mapping, and the runtime probe (no runtime here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xr

from bridge.demo import hand_pose, head_pose
from bridge.openxr import XrClock, hand_joint_locations, location_flags, probe, space_location, to_posef
from skiptrack_types import HandPose, HeadPose, TrackingFlags

REPO = Path(__file__).resolve().parents[1]
F = xr.SpaceLocationFlags


def test_posef_carries_position_and_orientation():
    pose = to_posef(np.array([0.5, 1.5, -2.0]), np.array([0.0, 0.6, 0.0, 0.8]))
    assert (pose.position.x, pose.position.y, pose.position.z) == (0.5, 1.5, -2.0)
    assert pose.orientation.y == pytest.approx(0.6) and pose.orientation.w == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("flags", "bits"),
    [
        (TrackingFlags.tracked(), F.ORIENTATION_VALID_BIT | F.POSITION_VALID_BIT | F.ORIENTATION_TRACKED_BIT
         | F.POSITION_TRACKED_BIT),
        (TrackingFlags.predicted(), F.ORIENTATION_VALID_BIT | F.POSITION_VALID_BIT),
        (TrackingFlags(orientation_valid=True, orientation_tracked=True), F.ORIENTATION_VALID_BIT
         | F.ORIENTATION_TRACKED_BIT),
        (TrackingFlags.lost(), F(0)),
    ],
)  # fmt: skip
def test_location_flags_use_openxr_bits(flags, bits):
    assert location_flags(flags) == bits


def test_space_location_holds_the_head_pose_and_flags():
    head = head_pose(3, 10**9)
    head = HeadPose(**{**head.__dict__, "flags": TrackingFlags.predicted()})
    location = space_location(head)
    assert int(location.location_flags) == 0b0011
    p = location.pose.position
    np.testing.assert_allclose([p.x, p.y, p.z], head.position, atol=1e-6)
    q = location.pose.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], head.orientation, atol=1e-7)


def test_hand_joint_locations_carry_per_joint_flags_and_values():
    hand = hand_pose("left", 0, 10**9)
    valid = hand.joint_valid.copy()
    valid[25] = False
    tracked = valid.copy()
    tracked[10] = False
    hand = HandPose(**{**hand.__dict__, "joint_valid": valid, "joint_tracked": tracked})
    locations = hand_joint_locations(hand)
    assert locations.joint_count == xr.HAND_JOINT_COUNT_EXT == 26 and locations.is_active
    joints = locations.joint_locations
    assert int(joints[0].location_flags) == 0b1111
    assert int(joints[10].location_flags) == 0b0011  # valid, not tracked
    assert int(joints[25].location_flags) == 0
    wrist = joints[xr.HandJointEXT.WRIST]
    np.testing.assert_allclose([wrist.pose.position.x, wrist.pose.position.y, wrist.pose.position.z],
                               hand.joint_positions[1], atol=1e-6)  # fmt: skip
    assert joints[0].radius == pytest.approx(hand.joint_radii[0])


def test_hand_without_tracked_joints_is_inactive():
    hand = hand_pose("right", 0, 10**9)
    hand = HandPose(**{**hand.__dict__, "joint_tracked": np.zeros(26, bool)})
    assert not hand_joint_locations(hand).is_active


def test_xr_clock_without_a_runtime_uses_monotonic_nanoseconds():
    assert XrClock().to_xr_time(123_456_789_012) == 123_456_789_012


def test_probe_says_clearly_that_no_runtime_is_installed():
    result = probe()
    if result.available:
        pytest.skip(f"an OpenXR runtime is installed here: {result.runtime}")
    report = result.report()
    assert "no OpenXR runtime is installed" in report and "ZeroMQ bridge" in report
    assert "unable to find or load a runtime" in result.error


def test_probe_command_reports_no_runtime_without_loader_noise():
    env = {k: v for k, v in os.environ.items() if k != "XR_LOADER_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.openxr", "probe"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    if proc.returncode == 0:
        pytest.skip(f"an OpenXR runtime is installed here: {proc.stdout.strip()}")
    assert proc.returncode == 1
    assert "no OpenXR runtime is installed" in proc.stdout and "python -m bridge.listen" in proc.stdout
    assert "OpenXR-Loader" not in proc.stderr
