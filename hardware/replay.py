"""The ``mcap:`` source: replays a SkipTrack recording with its original timestamps and sequence numbers.

``mcap:session.mcap`` paces frames in real time (frame i is yielded ``t_ns[i] - t_ns[0]`` after the first);
``mcap:session.mcap?realtime=0`` yields them as fast as they are read. ``rig``, ``rate_hz`` and
``landmarks_world`` come from the recording. Truncated recordings replay up to their last complete chunk.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from hardware.options import as_bool, reject_unknown
from hardware.recording import RecordingReader
from hardware.sources import FrameSource
from skiptrack_types import Frame, Gap


class McapSource(FrameSource):
    def __init__(self, path: str, realtime: bool = True) -> None:
        self.reader = RecordingReader(path)
        self.realtime = realtime
        self.rig = self.reader.rig
        self.rate_hz = self.reader.rate_hz
        self.landmarks_world = self.reader.landmarks_world

    def __iter__(self) -> Iterator[Frame | Gap]:
        start_wall_ns: int | None = None
        start_t_ns = 0
        for item in self.reader.items():
            if self.realtime and isinstance(item, Frame):
                if start_wall_ns is None:
                    start_wall_ns, start_t_ns = time.monotonic_ns(), item.t_ns
                delay_ns = start_wall_ns + (item.t_ns - start_t_ns) - time.monotonic_ns()
                if delay_ns > 0:
                    time.sleep(delay_ns / 1e9)
            yield item

    @property
    def truncated(self) -> bool:
        """Whether the recording ended early (known after a full pass)."""
        return self.reader.truncated


def open_mcap(target: str, **options: object) -> McapSource:
    reject_unknown("mcap", options, ("realtime",))
    return McapSource(target, realtime=as_bool("realtime", options.get("realtime", True)))
