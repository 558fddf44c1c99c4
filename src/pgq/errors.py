"""Every error pgq raises derives from :class:`PgqError`.

Messages say what was wrong, what was received and what to do, because the
person reading them is usually in a hurry.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any


class PgqError(Exception):
    """Base class of every error raised by pgq."""


class ConfigurationError(PgqError):
    """A setting or argument has a value pgq cannot use."""


class DatabaseUnavailable(PgqError):
    """The database could not be reached (the message names host and port, never the password)."""


class NotMigrated(PgqError):
    """The database has no pgq schema, or an older one: run ``pgq migrate``."""


class InvalidJob(PgqError):
    """A job was rejected at enqueue; nothing was written."""


class ArgsNotSerializable(InvalidJob):
    """The job's arguments cannot be stored as JSON."""


class PayloadTooLarge(InvalidJob):
    """The job's arguments exceed ``PGQ_MAX_PAYLOAD_BYTES``."""


class UnknownTask(InvalidJob):
    """The task name is not registered with this app (raised with ``strict=True``)."""


class JobNotFound(PgqError):
    """No live or finished job has that id."""


class PermanentError(PgqError):
    """Raise from a handler to fail the job at once, without retrying."""


class Retry(PgqError):
    """Raise from a handler to retry the job after ``delay`` seconds.

    The attempt still counts towards ``max_attempts``.
    """

    def __init__(self, delay: float = 0.0, reason: str | None = None) -> None:
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay < float("inf"):
            raise ConfigurationError(f"Retry delay must be a finite number of seconds >= 0, got {delay!r}")
        super().__init__(reason or f"retry requested in {delay} s")
        self.delay = float(delay)
        self.reason = reason


class Snooze(PgqError):
    """Raise from a handler to run the job again after ``delay`` (seconds or a timedelta)
    without counting an attempt: it waits for something, it did not fail.

    The job goes back to pending at now + ``delay`` by the database clock; its
    ``snoozes`` column counts the times. A task's ``max_snoozes`` (default 100, None
    for no limit) bounds them: the snooze past it fails the job for good. Compare
    :class:`Retry`, a failed attempt with a delay of your choice.
    """

    def __init__(self, delay: float | timedelta = 0.0, reason: str | None = None) -> None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < float("inf"):
            raise ConfigurationError(
                f"Snooze delay must be a finite number of seconds >= 0 or a timedelta, got {delay!r}"
            )
        super().__init__(reason or f"snoozed for {seconds:g} s")
        self.delay = float(seconds)
        self.reason = reason


class InvalidState(PgqError):
    """The job is not in a state that allows the action (cancel a finished job, retry a running one)."""


class QueueFull(PgqError):
    """An enqueue went past its queue's ``max_pending``, or its group's ``group_max_pending``
    (``on_full="reject"``); nothing was written.

    ``queue`` names the queue and ``group`` the group (None when the queue-wide limit
    refused it); the message says the limit and what to do."""

    def __init__(self, message: str, queue: str | None = None, group: str | None = None) -> None:
        super().__init__(message)
        self.queue = queue
        self.group = group


def unknown_options(call: str, given: Iterable[str], known: Any) -> TypeError | None:
    """A :class:`TypeError` naming the keywords of ``call`` that the ``TypedDict`` ``known`` does
    not declare, and the ones it does; None when every keyword is known. For calls that take
    their options as ``**options: Unpack[known]``: the error names the caller's call, not the
    constructor the options were passed on to."""
    unknown = sorted(set(given) - known.__optional_keys__)
    if not unknown:
        return None
    named = ", ".join(repr(name) for name in unknown)
    what = "an unexpected keyword argument" if len(unknown) == 1 else "unexpected keyword arguments"
    return TypeError(f"{call}() got {what} {named}; its options: {', '.join(known.__annotations__)}")
