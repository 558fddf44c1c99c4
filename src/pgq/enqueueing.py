"""Checking jobs before they are written, and the statements that write them.

The statements are written once as *flows*: generators that yield
``(sql, params)`` and receive the rows back. :func:`drive` runs a flow on a
sync connection and :func:`drive_async` on an async one, so the sync and async
enqueue paths cannot drift apart.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pgq.db import store
from pgq.db.connection import CopyIn
from pgq.db.flows import Flow
from pgq.durations import to_seconds
from pgq.errors import ConfigurationError, InvalidJob, PgqError, QueueFull, UnknownTask
from pgq.job import JobSpec
from pgq.payload import encode_args
from pgq.queue_names import check_queue_name
from pgq.task import Task
from pgq.workflow import Node

#: Queue names: ASCII letters, digits, ``_ . : -``, 1 to 128 of them. The same rule is
#: the constraint ``jobs_queue_name_rule`` (migration 0007; the domain ``queue_name``'s
#: since 0010), which holds for every path that writes a job (this module, COPY,
#: ``pgq.enqueue()`` in SQL, a hand-written insert); tests/test_enqueue_rules.py runs
#: the same names through both.
INT32 = 2**31 - 1
#: The most attempts a job is enqueued with (CHECK ``jobs_max_attempts_limit``; a retry
#: of a job that used them all may go one past it).
MAX_ATTEMPTS = 1000


def check_queue(queue: Any) -> str:
    return check_queue_name(queue, InvalidJob)


def _check_task_name(name: Any, task: Task[Any, Any] | None, strict: bool) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidJob(f"task must be a non-empty name, got {name!r}")
    if len(name) > 255:
        raise InvalidJob(f"task name is {len(name)} characters, the limit is 255")
    if task is None and strict:
        raise UnknownTask(
            f"unknown task {name!r} (strict=True): register it with @app.task, "
            "or drop strict to enqueue for another process's task"
        )


class PreparedJob(store.JobInsertFn):
    """A job the enqueue rules accepted (:func:`prepare`): its insert parameters, and the
    periods of its key's rules."""

    unique_for: float | None
    debounce: float | None


def prepare(spec: JobSpec, task: Task[Any, Any] | None, max_payload_bytes: int, strict: bool) -> PreparedJob:
    """The insert parameters for ``spec``, or :class:`InvalidJob` saying what is wrong.

    ``task`` is the registered task of that name, if any: its defaults fill
    the options the spec leaves out, and its signature checks the args.
    """
    _check_task_name(spec.task, task, strict)
    name = task.name if task is not None else spec.task  # a former name (aliases=) is stored as the current one
    encoded = (
        task.encode(spec.args, max_payload_bytes)
        if task is not None
        else encode_args(spec.args, max_payload_bytes, name)
    )
    args_json = encoded.decode()

    queue = check_queue(spec.queue if spec.queue is not None else (task.queue if task else None) or "default")
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
    if group is not None:
        _check_group(group)

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
    tags = check_tags(spec.tags)
    meta = None if spec.meta is None else _encode_meta(spec.meta, max_payload_bytes)
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
        "tags": tags,
        "meta": meta,
    }


#: Tags per job, and characters per tag (the rule of the domain job_tags, migration 0014).
MAX_TAGS = 20
MAX_TAG_LENGTH = 100
_TAG_BREAKS = re.compile(r"[\s,\x00-\x1f\x7f]")


def check_tags(tags: Any) -> list[str] | None:
    """``tags`` as stored: a list of distinct tags in the order given, or None for none."""
    if tags is None:
        return None
    if isinstance(tags, str) or not isinstance(tags, list | tuple | set | frozenset):
        raise InvalidJob(f"tags must be a list of strings, such as ['tenant:42', 'import'], got {tags!r}")
    kept = list(dict.fromkeys(tags))
    for tag in kept:
        if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH or _TAG_BREAKS.search(tag):
            raise InvalidJob(
                f"each tag must be a string of 1 to {MAX_TAG_LENGTH} characters without spaces or commas, got {tag!r}"
            )
    if len(kept) > MAX_TAGS:
        raise InvalidJob(f"a job has at most {MAX_TAGS} tags, got {len(kept)}")
    return kept or None


def _encode_meta(meta: Any, max_payload_bytes: int) -> str:
    if not isinstance(meta, dict):
        raise InvalidJob(f"meta must be a dict (a JSON object), got {type(meta).__name__}")
    try:
        data = encode_args(meta, max_payload_bytes)
    except InvalidJob as exc:
        # The same rules as args (JSON, size, depth), told of meta.
        raise type(exc)(str(exc).replace("args[", "meta[").replace("args", "meta", 1)) from None
    return data.decode()


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
    seconds = _seconds(name, value)
    if not 0 < seconds <= MAX_KEY_PERIOD:
        raise InvalidJob(f"{name} must be more than 0 s and at most ten years, got {value!r}")
    return seconds


