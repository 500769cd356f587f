"""Print bridge messages as they arrive, to check a setup.

python -m bridge.listen [--endpoint tcp://127.0.0.1:5556] [--topics head hand/left hand/right status]
                        [--count N] [--server-key KEYDIR/server.key --client-keys NAME.key_secret]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bridge.errors import BridgeError
from bridge.protocol import TOPICS
from bridge.publisher import DEFAULT_ENDPOINT
from bridge.status import Status
from bridge.subscriber import Received, Subscriber
from skiptrack_types import HeadPose, SkipTrackError


def describe(received: Received) -> str:
    """One line for a received message: topic, sequence numbers, age, flags and the pose (or status)."""
    message, payload = received.message, received.payload
    head = f"{received.topic:<10} #{message.msg_seq:<7} age {received.age_ns / 1e6:7.2f} ms"
    tags = ("  STALE" if received.stale else "") + ("  repeat" if message.repeat else "")
    if isinstance(payload, Status):
        return (
            f"{head}  state {payload.state.name} head {payload.head_rate_hz:.1f} Hz, sent {payload.messages_sent}, "
            f"dropped {payload.messages_dropped}{tags}"
        )
    flags = payload.flags.to_bits()
    pos = np.array2string(np.asarray(payload.position), precision=3, suppress_small=True)
    quat = np.array2string(np.asarray(payload.orientation), precision=3, suppress_small=True)
    extra = "" if isinstance(payload, HeadPose) else f" joints tracked {int(payload.joint_tracked.sum())}/26"
    return (
        f"{head}  seq {payload.seq} flags {flags:#x} stage {payload.exit_stage} active {payload.active_fraction:.2f}"
        f"  p {pos} q {quat}{extra}{tags}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.listen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT)
    parser.add_argument("--topics", nargs="+", default=list(TOPICS), choices=TOPICS)
    parser.add_argument("--count", type=int, default=0, help="exit after this many messages (0: run until Ctrl-C)")
    parser.add_argument("--timeout", type=float, default=0.0, help="exit with status 1 after this many seconds idle")
    parser.add_argument("--all", action="store_true", help="every message in order (default: latest per topic)")
    parser.add_argument("--server-key", type=Path, help="the publisher's server.key (CURVE)")
    parser.add_argument("--client-keys", type=Path, help="this client's NAME.key_secret (CURVE)")
    args = parser.parse_args(argv)
    try:
        subscriber = Subscriber(
            args.endpoint, args.topics, conflate=not args.all, server_key=args.server_key,
            client_keys=args.client_keys,
        )  # fmt: skip
    except SkipTrackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"listening on {args.endpoint} for {', '.join(args.topics)}", flush=True)
    seen = 0
    with subscriber:
        try:
            while args.count <= 0 or seen < args.count:
                received = subscriber.recv_message(args.timeout * 1000 if args.timeout > 0 else 1000)
                if received is None:
                    if args.timeout > 0:
                        print(f"nothing received for {args.timeout} s", file=sys.stderr)
                        return 1
                    continue
                print(describe(received), flush=True)
                seen += 1
        except KeyboardInterrupt:
            pass
        except BridgeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
