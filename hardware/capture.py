"""One capture thread per device: grab, stamp, number, queue; report every lost frame as a ``Gap``.

The thread talks to OpenCV only through an *opener*, a function returning a ``cv2.VideoCapture``, so the same
code runs on a V4L2 camera and on a video file (which is how the tests drive it: no camera needed). A frame is
stamped with ``time.monotonic_ns()`` right after ``grab()`` returns (``TimestampMode.GRAB``, what live devices
use), or from the stream's own clock (``TimestampMode.STREAM``: ``CAP_PROP_POS_MSEC``, e.g. a file's presentation
times, counted from ``t_base_ns`` on the monotonic clock; after a reconnection it continues after the last frame).

Every frame gets a sequence number. Frames the device skipped (a jump in ``CAP_PROP_POS_FRAMES`` where the backend
reports it, otherwise a hole of more than 1.5 frame periods in the timestamps), frames whose time did not advance,
frames of the wrong size, and frames dropped because the consumer was slow all become ``Gap`` markers covering
their numbers. A device that stops delivering yields a ``Gap`` (count 0, ``reason`` starting "lost") and is
reopened with exponential back-off; once it is back, the frames missed meanwhile (by elapsed time) are one more
``Gap``. Nothing is ever delivered twice.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from hardware.images import to_gray
from skiptrack_types import Gap

log = logging.getLogger(__name__)

Opener = Callable[[], cv2.VideoCapture]

LOST = "lost"
AWAY = "missed while the device was away"
WRONG_SIZE = "wrong size"


class TimestampMode(enum.Enum):
    GRAB = "grab"
    STREAM = "stream"


@dataclass(frozen=True, eq=False)
class Grabbed:
    """One image from one device: ``seq`` in the device's numbering, ``t_ns`` on the monotonic clock."""

    seq: int
    t_ns: int
    image: np.ndarray


# --------------------------------------------------------------------------------------------------- numbering


class Sequencer:
    """Numbers a device's frames and finds the ones it lost.

    ``admit(t_ns, device_index)`` returns the gaps to report before the frame and the frame's seq, or None for
    the seq when the frame must be dropped (its time did not advance). ``device_index`` is the backend's frame
    counter (``CAP_PROP_POS_FRAMES``) or None when it has none.
    """

    def __init__(self, fps: float) -> None:
        self.period_ns = 1e9 / fps
        self.next_seq = 0
        self.last_t_ns: int | None = None
        self.last_index: int | None = None
        self._resync = False

    def admit(self, t_ns: int, device_index: int | None) -> tuple[list[Gap], int | None]:
        if self.last_t_ns is not None and t_ns <= self.last_t_ns:
            gap = Gap(self.next_seq, 1, t_ns, f"timestamp went backwards ({t_ns} ns after {self.last_t_ns} ns)")
            self.next_seq += 1
            return [gap], None
        missing = 0
        if self._resync:
            self._resync = False
        elif device_index is not None and self.last_index is not None:
            missing = max(0, device_index - self.last_index - 1)
        elif self.last_t_ns is not None and t_ns - self.last_t_ns > 1.5 * self.period_ns:
            missing = round((t_ns - self.last_t_ns) / self.period_ns) - 1
        gaps = [Gap(self.next_seq, missing, t_ns, "dropped by the device")] if missing else []
        self.next_seq += missing
        self.last_t_ns, self.last_index = t_ns, device_index
        seq = self.next_seq
        self.next_seq += 1
        return gaps, seq

    def skip(self, t_ns: int, device_index: int | None, reason: str) -> Gap:
        """Give up one frame (for example one of the wrong size): its number becomes a gap."""
        gap = Gap(self.next_seq, 1, t_ns, reason)
        self.next_seq += 1
        self.last_index = device_index
        self.last_t_ns = t_ns if self.last_t_ns is None else max(t_ns, self.last_t_ns)
        return gap

    def reopened(self, t_ns: int) -> Gap | None:
        """The device is back: account for the frames it would have delivered since its last one."""
        self.last_index = None
        if self.last_t_ns is None:
            return None
        # the reopened stream's first frame is not compared with the old stream's last: this gap accounts for it
        self._resync = True
        missing = max(0, round((t_ns - self.last_t_ns) / self.period_ns) - 1)
        if not missing:
            return None
        gap = Gap(self.next_seq, missing, t_ns, AWAY)
        self.next_seq += missing
        return gap


# --------------------------------------------------------------------------------------------------- queue


