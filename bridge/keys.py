"""Create CURVE keys for the bridge.

    python -m bridge.keys create KEYDIR [--client NAME ...]
    python -m bridge.keys add-client KEYDIR NAME

Then publish with ``--curve-keys KEYDIR`` and give each client ``KEYDIR/server.key`` and its own
``KEYDIR/clients/NAME.key_secret``.
"""

from __future__ import annotations

import argparse
import sys

from bridge.curve import add_client, create_keys
from bridge.errors import BridgeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.keys", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create the server key pair and client key pairs")
    create.add_argument("directory")
    create.add_argument("--client", action="append", default=None, help="client name (repeatable; default: client)")
    add = commands.add_parser("add-client", help="create and admit one more client")
    add.add_argument("directory")
    add.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.command == "create":
            directory = create_keys(args.directory, tuple(args.client or ("client",)))
            print(f"server keys in {directory}; client keys in {directory / 'clients'}")
        else:
            print(f"client secret key: {add_client(args.directory, args.name)}")
    except BridgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
