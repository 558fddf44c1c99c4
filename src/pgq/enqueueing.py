"""Checking jobs before they are written, and the statements that write them.

The statements are written once as *flows*: generators that yield
``(sql, params)`` and receive the rows back. :func:`drive` runs a flow on a
sync connection and :func:`drive_async` on an async one, so the sync and async
enqueue paths cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Generator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pgq.db.connection import Row
from pgq.db.queries import query
from pgq.errors import InvalidJob, PgqError, QueueFull, UnknownTask
from pgq.job import JobSpec
from pgq.payload import encode_args
from pgq.task import Task

T = TypeVar("T")
Flow = Generator[tuple[str, dict[str, Any]], list[Row], T]

QUEUE_NAME = re.compile(r"^[\w.:\-]{1,128}$")
INT32 = 2**31 - 1
MAX_ATTEMPTS = 1000
# A key holder that commits after our snapshot makes the insert return nothing;
# each retry takes a fresh snapshot (READ COMMITTED), so a few tries settle it.
KEY_RETRIES = 5


def prepare(spec: JobSpec, task: Task[Any, Any] | None, max_payload_bytes: int, strict: bool) -> dict[str, Any]:
    """The insert parameters for ``spec``, or :class:`InvalidJob` saying what is wrong.

    ``task`` is the registered task of that name, if any: its defaults fill
    the options the spec leaves out, and its signature checks the args.
    """
    name = spec.task
    if not isinstance(name, str) or not name.strip():
        raise InvalidJob(f"task must be a non-empty name, got {name!r}")
    if len(name) > 255:
        raise InvalidJob(f"task name is {len(name)} characters, the limit is 255")
    if task is None and strict:
        raise UnknownTask(
            f"unknown task {name!r} (strict=True): register it with @app.task, "
            "or drop strict to enqueue for another process's task"
        )
    args_json = encode_args(spec.args, max_payload_bytes, name)
    if task is not None:
        task.check_args(dict(spec.args or {}))

    queue = spec.queue if spec.queue is not None else (task.queue if task else None) or "default"
    if not isinstance(queue, str) or not QUEUE_NAME.match(queue):
        raise InvalidJob(f"queue must be 1-128 letters, digits, '_', '.', ':' or '-', got {queue!r}")
    priority = spec.priority if spec.priority is not None else (task.priority if task else None) or 0
    _check_int("priority", priority, -INT32, INT32)
    max_attempts = (
        spec.max_attempts
        if spec.max_attempts is not None
        else (task.max_attempts if task and task.max_attempts is not None else 3)
    )
    _check_int("max_attempts", max_attempts, 1, MAX_ATTEMPTS)

    if spec.run_at is not None and spec.delay is not None:
        raise InvalidJob("give run_at or delay, not both")
    run_at = spec.run_at
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise InvalidJob(f"run_at must be a datetime, got {type(run_at).__name__}")
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise InvalidJob(
                f"run_at {run_at.isoformat()} has no time zone; pass an aware datetime "
                "such as datetime.now(timezone.utc) + timedelta(minutes=5), or use delay="
            )
    delay = _delay_seconds(spec.delay)

    key = spec.key
    if key is not None and (not isinstance(key, str) or not key or len(key) > 255):
        raise InvalidJob(f"key must be a non-empty string of at most 255 characters, got {key!r}")

    group = spec.group
    if group is not None and (not isinstance(group, str) or not group or len(group) > 255):
        raise InvalidJob(f"group must be a non-empty string of at most 255 characters, got {group!r}")

    timeout = timedelta(seconds=task.timeout) if task and task.timeout else None
    backoff = task.backoff if task and isinstance(task.backoff, int | float) else None
    return {
        "task": name,
        "args": args_json,
        "queue": queue,
        "priority": priority,
        "run_at": run_at,
        "delay": delay,
        "key": key,
        "max_attempts": max_attempts,
        "timeout": timeout,
        "backoff": float(backoff) if backoff is not None else None,
        "group_key": group,
    }


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidJob(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidJob(f"{name} must be between {low} and {high}, got {value}")


def _delay_seconds(delay: float | timedelta | None) -> float | None:
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise InvalidJob(f"delay must be seconds (a number) or a timedelta, got {delay!r}")
    if seconds < 0 or seconds != seconds:
        raise InvalidJob(f"delay must be zero or positive, got {delay!r}; use run_at for a fixed time")
    return seconds


def insert_one(schema: str, params: dict[str, Any]) -> Flow[int]:
    sql = query("job_insert_one", schema)
    for _ in range(KEY_RETRIES):
        rows = yield sql, params
        if rows:
            return int(rows[0]["id"])
    raise PgqError(
        f"could not settle key {params['key']!r} in queue {params['queue']!r}: the job holding "
        "it kept changing (is the transaction REPEATABLE READ or SERIALIZABLE?)"
    )


def insert_many(schema: str, batch: Sequence[dict[str, Any]]) -> Flow[list[int]]:
    if not batch:
        return []
    columns = (
        "task",
        "args",
        "queue",
        "priority",
        "run_at",
        "delay",
        "key",
        "max_attempts",
        "timeout",
        "backoff",
        "group_key",
    )
    arrays = {column: [params[column] for params in batch] for column in columns}
    inserted = yield query("job_insert_many", schema), arrays
    new_ids = iter(sorted(int(row["id"]) for row in inserted))
    inserted_keys = {(row["queue"], row["key"]) for row in inserted if row["key"] is not None}

    ids: list[int | None] = []
    seen: set[tuple[str, str]] = set()
    for params in batch:
        pair = (params["queue"], params["key"])
        if params["key"] is None or (pair in inserted_keys and pair not in seen):
            ids.append(next(new_ids))
            seen.add(pair)
        else:
            ids.append(None)  # held by a live job: looked up below

    missing = [i for i, job_id in enumerate(ids) if job_id is None]
    if missing:
        pairs = sorted({(batch[i]["queue"], batch[i]["key"]) for i in missing})
        rows = yield (
            query("job_ids_by_key", schema),
            {"queue": [q for q, _ in pairs], "key": [k for _, k in pairs]},
        )
        holders = {(row["queue"], row["key"]): int(row["id"]) for row in rows}
        for i in missing:
            pair = (batch[i]["queue"], batch[i]["key"])
            if pair not in holders:
                # The holder finished meanwhile, or committed after our snapshot.
                holders[pair] = yield from insert_one(schema, batch[i])
            ids[i] = holders[pair]
    return [job_id for job_id in ids if job_id is not None]


#: SQLSTATE of the refusals of pgq.admit() and pgq.admit_group() (max_pending or
#: group_max_pending reached, on_full "reject").
QUEUE_FULL_STATE = "PGQ01"


def queue_full(exc: BaseException) -> QueueFull | None:
    """The :class:`QueueFull` that a database error (psycopg's, or SQLAlchemy's around it) stands for."""
    error = getattr(exc, "orig", None) or exc
    if getattr(error, "sqlstate", None) != QUEUE_FULL_STATE:
        return None
    diag = getattr(error, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(error)).strip()
    hint = getattr(diag, "message_hint", None)
    match = re.match(r"queue (\S+) is full( for group)?", message)
    # admit_group() puts the group in DETAIL: a group name may hold any character.
    group = getattr(diag, "message_detail", None) if match and match.group(2) else None
    return QueueFull(f"{message} ({hint})" if hint else message, match.group(1) if match else None, group)


def drive(flow: Flow[T], execute: Callable[[str, dict[str, Any]], list[Row]]) -> T:
    """Run ``flow`` with a synchronous ``execute(sql, params) -> rows``."""
    try:
        sql, params = next(flow)
        while True:
            sql, params = flow.send(execute(sql, params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception as exc:
        full = queue_full(exc)
        if full is None:
            raise
        raise full from None


async def drive_async(flow: Flow[T], execute: Callable[[str, dict[str, Any]], Awaitable[list[Row]]]) -> T:
    """Run ``flow`` with an async ``execute(sql, params) -> rows``."""
    try:
        sql, params = next(flow)
        while True:
            sql, params = flow.send(await execute(sql, params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception as exc:
        full = queue_full(exc)
        if full is None:
            raise
        raise full from None
