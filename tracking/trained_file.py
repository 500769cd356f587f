"""Reading the JSON files that training scripts write (exit gates, the hand pose prior): one way to fail.

A file that is missing, is not JSON or lacks a field it should have is an ``InvalidInputError`` that names the file
and the command that writes a new one, never a KeyError from deep inside.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skiptrack_types import InvalidInputError


@contextmanager
def trained_json(path: Path, what: str, command: str) -> Iterator[dict]:
    """The JSON document at ``path`` (a ``what``, e.g. "gate file", written by ``command``) for a block that reads
    its fields; errors in the block that come from a malformed document become InvalidInputError."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{what} {path} does not exist; train one with `{command}`")
    try:
        yield json.loads(path.read_text())
    except InvalidInputError as exc:  # the reader's own check: say which file
        if str(path) in str(exc):
            raise
        raise InvalidInputError(f"{what} {path}: {exc}") from exc
    except (KeyError, IndexError, TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise InvalidInputError(f"{what} {path} is corrupt ({exc}); retrain with `{command}`") from exc