class FrameQueue:
    """Frames and gaps of one device, oldest first, holding at most ``max_frames`` frames.

    When full, ``drop_oldest`` replaces the oldest frame by a gap (live cameras: latency stays low); otherwise
    ``put`` waits for room (files: every frame is kept). ``condition`` may be shared between queues so that a
    consumer can wait for any of them.
    """

    def __init__(self, max_frames: int, drop_oldest: bool, condition: threading.Condition | None = None) -> None:
        self.max_frames = max_frames
        self.drop_oldest = drop_oldest
        self.condition = condition or threading.Condition()
        self.items: collections.deque[Grabbed | Gap] = collections.deque()
        self.frames = 0
        self.closed = False

    def put(self, item: Grabbed | Gap) -> None:
        with self.condition:
            if isinstance(item, Grabbed):
                while self.frames >= self.max_frames and not self.closed:
                    if self.drop_oldest:
                        self._drop_oldest_frame(item.t_ns)
                    else:
                        self.condition.wait()
                self.frames += 1
            self.items.append(item)
            self.condition.notify_all()

    def pop(self) -> Grabbed | Gap | None:
        """The oldest item, or None when empty (call with ``condition`` held or not; it locks)."""
        with self.condition:
            if not self.items:
                return None
            item = self.items.popleft()
            if isinstance(item, Grabbed):
                self.frames -= 1
            self.condition.notify_all()
            return item

    def peek(self) -> Grabbed | Gap | None:
        with self.condition:
            return self.items[0] if self.items else None

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify_all()

    def _drop_oldest_frame(self, t_ns: int) -> None:
        i = next(i for i, it in enumerate(self.items) if isinstance(it, Grabbed))
        dropped = Gap(self.items[i].seq, 1, t_ns, "dropped: the consumer was too slow")
        prev = self.items[i - 1] if i > 0 else None
        if isinstance(prev, Gap) and prev.reason == dropped.reason and prev.first_seq + prev.count == dropped.first_seq:
            self.items[i - 1] = Gap(prev.first_seq, prev.count + 1, t_ns, prev.reason)
            del self.items[i]
        else:
            self.items[i] = dropped
        self.frames -= 1
        log.debug("dropped frame %d: the consumer is slower than the camera", dropped.first_seq)


# --------------------------------------------------------------------------------------------------- thread


class CaptureThread:
    """Reads one device on its own thread into ``queue``.

    ``size`` (width, height) is what every frame must have (None: the first frame's size). ``t_base_ns`` is where
    stream time 0 lands on the monotonic clock in ``STREAM`` mode (share it between devices to keep them aligned).
    """

    def __init__(
        self,
        opener: Opener,
        name: str,
        fps: float,
        queue: FrameQueue,
        size: tuple[int, int] | None = None,
        timestamps: TimestampMode = TimestampMode.GRAB,
        t_base_ns: int | None = None,
        backoff_s: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self.opener, self.name, self.queue, self.size, self.timestamps = opener, name, queue, size, timestamps
        self.sequencer = Sequencer(fps)
        self.t_base_ns = time.monotonic_ns() if t_base_ns is None else t_base_ns
        self.backoff_s = backoff_s
        self.frames_delivered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{name}", daemon=True)

    def start(self) -> CaptureThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self.queue.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        backoff = self.backoff_s[0]
        lost_reported = False
        while not self._stop.is_set():
            capture = self.opener()
            if not capture.isOpened():
                capture.release()
                if not lost_reported:
                    self._put(Gap(self.sequencer.next_seq, 0, time.monotonic_ns(), f"{LOST}: cannot open {self.name}"))
                    lost_reported = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_s[1])
                continue
            backoff = self.backoff_s[0]
            if lost_reported or self.sequencer.last_t_ns is not None:
                gap = self.sequencer.reopened(time.monotonic_ns())
                if gap is not None:
                    self._put(gap)
            lost_reported = False
            reason = self._read(capture)
            capture.release()
            if not self._stop.is_set():
                log.warning("%s: %s; reconnecting", self.name, reason)
                self._put(Gap(self.sequencer.next_seq, 0, time.monotonic_ns(), f"{LOST}: {self.name} {reason}"))
                lost_reported = True

    def _read(self, capture: cv2.VideoCapture) -> str:
        """Deliver frames until the device fails; return why it stopped."""
        stream_base_ns: int | None = None
        while not self._stop.is_set():
            if not capture.grab():
                return "stopped delivering frames"
            t_grab_ns = time.monotonic_ns()
            ok, raw = capture.retrieve()
            if not ok or raw is None:
                return "returned an empty frame"
            t_ns = t_grab_ns
            if self.timestamps is TimestampMode.STREAM:
                if stream_base_ns is None:
                    last = self.sequencer.last_t_ns
                    stream_base_ns = (
                        self.t_base_ns if last is None else max(t_grab_ns, last + int(self.sequencer.period_ns))
                    )
                t_ns = stream_base_ns + int(round(capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6))
            index = int(capture.get(cv2.CAP_PROP_POS_FRAMES))
            index = index if index > 0 else None
            image = to_gray(raw)
            if self.size is None:
                self.size = (image.shape[1], image.shape[0])
            if (image.shape[1], image.shape[0]) != self.size:
                got, want = f"{image.shape[1]}x{image.shape[0]}", f"{self.size[0]}x{self.size[1]}"
                self._put(self.sequencer.skip(t_ns, index, f"{WRONG_SIZE}: {self.name} gave {got}, expected {want}"))
                continue
            gaps, seq = self.sequencer.admit(t_ns, index)
            for gap in gaps:
                self._put(gap)
            if seq is not None:
                self._put(Grabbed(seq, t_ns, image))
                self.frames_delivered += 1
        return "stopped"

    def _put(self, item: Grabbed | Gap) -> None:
        if isinstance(item, Gap) and item.count:
            log.info("%s: gap of %d frame(s) from %d: %s", self.name, item.count, item.first_seq, item.reason)
        self.queue.put(item)
