"""Flows: database work written once for the sync and the async paths.

A flow is a generator that yields ``(sql, params)`` and is sent back the rows;
its return value is the result. :func:`drive` and :func:`drive_async` run one on
whatever executes a statement (a pooled connection, a caller's connection or
SQLAlchemy session), and turn the errors of pgq's own SQL functions into pgq's
errors (:func:`translated`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from pgq.db.connection import CopyIn, Row
from pgq.errors import InvalidJob, PgqError, QueueFull

T = TypeVar("T")

Flow = Generator[tuple[str | CopyIn, dict[str, Any]], list[Row], T]


#: SQLSTATE of the refusals of pgq.admit() and pgq.admit_group() (max_pending or
#: group_max_pending reached, on_full "reject").
QUEUE_FULL_STATE = "PGQ01"
#: SQLSTATE of pgq.lock_parents()'s refusal (depends_on names no job).
NO_PARENT_STATE = "PGQ02"
CHECK_VIOLATION = "23514"


def queue_full(exc: BaseException) -> QueueFull | None:
    """The :class:`QueueFull` that a database error (psycopg's, or SQLAlchemy's around it) stands for."""
    error = getattr(exc, "orig", None) or exc
    if getattr(error, "sqlstate", None) != QUEUE_FULL_STATE:
        return None
    message = _message(error)
    match = re.match(r"queue (\S+) is full( for group)?", message)
    # admit_group() puts the group in DETAIL: a group name may hold any character.
    diag = getattr(error, "diag", None)
    group = getattr(diag, "message_detail", None) if match and match.group(2) else None
    return QueueFull(message, match.group(1) if match else None, group)


def translated(exc: BaseException) -> PgqError | None:
    """The pgq error that a database error raised by pgq's own SQL functions stands for."""
    full = queue_full(exc)
    if full is not None:
        return full
    error = getattr(exc, "orig", None) or exc
    state = getattr(error, "sqlstate", None)
    if state == NO_PARENT_STATE:
        return InvalidJob(_message(error))
    if state == CHECK_VIOLATION:
        # A row the table's rules refuse (checked in Python first, so rare: a rule
        # changed under a running app). Nothing was written: the statement failed.
        rule = getattr(getattr(error, "diag", None), "constraint_name", None) or "?"
        return InvalidJob(f"the database refused the job (rule {rule} of table jobs): {_message(error)}")
    return None


def _raise_translated(exc: Exception) -> None:
    """Raise the pgq error that ``exc`` stands for, if any (the drivers re-raise ``exc`` itself otherwise)."""
    error = translated(exc)
    if error is not None:
        raise error from None


def _message(error: BaseException) -> str:
    diag = getattr(error, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(error)).strip()
    hint = getattr(diag, "message_hint", None)
    return f"{message} ({hint})" if hint else message


def drive(flow: Flow[T], execute: Callable[[str | CopyIn, dict[str, Any]], list[Row]]) -> T:
    """Run ``flow`` with a synchronous ``execute(sql, params) -> rows``."""
    try:
        sql, params = next(flow)
        while True:
            sql, params = flow.send(execute(sql, params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception as exc:
        _raise_translated(exc)
        raise


async def drive_async(flow: Flow[T], execute: Callable[[str | CopyIn, dict[str, Any]], Awaitable[list[Row]]]) -> T:
    """Run ``flow`` with an async ``execute(sql, params) -> rows``."""
    try:
        sql, params = next(flow)
        while True:
            sql, params = flow.send(await execute(sql, params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception as exc:
        _raise_translated(exc)
        raise