def _seconds(name: str, value: float | timedelta) -> float:
    seconds = to_seconds(value)
    if seconds is None:
        raise InvalidJob(f"{name} must be seconds (a number) or a timedelta, got {value!r}")
    return seconds


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidJob(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidJob(f"{name} must be between {low} and {high}, got {value}")


def _delay_seconds(delay: float | timedelta | None) -> float | None:
    if delay is None:
        return None
    seconds = _seconds("delay", delay)
    if seconds < 0 or seconds != seconds:
        raise InvalidJob(f"delay must be zero or positive, got {delay!r}; use run_at for a fixed time")
    return seconds


def needs_transaction(batch: Sequence[PreparedJob]) -> bool:
    """Whether these jobs' statements hold locks from one statement to the next (the
    parents of a job, the row of a unique_for or debounce key), so that on pgq's own
    pool (autocommit) they must share one transaction."""
    return any(p["depends_on"] or _keyed(p) for p in batch)


def _keyed(params: PreparedJob) -> bool:
    """Whether the job's key is decided on its row in job_keys (unique_for, debounce)."""
    return params["unique_for"] is not None or params["debounce"] is not None


def is_plain(params: PreparedJob) -> bool:
    """A job written by one plain insert: no key, no parents (nothing to decide against other rows)."""
    return params["key"] is None and not params["depends_on"] and not _keyed(params)


def insert_one(schema: str, params: PreparedJob) -> Flow[int]:
    if _keyed(params):
        return (yield from _insert_keyed(schema, params))
    if params["key"] is None and not params["depends_on"]:
        rows = yield store.job_insert_plain(schema, params)
    else:
        # A key or parents: the SQL function that pgq.enqueue() uses too decides (admission,
        # locking the parents, settling a key holder that commits meanwhile), so the rules
        # of both paths are one text (migration 0007's insert_job).
        rows = yield store.job_insert_fn(schema, params)
    return int(rows[0]["id"])


def _insert_keyed(schema: str, params: PreparedJob) -> Flow[int]:
    """An enqueue with ``unique_for`` or ``debounce``: enqueuers of one key take turns on
    the key's row in ``job_keys`` (a row lock, held to the end of their transaction), and
    each decides after the previous one committed."""
    key = params["key"]
    assert key is not None, "prepare() refuses unique_for and debounce without a key"
    where: store.ByKeyAndQueue = {"queue": params["queue"], "key": key}
    taken = (yield store.job_key_take(schema, where))[0]
    if params["debounce"] is not None:
        rows = yield store.job_key_debounce(schema, {**where, "args": params["args"], "delay": params["debounce"]})
        pushed = [row for row in rows if row["outcome"] == "pushed"]
        if pushed:
            return int(pushed[0]["id"])
    else:
        rows = yield store.job_key_holder(schema, where)
        if rows:
            return int(rows[0]["id"])
        if taken["held"] and taken["job_id"] is not None:
            return int(taken["job_id"])
    job_id = yield from insert_one(schema, {**params, "unique_for": None, "debounce": None})
    yield store.job_key_record(schema, {**where, "job_id": job_id, "unique_for": params["unique_for"]})
    return job_id


def insert_many(schema: str, batch: Sequence[PreparedJob]) -> Flow[list[int]]:
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


# ------------------------------------------------------------------ batches

#: Columns a COPY of plain jobs writes, in the order of :func:`_copy_row`'s fields: the
#: two that change from job to job first, then those that jobs of one task and options share.
COPY_COLUMNS = ("id", "args", "task", "queue", "priority", "max_attempts", "timeout", "backoff", "group_key")
# Binary COPY framing (PostgreSQL's "Binary Format" of COPY): the signature, flags and
# header extension length, and the trailer.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
# Per row: the field count, the id as an int8 field, the length of the args field.
_ROW_START = struct.Struct(">hiqi").pack
_NULL = struct.pack(">i", -1)
# jsonb's binary format is a version byte, then the JSON text.
_JSONB_VERSION = b"\x01"


@dataclass(frozen=True)
class Options:
    """What the jobs of one task share in a batch, and those fields as COPY encodes them."""

    task: str
    queue: str
    priority: int
    max_attempts: int
    timeout: timedelta | None
    backoff: float | None
    group_key: str | None
    encoded: bytes

    @classmethod
    def of(
        cls,
        task: str,
        queue: str,
        priority: int,
        max_attempts: int,
        timeout: timedelta | None,
        backoff: float | None,
        group_key: str | None,
    ) -> Options:
        fields = [_text(task), _text(queue), struct.pack(">ii", 4, priority), struct.pack(">ii", 4, max_attempts)]
        if timeout is None:
            fields.append(_NULL)
        else:  # interval: microseconds, days, months
            micros = timeout.seconds * 1_000_000 + timeout.microseconds
            fields.append(struct.pack(">iqii", 16, micros, timeout.days, 0))
        fields.append(_NULL if backoff is None else struct.pack(">id", 8, backoff))
        fields.append(_NULL if group_key is None else _text(group_key))
        return cls(task, queue, priority, max_attempts, timeout, backoff, group_key, b"".join(fields))

    def params(self, args: bytes) -> PreparedJob:
        """One job of these options as insert parameters (the path without COPY)."""
        return {
            "task": self.task,
            "args": args.decode(),
            "queue": self.queue,
            "priority": self.priority,
            "run_at": None,
            "delay": None,
            "key": None,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "backoff": self.backoff,
            "group_key": self.group_key,
            "depends_on": None,
            "on_parent_failure": None,
            "unique_for": None,
            "debounce": None,
            "tags": None,
            "meta": None,
        }


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">i", len(data)) + data


