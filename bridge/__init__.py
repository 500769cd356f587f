"""bridge: wire protocol, ZeroMQ publisher and subscribers, OpenXR conversions."""

from bridge.errors import BridgeError, InsecureBindError, ProtocolError
from bridge.protocol import TOPICS, Message, decode, encode
from bridge.publisher import DEFAULT_ENDPOINT, Publisher, PublisherStats
from bridge.status import Status, TrackerState
from bridge.subscriber import Received, Subscriber

__all__ = [
    "DEFAULT_ENDPOINT",
    "TOPICS",
    "BridgeError",
    "InsecureBindError",
    "Message",
    "ProtocolError",
    "Publisher",
    "PublisherStats",
    "Received",
    "Status",
    "Subscriber",
    "TrackerState",
    "decode",
    "encode",
]
