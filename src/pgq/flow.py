"""Flow control: parsing and checking the limits of :meth:`pgq.App.set_queue`.

The limits themselves are enforced in SQL, inside the claim (migration 0003's
``claim_limited``); see docs/flow-control.md.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

from pgq.errors import ConfigurationError

#: Largest count or concurrency accepted (a PostgreSQL integer).
INT32 = 2**31 - 1

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
RATE_HELP = "write it like 10/s, 100/min, 5/h, 2/30s or (count, seconds)"
ON_FULL = ("reject", "drop_oldest")


class _Unset:
    """The default of :meth:`set_queue`'s options: leave that limit as it is."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def parse_rate(value: Any, what: str = "rate") -> tuple[int, float] | None:
    """``"10/s"``, ``"100/min"``, ``"2/30s"`` or ``(count, seconds)`` as (count, period seconds);
    None (or ``"none"``) is no limit. :class:`ConfigurationError` saying what to write otherwise."""
    if _no_limit(value):
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        match = _RATE.match(text)
        unit = match.group(3) if match else ""
        unit = unit[:-1] if unit.endswith("s") and unit[:-1] in _UNITS and unit != "ms" else unit
        if not match or unit not in _UNITS:
            raise ConfigurationError(f"{what} {value!r} is not a rate: {RATE_HELP}")
        count = int(match.group(1))
        seconds = float(match.group(2) or 1) * _UNITS[unit]
        return _check_rate(count, seconds, value, what)
    if isinstance(value, tuple | list) and len(value) == 2:
        count, period = value
        seconds = period.total_seconds() if isinstance(period, timedelta) else period
        if isinstance(count, bool) or not isinstance(count, int):
            raise ConfigurationError(f"{what} {value!r}: the count must be a whole number; {RATE_HELP}")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ConfigurationError(f"{what} {value!r}: the period must be seconds or a timedelta; {RATE_HELP}")
        return _check_rate(count, float(seconds), value, what)
    raise ConfigurationError(f"{what} {value!r} is not a rate: {RATE_HELP}")


def _no_limit(value: Any) -> bool:
    """None, or the word ``none`` in any case and spacing: no limit."""
    return value is None or (isinstance(value, str) and value.strip().lower() == "none")


def _check_rate(count: int, seconds: float, value: Any, what: str) -> tuple[int, float]:
    if not 1 <= count <= INT32:
        raise ConfigurationError(f"{what} {value!r}: the count must be at least 1; {RATE_HELP}")
    if not math.isfinite(seconds) or not 0.001 <= seconds <= 366 * 86400:
        raise ConfigurationError(f"{what} {value!r}: the period must be between 1 ms and a year; {RATE_HELP}")
    if seconds / count < 1e-6:
        raise ConfigurationError(f"{what} {value!r} is over one start per microsecond; drop the limit instead")
    return count, seconds


def parse_count(value: Any, what: str, minimum: int = 1) -> int | None:
    """A whole number >= ``minimum`` (or a string of one), or None / ``"none"`` for no limit."""
    if _no_limit(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"\d+", text):
            raise ConfigurationError(f"{what} must be a whole number >= {minimum} or none, got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= INT32:
        raise ConfigurationError(f"{what} must be a whole number >= {minimum} or none, got {value!r}")
    return value


def parse_on_full(value: Any) -> str:
    if value not in ON_FULL:
        raise ConfigurationError(f"on_full must be 'reject' or 'drop_oldest', got {value!r}")
    return str(value)


def format_rate(count: int | None, period: timedelta | None) -> str | None:
    """(10, 1 s) as ``"10/s"``, (100, 60 s) as ``"100/min"``, (2, 30 s) as ``"2/30s"``."""
    if count is None or period is None:
        return None
    seconds = period.total_seconds()
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if seconds == size:
            return f"{count}/{unit}"
    return f"{count}/{seconds:g}s"
