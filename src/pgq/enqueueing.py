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
from pgq.workflow import Node

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

    depends_on = _parents(spec.depends_on)
    on_parent_failure = spec.on_parent_failure
    if on_parent_failure is not None:
        if on_parent_failure not in ("cancel", "run"):
            raise InvalidJob(f"on_parent_failure must be 'cancel' or 'run', got {on_parent_failure!r}")
        if depends_on is None:
            raise InvalidJob("on_parent_failure needs depends_on=[parent ids]")

    unique_for = _key_period("unique_for", spec.unique_for, key)
    debounce = _key_period("debounce", spec.debounce, key)
    if unique_for is not None and debounce is not None:
        raise InvalidJob("give unique_for or debounce, not both: debounce already keeps one job per key")
    if debounce is not None:
        if run_at is not None or delay is not None:
            raise InvalidJob("debounce sets the job's run time (now + debounce): drop run_at/delay")
        delay = debounce

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
        "depends_on": depends_on,
        "on_parent_failure": on_parent_failure,
        "unique_for": unique_for,
        "debounce": debounce,
    }


#: Parents per job: a job waiting for more is better modelled as a group of
#: children feeding one fan-in job.
MAX_PARENTS = 1000
#: The longest unique_for or debounce period, in seconds (ten years).
MAX_KEY_PERIOD = 10 * 366 * 86400.0


def _parents(depends_on: Any) -> list[int] | None:
    if depends_on is None:
        return None
    if isinstance(depends_on, str | bytes) or not hasattr(depends_on, "__iter__"):
        raise InvalidJob(f"depends_on must be a list of job ids, got {depends_on!r}")
    parents: list[int] = []
    for parent in depends_on:
        if isinstance(parent, bool) or not isinstance(parent, int) or not 1 <= parent < 2**63:
            raise InvalidJob(f"depends_on must hold job ids (positive integers), got {parent!r}")
        if parent not in parents:
            parents.append(parent)
    if len(parents) > MAX_PARENTS:
        raise InvalidJob(f"depends_on names {len(parents)} jobs, the limit is {MAX_PARENTS}")
    return parents or None


def _key_period(name: str, value: float | timedelta | None, key: str | None) -> float | None:
    if value is None:
        return None
    if key is None:
        raise InvalidJob(f"{name} needs a key: enqueue(..., key='...', {name}=...)")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidJob(f"{name} must be seconds (a number) or a timedelta, got {value!r}")
    if not 0 < seconds <= MAX_KEY_PERIOD:
        raise InvalidJob(f"{name} must be more than 0 s and at most ten years, got {value!r}")
    return seconds


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


def needs_transaction(batch: Sequence[dict[str, Any]]) -> bool:
    """Whether these jobs' statements hold locks from one statement to the next (the
    parents of a job, the row of a unique_for or debounce key), so that on pgq's own
    pool (autocommit) they must share one transaction."""
    return any(p["depends_on"] or _keyed(p) for p in batch)


def _keyed(params: dict[str, Any]) -> bool:
    """Whether the job's key is decided on its row in job_keys (unique_for, debounce)."""
    return params["unique_for"] is not None or params["debounce"] is not None


def insert_one(schema: str, params: dict[str, Any]) -> Flow[int]:
    if _keyed(params):
        return (yield from _insert_keyed(schema, params))
    parents = params["depends_on"]
    if parents:
        yield query("job_lock_parents", schema), {"parents": parents}
    job_id, created = yield from _insert_row(schema, params)
    if created and parents:
        yield query("job_settle", schema), {"ids": [job_id]}
    return job_id


def _insert_row(schema: str, params: dict[str, Any]) -> Flow[tuple[int, bool]]:
    """The new job's id and True, or the id of the live job holding its key and False."""
    sql = query("job_insert_one", schema)
    for _ in range(KEY_RETRIES):
        rows = yield sql, params
        if rows:
            return int(rows[0]["id"]), bool(rows[0]["created"])
    raise PgqError(
        f"could not settle key {params['key']!r} in queue {params['queue']!r}: the job holding "
        "it kept changing (is the transaction REPEATABLE READ or SERIALIZABLE?)"
    )


def _insert_keyed(schema: str, params: dict[str, Any]) -> Flow[int]:
    """An enqueue with ``unique_for`` or ``debounce``: enqueuers of one key take turns on
    the key's row in ``job_keys`` (a row lock, held to the end of their transaction), and
    each decides after the previous one committed."""
    where = {"queue": params["queue"], "key": params["key"]}
    taken = (yield query("job_key_take", schema), where)[0]
    if params["debounce"] is not None:
        rows = yield query("job_key_debounce", schema), {**where, "args": params["args"], "delay": params["debounce"]}
        pushed = [row for row in rows if row["outcome"] == "pushed"]
        if pushed:
            return int(pushed[0]["id"])
    else:
        rows = yield query("job_key_holder", schema), where
        if rows:
            return int(rows[0]["id"])
        if taken["held"] and taken["job_id"] is not None:
            return int(taken["job_id"])
    job_id = yield from insert_one(schema, {**params, "unique_for": None, "debounce": None})
    yield query("job_key_record", schema), {**where, "job_id": job_id, "unique_for": params["unique_for"]}
    return job_id