@dataclass
class Batch:
    """A checked ``enqueue_many``: plain jobs due now as (position, args JSON, options),
    every other job as insert parameters, each with its position in the call."""

    size: int
    rows: list[tuple[int, bytes, Options]]
    others: list[tuple[int, PreparedJob]]
    #: The meta of the rows, as stored: the trace context (pgq.telemetry); ``others`` have it in theirs.
    trace_meta: str | None = None

    def all_params(self) -> list[PreparedJob]:
        """Every job as insert parameters, in call order (the path without COPY)."""
        jobs = [(position, self.row_params(args, options)) for position, args, options in self.rows] + self.others
        return [params for _, params in sorted(jobs, key=lambda job: job[0])]

    def row_params(self, args: bytes, options: Options) -> PreparedJob:
        """A row's insert parameters, its trace context included."""
        params = options.params(args)
        if self.trace_meta is not None:
            params["meta"] = self.trace_meta
        return params


def prepare_batch(
    specs: Iterable[JobSpec], tasks: dict[str, Task[Any, Any]], max_payload_bytes: int, strict: bool
) -> Batch:
    """Check every spec of an ``enqueue_many`` before anything is written: one bad spec
    rejects the batch, with its position in the message.

    This is the enqueue path's hot loop (the server writes a job by COPY in about
    5 µs), so a spec with only a task, args and the options that COPY writes
    (queue, priority, max_attempts, group) takes a short path: a task's defaults are
    resolved, checked and encoded once per call, and so is each other combination of
    options; every other spec goes through :func:`prepare`."""
    rows: list[tuple[int, bytes, Options]] = []
    others: list[tuple[int, PreparedJob]] = []
    defaults: dict[str, tuple[Task[Any, Any] | None, Options]] = {}
    combinations: dict[tuple[Any, ...], Options] = {}
    size = 0
    for index, spec in enumerate(specs):
        size += 1
        if type(spec) is not JobSpec and not isinstance(spec, JobSpec):
            raise TypeError(f"enqueue_many takes pgq.JobSpec items; item {index} is {spec!r}")
        try:
            if (
                spec.run_at is None
                and spec.delay is None
                and spec.key is None
                and spec.depends_on is None
                and spec.on_parent_failure is None
                and spec.unique_for is None
                and spec.debounce is None
                and spec.tags is None
                and spec.meta is None
            ):
                name = spec.task
                resolved = defaults.get(name) if type(name) is str else None
                if resolved is None:
                    resolved = _task_defaults(name, tasks, strict)
                    defaults[name] = resolved
                task, options = resolved
                data = (
                    task.encode(spec.args, max_payload_bytes)
                    if task is not None
                    else encode_args(spec.args, max_payload_bytes, name)
                )
                if (
                    spec.queue is not None
                    or spec.priority is not None
                    or spec.max_attempts is not None
                    or spec.group is not None
                ):
                    options = _options_of(spec, options, combinations)
                rows.append((index, data, options))
            else:
                others.append((index, prepare(spec, tasks.get(spec.task), max_payload_bytes, strict)))
        except PgqError as exc:
            raise type(exc)(f"job {index} of the batch: {exc}") from None
    return Batch(size, rows, others)


