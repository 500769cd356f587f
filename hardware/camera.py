"""The ``camera:`` source: devkit cameras through OpenCV (V4L2 on Linux), described by a device profile.

``camera:uvc_stereo_sbs`` (a shipped profile, hardware/profiles/), ``camera:my_rig.yaml`` (a profile file),
``camera:/dev/video0`` or ``camera:0`` (one device, mono, driver's default mode). Option ``timestamps=grab``
(default: ``time.monotonic_ns()`` at grab) or ``stream`` (the stream's own clock counted from the source's start,
for streams whose ``CAP_PROP_POS_MSEC`` starts at 0 such as files played as a camera).

One capture thread per device (hardware/capture.py). Side-by-side devices are split into left/right; two devices
are paired by time, and a pair further apart than half a frame is rejected (the left frame becomes a ``Gap``).
Frame numbers are the left device's; every number not delivered as a frame is covered by a ``Gap``.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from collections.abc import Iterator, Sequence

import cv2

from hardware.capture import LOST, WRONG_SIZE, CaptureThread, FrameQueue, Grabbed, Opener, TimestampMode
from hardware.images import split_side_by_side
from hardware.options import reject_unknown
from hardware.profile import DeviceProfile, StereoLayout, load_profile, profile_for_device
from hardware.rig_file import load_rig
from hardware.sources import FrameSource
from skiptrack_types import Frame, Gap, SourceError, StereoRig

log = logging.getLogger(__name__)


def device_opener(profile: DeviceProfile, device: int | str) -> Opener:
    """An opener for one device of ``profile``, applying its pixel format, size, rate, exposure and gain."""
    backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY

    def open_device() -> cv2.VideoCapture:
        capture = cv2.VideoCapture(device, backend)
        if not capture.isOpened():
            return capture
        if profile.fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*profile.fourcc))
        if profile.width is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, profile.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, profile.height)
        capture.set(cv2.CAP_PROP_FPS, profile.fps)
        if profile.exposure is not None:
            capture.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2: 1 = manual exposure, 3 = auto
            capture.set(cv2.CAP_PROP_EXPOSURE, profile.exposure)
        if profile.gain is not None:
            capture.set(cv2.CAP_PROP_GAIN, profile.gain)
        return capture

    return open_device


class StereoPairer:
    """Pairs left and right frames of two free-running devices by time.

    A left frame is paired with the right frame closest in time if they are at most ``tolerance_ns`` apart; a left
    frame with no such partner becomes a ``Gap``; right frames without partner are dropped. A left frame waits for
    its partner while the right device lags, until ``max_wait_ns`` after its capture time (monotonic clock) or
    until the right device is reported lost.
    """

    def __init__(self, tolerance_ns: int, max_wait_ns: int) -> None:
        self.tolerance_ns = tolerance_ns
        self.max_wait_ns = max_wait_ns
        self.left: collections.deque[Grabbed | Gap] = collections.deque()
        self.right: collections.deque[Grabbed] = collections.deque()
        self.right_lost = False
        self.out: list[Frame | Gap] = []
        self.next_seq = 0

    def push_left(self, item: Grabbed | Gap) -> None:
        self.left.append(item)

    def push_right(self, item: Grabbed | Gap) -> None:
        if isinstance(item, Grabbed):
            self.right.append(item)
            self.right_lost = False
        elif item.reason.startswith(LOST):
            self.right_lost = True
            self.out.append(Gap(self.next_seq, 0, item.t_ns, item.reason))

    def pop_ready(self, now_ns: int) -> list[Frame | Gap]:
        """Frames and gaps decided by now, in order."""
        while self.left:
            head = self.left[0]
            if isinstance(head, Gap):
                self._emit(self.left.popleft())
                continue
            while self.right and self.right[0].t_ns < head.t_ns - self.tolerance_ns:
                self.right.popleft()
            if not self.right:
                if not self.right_lost and now_ns - head.t_ns <= self.max_wait_ns:
                    break
                self._unpaired(self.left.popleft())
                continue
            right = self.right[0]
            if abs(right.t_ns - head.t_ns) <= self.tolerance_ns:
                self.left.popleft()
                self.right.popleft()
                self._emit(Frame(head.seq, head.t_ns, (head.image, right.image)))
            else:
                self._unpaired(self.left.popleft())
        out, self.out = self.out, []
        return out

    def _unpaired(self, left: Grabbed) -> None:
        self._emit(Gap(left.seq, 1, left.t_ns, "no right frame within half a frame"))

    def _emit(self, item: Frame | Gap) -> None:
        self.next_seq = (item.seq + 1) if isinstance(item, Frame) else max(self.next_seq, item.first_seq + item.count)
        self.out.append(item)


class CameraSource(FrameSource):
    """Frames from the devices of ``profile``; ``openers`` replace the V4L2 openers (one per device), e.g. to
    read video files through the same capture path. ``drop_oldest`` keeps latency low when the consumer is slow
    (live cameras); without it capture waits for the consumer (files). ``pair_wait_s`` is how long a left frame
    waits for its right partner (default four frame periods)."""

    live_clock = True  # both timestamp modes count from a grab on the monotonic clock

    def __init__(
        self,
        profile: DeviceProfile,
        openers: Sequence[Opener] | None = None,
        timestamps: TimestampMode = TimestampMode.GRAB,
        drop_oldest: bool = True,
        max_queued: int = 4,
        rig: StereoRig | None = None,
        pair_wait_s: float | None = None,
    ) -> None:
        self.profile = profile
        self.rate_hz = profile.fps
        self.pair_wait_ns = int((4 / profile.fps if pair_wait_s is None else pair_wait_s) * 1e9)
        self.rig = rig if rig is not None or profile.calibration is None else load_rig(str(profile.calibration))
        if profile.imu:
            log.warning("profile %s names IMU %r; no IMU reader exists yet: no IMU data", profile.name, profile.imu)
        openers = list(openers) if openers is not None else [device_opener(profile, d) for d in profile.devices]
        if len(openers) != len(profile.devices):
            raise SourceError(f"profile {profile.name!r} has {len(profile.devices)} device(s), got {len(openers)}")
        self._condition = threading.Condition()
        self._queues = [FrameQueue(max_queued, drop_oldest, self._condition) for _ in openers]
        size = None if profile.width is None else (profile.width, profile.height)
        t_base_ns = time.monotonic_ns()  # one stream-time origin for all devices keeps them comparable
        self._threads = [
            CaptureThread(opener, str(device), profile.fps, queue, size, timestamps, t_base_ns)
            for opener, device, queue in zip(openers, profile.devices, self._queues, strict=True)
        ]
        self._ready: collections.deque[Frame | Gap] = collections.deque()  # taken from the queues, not yet yielded
        self._started = False
        self._closed = False
        self._delivered = False

    def __iter__(self) -> Iterator[Frame | Gap]:
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()
        half_frame_ns = int(0.5e9 / self.profile.fps)
        pairer = StereoPairer(half_frame_ns, self.pair_wait_ns) if len(self._queues) == 2 else None
        while self._ready or not self._closed:  # frames already taken are still delivered after close()
            if self._ready:
                yield self._ready.popleft()
                continue
            with self._condition:
                while not self._closed and all(q.peek() is None for q in self._queues):
                    self._condition.wait(0.1)
            items = [self._take(q) for q in self._queues]
            self._ready.extend(self._combine(items, pairer))

    def newer_frame_waiting(self) -> bool:
        """A frame is ready behind the one just yielded, or a device has grabbed one since."""
        return any(isinstance(item, Frame) for item in self._ready) or any(
            isinstance(q.peek(), Grabbed) for q in self._queues
        )

    def _take(self, queue: FrameQueue) -> list[Grabbed | Gap]:
        items = []
        while (item := queue.pop()) is not None:
            if isinstance(item, Gap) and item.reason.startswith(WRONG_SIZE) and not self._delivered:
                self.close()
                raise SourceError(
                    f"camera profile {self.profile.name!r}: {item.reason}. Set width/height in the profile to a mode "
                    "the device supports (list them with v4l2-ctl --list-formats-ext), or to null"
                )
            self._delivered |= isinstance(item, Grabbed)
            items.append(item)
        return items

    def _combine(self, items: list[list[Grabbed | Gap]], pairer: StereoPairer | None) -> list[Frame | Gap]:
        if pairer is not None:
            for item in items[0]:
                pairer.push_left(item)
            for item in items[1]:
                pairer.push_right(item)
            return pairer.pop_ready(time.monotonic_ns())
        return [item if isinstance(item, Gap) else self._frame(item) for item in items[0]]

    def _frame(self, grabbed: Grabbed) -> Frame:
        sbs = self.profile.layout is StereoLayout.SIDE_BY_SIDE
        return Frame(grabbed.seq, grabbed.t_ns, split_side_by_side(grabbed.image) if sbs else (grabbed.image,))

    def close(self) -> None:
        self._closed = True
        for thread in self._threads:
            thread.stop()


def open_camera(target: str, **options: object) -> CameraSource:
    reject_unknown("camera", options, ("timestamps",))
    try:
        timestamps = TimestampMode(str(options.get("timestamps", "grab")))
    except ValueError as exc:
        raise SourceError("camera: option timestamps must be grab or stream") from exc
    if target.isdigit():
        profile = profile_for_device(int(target))
    elif target.startswith("/dev/"):
        profile = profile_for_device(target)
    else:
        profile = load_profile(target)
    return CameraSource(profile, timestamps=timestamps)