def insert_many(schema: str, batch: Sequence[dict[str, Any]]) -> Flow[list[int]]:
    if not batch:
        return []
    # Jobs with unique_for or debounce decide one by one on their key's row;
    # the others go in one statement.
    keyed = [i for i, params in enumerate(batch) if _keyed(params)]
    plain = [i for i, params in enumerate(batch) if not _keyed(params)]
    ids: list[int | None] = [None] * len(batch)
    if plain:
        plain_ids = yield from _insert_batch(schema, [batch[i] for i in plain])
        for i, job_id in zip(plain, plain_ids, strict=True):
            ids[i] = job_id
    for i in keyed:
        ids[i] = yield from insert_one(schema, batch[i])
    return [job_id for job_id in ids if job_id is not None]


def _insert_batch(schema: str, batch: Sequence[dict[str, Any]]) -> Flow[list[int]]:
    parents = sorted({parent for params in batch for parent in params["depends_on"] or ()})
    if parents:
        yield query("job_lock_parents", schema), {"parents": parents}
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
        "on_parent_failure",
    )
    arrays = {column: [params[column] for params in batch] for column in columns}
    arrays["depends_on"] = [_array_literal(params["depends_on"]) for params in batch]
    inserted = yield query("job_insert_many", schema), arrays
    new_ids = iter(sorted(int(row["id"]) for row in inserted))
    inserted_keys = {(row["queue"], row["key"]) for row in inserted if row["key"] is not None}

    ids: list[int | None] = []
    blocked: list[int] = []
    seen: set[tuple[str, str]] = set()
    for params in batch:
        pair = (params["queue"], params["key"])
        if params["key"] is None or (pair in inserted_keys and pair not in seen):
            ids.append(next(new_ids))
            seen.add(pair)
            if params["depends_on"]:
                blocked.append(ids[-1])  # type: ignore[arg-type]
        else:
            ids.append(None)  # held by a live job: looked up below
    if blocked:
        yield query("job_settle", schema), {"ids": blocked}

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


def insert_workflow(schema: str, nodes: Sequence[Node], batch: Sequence[dict[str, Any]]) -> Flow[list[int]]:
    """Insert a flattened workflow layer by layer (a layer's parents are all in earlier
    layers); returns the ids in node order. The caller runs it in one transaction."""
    ids: list[int] = [0] * len(nodes)
    for depth in sorted({node.depth for node in nodes}):
        layer = [i for i, node in enumerate(nodes) if node.depth == depth]
        rows = []
        for i in layer:
            own = [parent for parent in nodes[i].spec.depends_on or ()]
            parents = own + [ids[p] for p in nodes[i].parents if ids[p] not in own]
            rows.append({**batch[i], "depends_on": parents or None})
        layer_ids = yield from insert_many(schema, rows)
        for i, job_id in zip(layer, layer_ids, strict=True):
            ids[i] = job_id
    return ids


def _array_literal(ids: list[int] | None) -> str | None:
    return None if ids is None else "{" + ",".join(str(i) for i in ids) + "}"


#: SQLSTATE of the refusals of pgq.admit() and pgq.admit_group() (max_pending or
#: group_max_pending reached, on_full "reject").
QUEUE_FULL_STATE = "PGQ01"
#: SQLSTATE of pgq.lock_parents()'s refusal (depends_on names no job).
NO_PARENT_STATE = "PGQ02"


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
    if getattr(error, "sqlstate", None) == NO_PARENT_STATE:
        return InvalidJob(_message(error))
    return None


def _message(error: BaseException) -> str:
    diag = getattr(error, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(error)).strip()
    hint = getattr(diag, "message_hint", None)
    return f"{message} ({hint})" if hint else message


def drive(flow: Flow[T], execute: Callable[[str, dict[str, Any]], list[Row]]) -> T:
    """Run ``flow`` with a synchronous ``execute(sql, params) -> rows``."""
    try:
        sql, params = next(flow)
        while True:
            sql, params = flow.send(execute(sql, params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception as exc:
        error = translated(exc)
        if error is None:
            raise
        raise error from None


async def drive_async(flow: Flow[T], execute: Callable[[str, dict[str, Any]], Awaitable[list[Row]]]) -> T:
    """Run ``flow`` with an async ``execute(sql, params) -> rows``."""
    try:
        sql, params = next(flow)
        while True:
            sql, params = flow.send(await execute(sql, params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception as exc:
        error = translated(exc)
        if error is None:
            raise
        raise error from None
