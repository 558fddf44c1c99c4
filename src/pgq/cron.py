"""Cron expressions and time zones, checked when a schedule is declared.

Five fields (minute hour day month weekday) as everywhere, or six with
**seconds first** (``*/2 * * * * *``: every two seconds), as in BullMQ, Quartz
and node-cron; croniter does the parsing. Ticks are computed in the schedule's
time zone, so ``0 9 * * *`` in ``Europe/Paris`` is 9:00 local time across DST.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from pgq.errors import ConfigurationError

CATCH_UP = ("once", "all", "none")


def check_cron(cron: str) -> str:
    if not isinstance(cron, str) or not cron.strip():
        raise ConfigurationError(f"cron must be a string like '*/5 * * * *', got {cron!r}")
    cron = " ".join(cron.split())
    try:
        croniter(cron, datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")), second_at_beginning=True).get_next(datetime)
    except (ValueError, KeyError, TypeError) as exc:  # croniter's errors derive from ValueError
        raise ConfigurationError(
            f"invalid cron expression {cron!r}: {exc}. Use five fields (minute hour day month weekday, "
            "e.g. '*/5 * * * *') or six with seconds first ('*/10 * * * * *')"
        ) from None
    return cron


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC', 'Europe/Paris' or 'America/New_York'"
        ) from None


def check_catch_up(catch_up: str) -> str:
    if catch_up not in CATCH_UP:
        raise ConfigurationError(f"catch_up must be one of {', '.join(CATCH_UP)}; got {catch_up!r}")
    return catch_up


def next_tick(cron: str, timezone: str, after: datetime) -> datetime:
    """The first tick of ``cron`` strictly after ``after`` (an aware datetime)."""
    local = after.astimezone(check_timezone(timezone))
    tick: datetime = croniter(cron, local, second_at_beginning=True).get_next(datetime)
    return tick
