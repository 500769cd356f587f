"""CURVE keys for the bridge: creating them, loading them, and the authenticator that admits only listed clients.

A key directory made by ``python -m bridge.keys create KEYDIR`` holds::

    KEYDIR/server.key, KEYDIR/server.key_secret   the publisher's key pair (keep the secret on the tracker)
    KEYDIR/authorized_clients/NAME.key           public keys of the clients the publisher admits
    KEYDIR/clients/NAME.key, NAME.key_secret     each client's key pair, to copy to that client's machine

Removing a file from ``authorized_clients/`` revokes that client at the publisher's next start.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from bridge.errors import BridgeError

SERVER_NAME = "server"
AUTHORIZED_DIR = "authorized_clients"
CLIENTS_DIR = "clients"


@dataclass(frozen=True)
class ServerKeys:
    """The publisher's key pair (Z85 bytes) and the directory of admitted client public keys."""

    public: bytes
    secret: bytes
    authorized_dir: Path


def create_keys(directory: str | Path, clients: tuple[str, ...] = ("client",)) -> Path:
    """Create the server key pair and one key pair per client name in ``directory``; return the directory.

    Refuses to overwrite an existing server key (that would lock out every deployed client)."""
    directory = Path(directory)
    if (directory / f"{SERVER_NAME}.key_secret").exists():
        raise BridgeError(
            f"{directory} already holds a server key; add clients with `python -m bridge.keys add-client "
            f"{directory} NAME` or choose a new directory"
        )
    directory.mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(directory, SERVER_NAME)
    for name in clients:
        add_client(directory, name)
    return directory


def add_client(directory: str | Path, name: str) -> Path:
    """Create a key pair for client ``name``, admit its public key, and return the client's secret-key file."""
    directory = Path(directory)
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise BridgeError(f"client name {name!r} must be letters, digits, '-' or '_'")
    clients, authorized = directory / CLIENTS_DIR, directory / AUTHORIZED_DIR
    if (clients / f"{name}.key").exists():
        raise BridgeError(f"client {name!r} already exists in {clients}; pick another name")
    clients.mkdir(parents=True, exist_ok=True)
    authorized.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(clients, name)
    shutil.copy(public_file, authorized / f"{name}.key")
    return Path(secret_file)


def load_server_keys(directory: str | Path) -> ServerKeys:
    """Read the server key pair and the admitted-clients directory written by ``create_keys``."""
    directory = Path(directory)
    public, secret = load_key_pair(directory / f"{SERVER_NAME}.key_secret")
    authorized = directory / AUTHORIZED_DIR
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise BridgeError(
            f"no admitted clients in {authorized}; add one with `python -m bridge.keys add-client {directory} NAME`"
        )
    return ServerKeys(public, secret, authorized)


def load_key_pair(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``*.key_secret`` file."""
    public, secret = _load(path)
    if secret is None:
        raise BridgeError(f"{path} holds no secret key; pass the NAME.key_secret file, not NAME.key")
    return public, secret


def load_public_key(key: bytes | str | Path) -> bytes:
    """A Z85 public key: given as 40 bytes already, or read from a ``.key`` / ``.key_secret`` file."""
    if isinstance(key, bytes):
        if len(key) != 40:
            raise BridgeError(f"a Z85 public key is 40 characters, got {len(key)}")
        return key
    return _load(key)[0]


def start_authenticator(context: zmq.Context, authorized_dir: Path) -> ThreadAuthenticator:
    """A running ZAP authenticator on ``context`` that admits only the public keys in ``authorized_dir``."""
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(authorized_dir))
    return auth


def _load(path: str | Path) -> tuple[bytes, bytes | None]:
    path = Path(path)
    if not path.is_file():
        raise BridgeError(f"key file {path} does not exist; create keys with `python -m bridge.keys create KEYDIR`")
    try:
        return zmq.auth.load_certificate(path)
    except (ValueError, OSError) as err:
        raise BridgeError(f"{path} is not a ZeroMQ certificate file: {err}") from None
