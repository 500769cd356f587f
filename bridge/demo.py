"""A synthetic, smooth head and hand trajectory, and a demo publisher for checking a setup without a tracker.

    python -m bridge.demo [--endpoint tcp://127.0.0.1:5556] [--rate 90] [--seconds 0 (forever)] [--hands]

The head sways on a slow Lissajous curve at standing height and looks around (yaw +-30 deg, pitch +-10 deg);
the hands, when asked for, hold still 40 cm in front of the head with fingers spread.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from bridge.errors import BridgeError
from bridge.publisher import DEFAULT_ENDPOINT, Publisher
from bridge.status import TrackerState
from skiptrack_types import OPENXR_HAND_JOINTS, HandPose, HeadPose, TrackingFlags

_FINGERS = ("thumb", "index", "middle", "ring", "little")


def head_pose(seq: int, t_ns: int) -> HeadPose:
    """The head at time ``t_ns`` (its own clock, ns): position (m), orientation, and their exact derivatives."""
    t = t_ns * 1e-9
    w = 2 * np.pi * np.array([0.2, 0.13, 0.17])
    amp = np.array([0.3, 0.05, 0.2])
    position = np.array([0.0, 1.6, 0.0]) + amp * np.sin(w * t)
    linear_velocity = amp * w * np.cos(w * t)
    yaw_w, pitch_w = 2 * np.pi * 0.1, 2 * np.pi * 0.07
    yaw, pitch = np.radians(30) * np.sin(yaw_w * t), np.radians(10) * np.sin(pitch_w * t)
    orientation = Rotation.from_euler("YX", [yaw, pitch]).as_quat()
    yaw_rate, pitch_rate = np.radians(30) * yaw_w * np.cos(yaw_w * t), np.radians(10) * pitch_w * np.cos(pitch_w * t)
    # World angular velocity of R = Ry(yaw) Rx(pitch): yaw rate about world Y plus pitch rate about the yawed X.
    angular_velocity = np.array([0.0, yaw_rate, 0.0]) + Rotation.from_euler("Y", yaw).apply([pitch_rate, 0.0, 0.0])
    return HeadPose(
        seq=seq, t_ns=t_ns, position=position, orientation=orientation, linear_velocity=linear_velocity,
        angular_velocity=angular_velocity, flags=TrackingFlags.tracked(), exit_stage=1, active_fraction=0.25,
    )  # fmt: skip


def hand_pose(side: str, seq: int, t_ns: int, head: HeadPose | None = None) -> HandPose:
    """A relaxed open hand 40 cm in front of ``head`` (or of the head at ``t_ns``), palm facing down.

    Joints follow ``OPENXR_HAND_JOINTS``; fingers lie along -Z (forward) in the hand frame, spread in X."""
    head = head if head is not None else head_pose(seq, t_ns)
    sign = -1.0 if side == "left" else 1.0
    local = np.zeros((len(OPENXR_HAND_JOINTS), 3))
    local[0] = (0.0, 0.0, -0.045)  # palm centre, ahead of the wrist
    for f, finger in enumerate(_FINGERS):
        spread = sign * (f - 2) * 0.02
        segments = [0.0, 0.045, 0.09, 0.12, 0.145, 0.165] if finger != "thumb" else [0.0, 0.03, 0.065, 0.095, 0.12]
        names = [n for n in OPENXR_HAND_JOINTS if n.startswith(finger)]
        for name, depth in zip(names, segments[1:], strict=True):
            local[OPENXR_HAND_JOINTS.index(name)] = (spread * (1 + depth * 4), 0.0, -depth)
    R_world_head = Rotation.from_quat(head.orientation)
    wrist = head.position + R_world_head.apply([sign * 0.15, -0.25, -0.4])
    positions = wrist + R_world_head.apply(local)
    orientations = np.tile(R_world_head.as_quat(), (len(OPENXR_HAND_JOINTS), 1))
    radii = np.full(len(OPENXR_HAND_JOINTS), 0.008)
    radii[0] = 0.02
    valid = np.ones(len(OPENXR_HAND_JOINTS), bool)
    return HandPose(
        seq=seq, t_ns=t_ns, side=side, joint_positions=positions, joint_orientations=orientations, joint_radii=radii,
        joint_valid=valid, joint_tracked=valid.copy(), linear_velocity=head.linear_velocity,
        angular_velocity=head.angular_velocity, exit_stage=1, active_fraction=0.25,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT)
    parser.add_argument("--rate", type=float, default=90.0, help="poses per second")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: run until Ctrl-C)")
    parser.add_argument("--hands", action="store_true", help="publish both hands as well")
    parser.add_argument("--curve-keys", type=Path, help="key directory from `python -m bridge.keys create`")
    parser.add_argument("--insecure-bind", action="store_true", help="allow a non-loopback bind without CURVE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        publisher = Publisher(args.endpoint, args.curve_keys, allow_insecure=args.insecure_bind)
    except BridgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    period_ns = int(1e9 / args.rate)
    start = time.monotonic_ns()
    seq = 0
    with publisher:
        publisher.publish_status(TrackerState.TRACKING)
        print(f"publishing a synthetic head{' and hands' if args.hands else ''} on {publisher.endpoint}")
        try:
            while args.seconds <= 0 or time.monotonic_ns() - start < args.seconds * 1e9:
                t_ns = time.monotonic_ns()
                head = head_pose(seq, t_ns)
                publisher.publish_head(head)
                if args.hands:
                    for side in ("left", "right"):
                        publisher.publish_hand(hand_pose(side, seq, t_ns, head))
                seq += 1
                time.sleep(max(0.0, (start + seq * period_ns - time.monotonic_ns()) * 1e-9))
        except KeyboardInterrupt:
            pass
        stats = publisher.stats
        print(f"sent {stats.sent} messages, dropped {stats.dropped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
