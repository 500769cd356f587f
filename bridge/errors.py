"""The bridge's exceptions, all SkipTrackError subclasses."""

from __future__ import annotations

from skiptrack_types import SkipTrackError


class BridgeError(SkipTrackError):
    """A bridge socket, key file or endpoint could not be set up."""


class ProtocolError(BridgeError):
    """A message is not a valid wire-protocol v1 message (see bridge/PROTOCOL.md); the message says which rule."""


class InsecureBindError(BridgeError):
    """Binding to a network interface without CURVE encryption was refused."""