def _task_defaults(name: Any, tasks: dict[str, Task[Any, Any]], strict: bool) -> tuple[Task[Any, Any] | None, Options]:
    task = tasks.get(name) if isinstance(name, str) else None
    _check_task_name(name, task, strict)
    if task is None:
        return None, Options.of(name, "default", 0, 3, None, None, None)
    if task.lane is not None:
        raise ConfigurationError(
            f"task {task.name!r} is durable=False; enqueue_many writes jobs to the database: enqueue "
            "fast-lane jobs one by one (task.enqueue)"
        )
    # Checked when the task was registered; checked again here, once per call, so that a
    # task changed since then cannot write a row that the table's rules refuse.
    queue = check_queue(task.queue or "default")
    priority = task.priority or 0
    _check_int("priority", priority, -INT32, INT32)
    max_attempts = task.max_attempts if task.max_attempts is not None else 3
    _check_int("max_attempts", max_attempts, 1, MAX_ATTEMPTS)
    timeout = timedelta(seconds=task.timeout) if task.timeout else None
    backoff = float(task.backoff) if isinstance(task.backoff, int | float) else None
    return task, Options.of(task.name, queue, priority, max_attempts, timeout, backoff, None)


def _options_of(spec: JobSpec, base: Options, combinations: dict[tuple[Any, ...], Options]) -> Options:
    """``base`` with the options ``spec`` sets itself, checked and encoded once per combination."""
    queue = base.queue if spec.queue is None else spec.queue
    priority = base.priority if spec.priority is None else spec.priority
    max_attempts = base.max_attempts if spec.max_attempts is None else spec.max_attempts
    group = spec.group
    try:
        found = combinations.get((base.task, queue, priority, max_attempts, group))
    except TypeError:  # an unhashable value: checked (and refused) below
        found = None
    if found is not None:
        return found
    check_queue(queue)
    _check_int("priority", priority, -INT32, INT32)
    _check_int("max_attempts", max_attempts, 1, MAX_ATTEMPTS)
    if group is not None:
        _check_group(group)
    options = Options.of(base.task, queue, priority, max_attempts, base.timeout, base.backoff, group)
    combinations[(base.task, queue, priority, max_attempts, group)] = options
    return options


def _check_group(group: Any) -> None:
    if not isinstance(group, str) or not group or len(group) > 255:
        raise InvalidJob(f"group must be a non-empty string of at most 255 characters, got {group!r}")


def copy_payload(ids: Sequence[int], rows: Sequence[tuple[int, bytes, Options]], meta: bytes | None = None) -> bytes:
    """The binary COPY data of ``rows`` with these ids: 0.4 µs a row, where psycopg's
    ``write_row`` took 1.5 (it formats each field through its adapters). ``meta``
    (JSON, the same for every row: the trace context) is a tenth field, for
    ``job_copy_traced``."""
    if meta is None:
        fields, tail = 9, b""
    else:
        fields, tail = 10, struct.pack(">i", len(meta) + 1) + _JSONB_VERSION + meta
    return b"".join(
        [
            _COPY_HEADER,
            *[
                _ROW_START(fields, 8, job_id, len(args) + 1) + _JSONB_VERSION + args + options.encoded + tail
                for job_id, (_, args, options) in zip(ids, rows, strict=True)
            ],
            _COPY_TRAILER,
        ]
    )


def insert_batch(schema: str, batch: Batch, use_copy: bool, in_transaction: bool) -> Flow[list[int]]:
    """Write a checked batch; returns the ids in call order.

    Plain jobs due now go by binary COPY, with ids drawn from the jobs' sequence
    beforehand (COPY returns nothing). Those of queues with ``max_pending`` or
    ``group_max_pending`` go through the insert statement instead, which admits them
    (the probe that finds those queues is in the statement that draws the ids), as
    do jobs with a key, parents or a run time, and every job when the connection
    cannot COPY (a SQLAlchemy connection over another driver). COPY fires the
    statement-level insert trigger, so the workers are notified as for an insert.

    Outside a transaction (``in_transaction`` False: pgq's autocommit pool with only
    plain jobs, which then spares a BEGIN and a COMMIT) the batch must be one
    statement to be all or nothing: if some of its queues admit, every job goes
    through the insert statement."""
    if not use_copy or not batch.rows:
        return (yield from insert_many(schema, batch.all_params()))
    ids: list[int] = [0] * batch.size
    rows = batch.rows
    others = batch.others
    queues = sorted({options.queue for options in {id(o): o for _, _, o in rows}.values()})
    sequence = store.jobs_sequence(schema)
    (info,) = yield store.job_copy_prepare(schema, {"n": len(rows), "queues": queues, "sequence": sequence})
    limited = set(info["limited"] or ())
    if limited and not in_transaction and not others:
        return (yield from insert_many(schema, batch.all_params()))
    if limited:
        admitted = [(i, batch.row_params(args, options)) for i, args, options in rows if options.queue in limited]
        others = others + admitted
        rows = [row for row in rows if row[2].queue not in limited]
    new_ids = info["ids"][: len(rows)]
    if batch.trace_meta is None:
        yield CopyIn(store.job_copy.sql(schema), copy_payload(new_ids, rows)), {}
    else:
        yield CopyIn(store.job_copy_traced.sql(schema), copy_payload(new_ids, rows, batch.trace_meta.encode())), {}
    for (position, _, _), job_id in zip(rows, new_ids, strict=True):
        ids[position] = job_id
    if others:
        others.sort(key=lambda job: job[0])
        other_ids = yield from insert_many(schema, [params for _, params in others])
        for (position, _), job_id in zip(others, other_ids, strict=True):
            ids[position] = job_id
    return ids


