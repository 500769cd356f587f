"""The ``status`` topic's payload: what the tracker is doing and what the publisher has sent."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TrackerState(enum.IntEnum):
    """The tracker's state as carried in a status message (one byte on the wire)."""

    STARTING = 0
    TRACKING = 1
    LOST = 2
    STOPPING = 3


@dataclass(frozen=True)
class Status:
    """Heartbeat payload. ``head_rate_hz`` is the measured rate of head messages over the last heartbeat period;
    ``messages_sent`` / ``messages_dropped`` count pose messages the publisher handed to ZeroMQ or had to drop
    because its queue was full (per-subscriber drops inside a PUB socket are invisible to the publisher:
    subscribers see them as gaps in ``msg_seq``)."""

    state: TrackerState = TrackerState.TRACKING
    head_rate_hz: float = 0.0
    messages_sent: int = 0
    messages_dropped: int = 0
