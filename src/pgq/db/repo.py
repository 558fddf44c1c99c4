"""Typed calls of the worker's named queries.

The hot ones (claims, finishes, and what a claim round asks besides) run on
a :class:`~pgq.db.session.Session` the worker keeps for them; the others on a
pooled async connection.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgq.context import JobContext
from pgq.db import store
from pgq.db.connection import Row, run_async
from pgq.db.queries import query
from pgq.db.session import Session
from pgq.job import Job, claimed_job_maker

AsyncConn = psycopg.AsyncConnection[Row]


async def _rows(conn: AsyncConn, name: str, schema: str, params: dict[str, Any]) -> list[Row]:
    return await run_async(conn, query(name, schema), params)


#: What the claim statements return, in this order (job_claim's RETURNING list).
CLAIM_COLUMNS = (
    "id",
    "queue",
    "task",
    "args",
    "priority",
    "attempts",
    "max_attempts",
    "run_at",
    "created_at",
    "started_at",
    "key",
    "group_key",
    "timeout",
    "backoff",
    "depends_on",
    "on_parent_failure",
    "errors",
    "snoozes",
    "tags",
    "meta",
)


class ClaimedRows:
    """A psycopg row factory that makes a :class:`Job` held by ``worker_id`` of each
    claimed row, and keeps the row's ``next_wait`` column (job_claim's last) aside.
    A row without a task is an outcome the fence refused (job_claim_finishing): its
    id goes to :attr:`refused` and the row makes no job (None)."""

    def __init__(self, worker_id: uuid.UUID, with_next_wait: bool) -> None:
        self.make = _claimed_maker(worker_id)
        self.width = len(CLAIM_COLUMNS) + with_next_wait
        self.with_next_wait = with_next_wait
        #: Seconds until the next delayed job, when the claim found fewer than it asked for.
        self.next_wait: float | None = None
        #: The ids of the outcomes a finishing claim's fence refused.
        self.refused: list[int] = []

    def __call__(self, cursor: Any) -> Callable[[Sequence[Any]], Job | None]:
        result = cursor.pgresult
        if result is not None and result.nfields != self.width:
            names = [column.name for column in cursor.description or ()]
            raise RuntimeError(f"a claim returned columns {names}, expected {list(CLAIM_COLUMNS)}")
        return self._row

    def _row(self, values: Sequence[Any]) -> Job | None:
        if values[2] is None:
            self.refused.append(values[0])
            return None
        if self.with_next_wait:
            self.next_wait = values[-1]
        return self.make(values)


@functools.lru_cache(maxsize=8)
def _claimed_maker(worker_id: uuid.UUID) -> Callable[[Sequence[Any]], Job]:
    return claimed_job_maker(CLAIM_COLUMNS, worker_id)


def _claim_order(made: list[Job | None], rows: ClaimedRows) -> list[Job]:
    # The rows of refused outcomes made no job.
    jobs: list[Job] = [job for job in made if job is not None] if rows.refused else made  # type: ignore[assignment]
    # RETURNING gives rows in no particular order: start them best first.
    if len(jobs) > 1:
        jobs.sort(key=lambda job: (-job.priority, job.run_at, job.id))
    return jobs


async def _claimed(target: Session | AsyncConn, sql: str, params: Mapping[str, Any], rows: ClaimedRows) -> list[Job]:
    if isinstance(target, Session):
        return _claim_order(await target.fetch(sql, params, rows), rows)
    async with target.cursor(row_factory=rows) as cursor:
        await cursor.execute(sql, params)
        return _claim_order(await cursor.fetchall(), rows)


async def claim(
    target: Session | AsyncConn, schema: str, worker_id: uuid.UUID, queues: Sequence[str], limit: int
) -> tuple[list[Job], float | None]:
    """Claim up to ``limit`` ready jobs of ``queues``; with them, when they are fewer
    than ``limit``, the seconds until the next delayed job is due (None: none is)."""
    params = {"worker_id": worker_id, "queues": list(queues), "limit": limit}
    rows = ClaimedRows(worker_id, with_next_wait=True)
    jobs = await _claimed(target, query("job_claim", schema), params, rows)
    return jobs, _wait(rows.next_wait)


async def claim_finishing(
    session: Session, schema: str, worker_id: uuid.UUID, queues: Sequence[str], limit: int, finished: Sequence[Job]
) -> tuple[list[Job], float | None, set[int]]:
    """:func:`claim`, after writing ``finished`` (jobs of ``worker_id`` that completed,
    with no result) in the same transaction; also returns the ids of those accepted
    (the others were refused by the fence). Nothing is written if it raises."""
    params: store.JobClaimFinishing = {
        **_carried(finished),
        "worker_id": worker_id,
        "queues": list(queues),
        "limit": limit,
    }
    rows = ClaimedRows(worker_id, with_next_wait=True)
    jobs = await _claimed(session, store.job_claim_finishing.sql(schema), params, rows)
    accepted = {job.id for job in finished}.difference(rows.refused)
    return jobs, _wait(rows.next_wait), accepted


def _wait(seconds: Any) -> float | None:
    """A wait the database computed, in seconds (never negative), or None: none is due."""
    return None if seconds is None else max(0.0, float(seconds))


def _carried(finished: Sequence[Job]) -> store.CarriedCompletions:
    """The plain completions a claim writes first: ids, queues and attempts, as array text."""
    ids, queues, attempts = _completions_text(
        [job.id for job in finished], [job.queue for job in finished], [job.attempts for job in finished]
    )
    return {"done_id": ids, "done_queue": queues, "done_attempt": attempts}


def _completions_text(ids: Sequence[int], queues: Sequence[str], attempts: Sequence[int]) -> tuple[str, str, str]:
    return _array_text(ids), _array_text([f'"{queue}"' for queue in queues]), _array_text(attempts)


def _array_text(items: Sequence[object]) -> str:
    """A PostgreSQL array literal of ints or of double-quoted names (a queue name
    holds no quote, backslash or brace: its domain's rule, migration 0010)."""
    return "{" + ",".join(map(str, items)) + "}"


async def claim_limited(session: Session, schema: str, worker_id: uuid.UUID, queue: str, limit: int) -> list[Job]:
    """Claim up to ``limit`` jobs of one queue with limits (docs/flow-control.md)."""
    params: store.JobClaimLimited = {"worker_id": worker_id, "queue": queue, "limit": limit}
    return await _claimed(session, store.job_claim_limited.sql(schema), params, ClaimedRows(worker_id, False))


async def claim_limited_finishing(
    session: Session, schema: str, worker_id: uuid.UUID, queue: str, limit: int, finished: Sequence[Job]
) -> tuple[list[Job], set[int]]:
    """:func:`claim_limited`, after writing ``finished`` (jobs of ``worker_id`` that completed,
    with no result) in the same transaction, so that the slots they held are free for it;
    also returns the ids of those accepted. Nothing is written if it raises."""
    params: store.JobClaimLimitedFinishing = {
        **_carried(finished),
        "worker_id": worker_id,
        "queue": queue,
        "limit": limit,
    }
    rows = ClaimedRows(worker_id, with_next_wait=False)
    jobs = await _claimed(session, store.job_claim_limited_finishing.sql(schema), params, rows)
    return jobs, {job.id for job in finished}.difference(rows.refused)


async def claim_batch(
    conn: AsyncConn, schema: str, worker_id: uuid.UUID, queue: str, task: str, limit: int
) -> list[Job]:
    """Claim up to ``limit`` more ready jobs of batch task ``task`` in ``queue`` (docs/batches.md)."""
    params = {"worker_id": worker_id, "queue": queue, "task": task, "limit": limit}
    return [Job.from_row(row) for row in await _rows(conn, "job_claim_batch", schema, params)]


async def read_parents(conn: AsyncConn, schema: str, ctx: JobContext, parents: Sequence[int]) -> None:
    """Fill ``ctx.parent_statuses`` (each parent's final status, ``"missing"`` once
    pruned) and ``ctx.parent_results`` (the results of those that completed)."""
    rows = await _rows(conn, "job_parent_results", schema, {"ids": list(parents)})
    ctx.parent_statuses = {int(row["id"]): row["status"] or "missing" for row in rows}
    ctx.parent_results = {int(row["id"]): row["result"] for row in rows if row["status"] == "completed"}


async def limited_queues(session: Session, schema: str, queues: Sequence[str]) -> dict[str, bool]:
    """The queues with limits, each with whether one of its limits is queue-wide."""
    rows = await session.fetch(query("job_limited_queues", schema), {"queues": list(queues)}, dict_row)
    return {str(row["name"]): bool(row["queue_wide"]) for row in rows}


async def mark_limit_slots(
    session: Session, schema: str, worker_id: uuid.UUID, queues: Sequence[str], held: Sequence[int]
) -> None:
    params = {"worker_id": worker_id, "queues": list(queues), "held": list(held)}
    await session.fetch(query("job_mark_limit_slots", schema), params, dict_row)


async def seconds_to_next_due(session: Session, schema: str, queues: Sequence[str]) -> float | None:
    """Seconds until the first of these limited queues' next rate token and next delayed
    job (None: neither is due), in one round trip."""
    params: store.ByQueues = {"queues": list(queues)}
    rows = await session.fetch(store.job_next_due.sql(schema), params, dict_row)
    return _wait(rows[0]["wait"] if rows else None)


async def seconds_to_next_job(session: Session, schema: str, queues: Sequence[str]) -> float | None:
    rows = await session.fetch(query("job_next_run_at", schema), {"queues": list(queues)}, dict_row)
    wait = rows[0]["wait"] if rows else None
    return _wait(wait)


#: The outcome columns of job_finish_many, in the order :func:`finish_params` takes them.
FINISH_COLUMNS = ("id", "queue", "attempt", "kind", "result", "error", "delay")


def finish_params(worker_id: uuid.UUID, columns: Sequence[list[Any] | None]) -> dict[str, Any]:
    params: dict[str, Any] = dict(zip(FINISH_COLUMNS, columns, strict=True))
    params["worker_id"] = worker_id
    return params


async def finish(session: Session, schema: str, worker_id: uuid.UUID, columns: Sequence[list[Any] | None]) -> set[int]:
    """Write outcomes given as columns (ids, queues, attempts, kinds, results, errors,
    delays; a column of kinds may be None for "all completed", the last three None
    for "all null"); returns the ids accepted (the others were refused by the fence)."""
    if columns[3] is None and columns[4] is None and columns[5] is None:
        # Plain completions (columns() leaves these out): the function that does only that.
        id_text, queue_text, attempt_text = _completions_text(columns[0], columns[1], columns[2])  # type: ignore[arg-type]
        params: store.JobFinishCompleted = {
            "worker_id": worker_id,
            "id": id_text,
            "queue": queue_text,
            "attempt": attempt_text,
        }
        refused = await session.fetch(store.job_finish_completed.sql(schema), params, _first_column)
    else:
        refused = await session.fetch(
            query("job_finish_many", schema), finish_params(worker_id, columns), _first_column
        )
    ids: list[int] = columns[0]  # type: ignore[assignment]
    return set(ids).difference(refused)


async def finish_many(
    conn: AsyncConn, schema: str, worker_id: uuid.UUID, outcomes: Sequence[dict[str, Any]]
) -> set[int]:
    """Write outcomes (dicts with id, queue, attempt, kind, result, error, delay) on a
    pooled connection; returns the ids accepted."""
    columns = [[outcome[column] for outcome in outcomes] for column in FINISH_COLUMNS]
    rows = await _rows(conn, "job_finish_many", schema, finish_params(worker_id, columns))
    return {outcome["id"] for outcome in outcomes} - {int(row["id"]) for row in rows}


def _first_column(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    return _first


def _first(values: Sequence[Any]) -> Any:
    return values[0]


async def write_progress(
    conn: AsyncConn,
    schema: str,
    worker_id: uuid.UUID,
    updates: Sequence[tuple[int, str, int, float | None, str | None]],
) -> None:
    """Progress of running jobs: (id, queue, attempt, fraction, message) each, fenced like a finish."""
    await conn.execute(
        query("job_progress_many", schema),
        {
            "worker_id": worker_id,
            "id": [u[0] for u in updates],
            "queue": [u[1] for u in updates],
            "attempt": [u[2] for u in updates],
            "progress": [u[3] for u in updates],
            "message": [u[4] for u in updates],
        },
    )


async def register_worker(conn: AsyncConn, schema: str, **fields: Any) -> None:
    await conn.execute(query("worker_register", schema), fields)


async def heartbeat(
    conn: AsyncConn,
    schema: str,
    worker_id: uuid.UUID,
    status: str,
    running: Sequence[int],
    utilization: tuple[float, dict[str, float]] | None = None,
) -> tuple[str | None, list[int]]:
    params = {
        "id": worker_id,
        "status": status,
        "running": list(running),
        "utilization": utilization[0] if utilization else None,
        "busy_slots": Jsonb(utilization[1]) if utilization else None,
    }
    rows = await _rows(conn, "worker_heartbeat", schema, params)
    row = rows[0]
    return row["status"], [int(i) for i in row["cancel_ids"] or []]


async def return_orphans(
    conn: AsyncConn, schema: str, worker_id: uuid.UUID, owned: Sequence[int], grace: float
) -> list[int]:
    rows = await _rows(
        conn, "job_return_orphans", schema, {"worker_id": worker_id, "owned": list(owned), "grace": grace}
    )
    return [int(row["id"]) for row in rows]


async def stop_worker(conn: AsyncConn, schema: str, worker_id: uuid.UUID, released: bool) -> None:
    """Mark the worker stopped; ``released``: it holds no job in the database."""
    await conn.execute(query("worker_stop", schema), {"id": worker_id, "released": released})
