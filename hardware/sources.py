"""The one factory for frame sources: ``open_source("scheme:target?option=value", **options)``.

Every source is an iterable of ``Frame`` (and, for live sources, ``Gap`` markers) with ``close()`` and
context-manager support. Schemes are looked up in ``SCHEMES``; each names the module and function that opens it,
imported only when used so that one scheme's optional dependencies never break another.
"""

from __future__ import annotations

import abc
import importlib
import logging
from collections.abc import Iterator
from urllib.parse import parse_qsl

from skiptrack_types import Frame, Gap, SourceError, StereoRig

log = logging.getLogger(__name__)

SCHEMES: dict[str, str] = {
    "synthetic": "hardware.synthetic:open_synthetic",
    "mcap": "hardware.replay:open_mcap",
    "camera": "hardware.camera:open_camera",
    "video": "hardware.video:open_video",
    "euroc": "hardware.euroc:open_euroc",
}
"""scheme -> "module:function"; the function takes (target: str, **options) and returns a FrameSource."""


class FrameSource(abc.ABC):
    """An iterable of frames. ``rig`` is the source's calibration when it knows one, ``rate_hz`` its nominal rate."""

    rig: StereoRig | None = None
    rate_hz: float | None = None
    live_clock: bool = False
    """True when ``Frame.t_ns`` is when the frame was grabbed, on this machine's monotonic clock (live cameras): the
    start of the frame's latency, and how old it is when the tracker gets to it."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Frame | Gap]: ...

    def newer_frame_waiting(self) -> bool:
        """Whether a frame newer than the last one yielded is already there (a live source's queue)."""
        return False

    def close(self) -> None:
        """Release devices, files and threads. Safe to call twice."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """Split ``"scheme:target?key=value&..."`` into (scheme, target, options)."""
    if not isinstance(uri, str) or ":" not in uri:
        raise SourceError(
            f"source {uri!r} is not a URI; write scheme:target, e.g. synthetic:seated. Known schemes: {_known()}"
        )
    scheme, _, rest = uri.partition(":")
    target, _, query = rest.partition("?")
    return scheme.lower(), target, dict(parse_qsl(query, keep_blank_values=True))


def open_source(uri: str, **options: object) -> FrameSource:
    """Open the source named by ``uri``. Options in the URI's query string are overridden by keyword options."""
    scheme, target, uri_options = parse_uri(uri)
    if scheme not in SCHEMES:
        raise SourceError(f"unknown source scheme {scheme!r} in {uri!r}; known schemes: {_known()}")
    module_name, _, func_name = SCHEMES[scheme].partition(":")
    opener = getattr(importlib.import_module(module_name), func_name)
    merged = {**uri_options, **options}
    log.debug("opening %s source %r with %s", scheme, target, merged)
    return opener(target, **merged)


def _known() -> str:
    return ", ".join(sorted(SCHEMES))