def _insert_batch(schema: str, batch: Sequence[PreparedJob]) -> Flow[list[int]]:
    parents = sorted({parent for params in batch for parent in params["depends_on"] or ()})
    if parents:
        yield store.job_lock_parents(schema, {"parents": parents})
    arrays: store.JobInsertMany = {
        "task": [params["task"] for params in batch],
        "args": [params["args"] for params in batch],
        "queue": [params["queue"] for params in batch],
        "priority": [params["priority"] for params in batch],
        "run_at": [params["run_at"] for params in batch],
        "delay": [params["delay"] for params in batch],
        "key": [params["key"] for params in batch],
        "max_attempts": [params["max_attempts"] for params in batch],
        "timeout": [params["timeout"] for params in batch],
        "backoff": [params["backoff"] for params in batch],
        "group_key": [params["group_key"] for params in batch],
        "depends_on": [_array_literal(params["depends_on"]) for params in batch],
        "on_parent_failure": [params["on_parent_failure"] for params in batch],
        "tags": [_tags_literal(params["tags"]) for params in batch],
        "meta": [params["meta"] for params in batch],
    }
    inserted = yield store.job_insert_many(schema, arrays)
    new_ids = iter(sorted(int(row["id"]) for row in inserted))
    inserted_keys = {(row["queue"], row["key"]) for row in inserted if row["key"] is not None}

    ids: list[int | None] = []
    blocked: list[int] = []
    seen: set[tuple[str, str | None]] = set()
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
        yield store.job_settle(schema, {"ids": blocked})

    missing = [i for i, job_id in enumerate(ids) if job_id is None]
    if missing:
        # A job without a key always has an id by now.
        pairs = sorted({(batch[i]["queue"], batch[i]["key"] or "") for i in missing})
        rows = yield store.job_ids_by_key(schema, {"queue": [q for q, _ in pairs], "key": [k for _, k in pairs]})
        holders = {(row["queue"], row["key"]): int(row["id"]) for row in rows}
        for i in missing:
            pair = (batch[i]["queue"], batch[i]["key"] or "")
            if pair not in holders:
                # The holder finished meanwhile, or committed after our snapshot.
                holders[pair] = yield from insert_one(schema, batch[i])
            ids[i] = holders[pair]
    return [job_id for job_id in ids if job_id is not None]


def insert_workflow(schema: str, nodes: Sequence[Node], batch: Sequence[PreparedJob]) -> Flow[list[int]]:
    """Insert a flattened workflow layer by layer (a layer's parents are all in earlier
    layers); returns the ids in node order. The caller runs it in one transaction."""
    ids: list[int] = [0] * len(nodes)
    for depth in sorted({node.depth for node in nodes}):
        layer = [i for i, node in enumerate(nodes) if node.depth == depth]
        rows: list[PreparedJob] = []
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


def _tags_literal(tags: list[str] | None) -> str | None:
    # One text array literal per job (arrays of arrays cannot be ragged); a tag holds no
    # space or comma, but may hold a quote or a backslash.
    if tags is None:
        return None
    return "{" + ",".join('"' + tag.replace("\\", "\\\\").replace('"', '\\"') + '"' for tag in tags) + "}"


def rejected_count(full: QueueFull, batch: Sequence[PreparedJob]) -> store.OpsCountRejected | None:
    """The parameters of ``ops_count_rejected`` for the jobs of ``batch`` that ``full``
    refused (those of its queue, and of its group when a group limit refused them)."""
    if full.queue is None:
        return None
    refused = [p for p in batch if p["queue"] == full.queue and (full.group is None or p["group_key"] == full.group)]
    return {"name": full.queue, "n": len(refused)}
