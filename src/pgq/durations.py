"""Durations as users give them: seconds (a number) or a ``timedelta``."""

from __future__ import annotations

from datetime import timedelta


def to_seconds(value: object) -> float | None:
    """``value`` in seconds, or None if it is neither a number nor a timedelta (a bool is not
    a duration: ``True`` would pass for 1 s). Callers raise the error of their own layer."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
