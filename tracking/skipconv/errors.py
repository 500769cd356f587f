"""Errors of the skip-convolution engine."""

from skiptrack_types import SkipTrackError


class UnsupportedOperationError(SkipTrackError):
    """The model uses an operation (or an operation's option) that skip conversion cannot run; names the node."""
