"""Parsing of source options, which arrive as strings from a URI's query or as Python values from keywords."""

from __future__ import annotations

from skiptrack_types import SourceError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def as_bool(name: str, value: object) -> bool:
    """``True``/``"1"``/``"true"``/``"yes"``/``"on"`` and their opposites."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SourceError(f"option {name}={value!r} must be a boolean: one of 1/0, true/false, yes/no, on/off")


def as_float(name: str, value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise SourceError(f"option {name}={value!r} must be a number") from exc


def as_int(name: str, value: object) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise SourceError(f"option {name}={value!r} must be an integer") from exc


def reject_unknown(scheme: str, options: dict[str, object], known: tuple[str, ...]) -> None:
    """Refuse options a source does not understand, so that a typo never passes silently."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SourceError(f"{scheme}: source does not take option(s) {', '.join(unknown)}; it takes {', '.join(known)}")
