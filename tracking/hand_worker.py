"""A ``HandTracker`` in a second process: the Tracker sends a frame's hands before it tracks the head and collects
the fitted hands after, so the two run on two cores at once. Hand fitting is many small NumPy operations that
hold the GIL, so a thread would not run beside the head; a process does.

The worker is the same ``HandTracker`` class the Tracker runs in-process, fed the same jobs in the same order:
results are identical. The worker is a fresh interpreter (``python -m tracking.hand_worker FD``, talking over a
socket pair): not a fork, because the parent may hold PyTorch's thread pool, and not multiprocessing's ``spawn``,
which re-runs the caller's main script in the child (a user's script without an ``if __name__ == "__main__"``
guard would start a tracker inside the worker).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

import cv2

from skiptrack_types import SkipTrackError, StereoRig
from tracking.filter import OneEuroConfig
from tracking.hand_tracker import HandJob, HandTracker, HeadFrameHand
from tracking.heap import keep_freed_memory
from tracking.pose.hands import HandConfig

START_TIMEOUT_S = 30.0
"""How long the worker may take to start (it imports NumPy, SciPy and OpenCV: about a second)."""
RESULT_TIMEOUT_S = 5.0
"""How long a frame's result may take before the worker counts as stuck."""


class HandWorkerError(SkipTrackError):
    """The hand worker process died, hung, or failed on a frame."""


class HandWorker:
    """Runs a ``HandTracker(rig, config, filter_config)`` in a child process, started (and ready) when this
    returns; the child exits when this side closes or goes away. ``submit`` a job, then ``result`` for it (one
    job in flight at a time); ``reset`` as the in-process tracker; ``close`` when done."""

    def __init__(self, rig: StereoRig, config: HandConfig, filter_config: OneEuroConfig) -> None:
        ours, theirs = socket.socketpair()
        repo = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
        # its own session: Ctrl-C in a terminal reaches the tracker, which then stops the worker
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tracking.hand_worker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=env, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            ours.close()
            raise HandWorkerError(f"cannot start the hand worker ({sys.executable!r}: {exc})") from exc
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._in_flight = False
        try:
            self._send(("start", (rig, config, filter_config)))
            self._receive(START_TIMEOUT_S)  # ready: the first frame does not wait for the worker's imports
        except HandWorkerError:
            self.close()
            raise

    def submit(self, job: HandJob) -> None:
        """Send the next frame's hands; a result nobody collected (the caller failed after its submit) is dropped
        first, so that results stay paired with their jobs."""
        if self._in_flight:
            self.result()
        self._send(("job", job))
        self._in_flight = True

    def result(self) -> tuple[list[HeadFrameHand], float]:
        """The fitted hands of the submitted job and the worker's compute time for it (ms)."""
        if not self._in_flight:
            raise HandWorkerError("no hand job in flight; submit() one first")
        self._in_flight = False
        return self._receive(RESULT_TIMEOUT_S)

    def reset(self) -> None:
        self._send(("reset", None))

    def close(self) -> None:
        """Stop the process (asks first, kills it after a second); closing twice is harmless."""
        if self._conn.closed:
            return
        if self._process.poll() is None:
            try:
                self._conn.send(("stop", None))
                self._process.wait(1.0)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self._conn.close()

    def _receive(self, timeout_s: float) -> tuple:
        try:
            if not self._conn.poll(timeout_s):
                self.close()
                raise HandWorkerError(f"the hand worker gave no answer within {timeout_s:g} s")
            kind, payload, elapsed_ms = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise HandWorkerError(f"the hand worker process stopped (exit code {self._process.poll()})") from exc
        if kind == "error":
            raise HandWorkerError(f"the hand worker failed:\n{payload}")
        return payload, elapsed_ms

    def _send(self, message: tuple) -> None:
        try:
            self._conn.send(message)
        except OSError as exc:
            raise HandWorkerError(f"the hand worker process stopped (exit code {self._process.poll()})") from exc


def _serve(conn: Connection) -> None:
    """The worker's loop: a ("start", (rig, config, filter_config)) message, then jobs, resets and a stop."""
    cv2.setNumThreads(1)  # one core is this process's share; OpenCV's pool would compete with the head's
    keep_freed_memory()
    tracker: HandTracker | None = None
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if kind == "start":
            tracker = HandTracker(*payload)
            conn.send(("ready", None, 0.0))
            continue
        if kind == "stop":
            return
        if kind == "reset":
            tracker.reset()
            continue
        t0 = time.perf_counter()
        try:
            reply = ("ok", tracker.process(payload), (time.perf_counter() - t0) * 1e3)
        except Exception:  # noqa: BLE001  (sent to the parent, which raises it there)
            reply = ("error", traceback.format_exc(), 0.0)
        conn.send(reply)


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
