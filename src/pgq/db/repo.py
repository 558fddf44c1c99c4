"""Typed calls of the worker's named queries, on an async connection."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from pgq.context import JobContext
from pgq.db.connection import Row, run_async
from pgq.db.queries import query
from pgq.job import Job

AsyncConn = psycopg.AsyncConnection[Row]


async def _rows(conn: AsyncConn, name: str, schema: str, params: dict[str, Any]) -> list[Row]:
    return await run_async(conn, query(name, schema), params)


async def claim(conn: AsyncConn, schema: str, worker_id: uuid.UUID, queues: Sequence[str], limit: int) -> list[Job]:
    rows = await _rows(conn, "job_claim", schema, {"worker_id": worker_id, "queues": list(queues), "limit": limit})
    jobs = [Job.from_row(row) for row in rows]
    jobs.sort(key=lambda job: (-job.priority, job.run_at, job.id))
    return jobs


async def claim_batch(
    conn: AsyncConn, schema: str, worker_id: uuid.UUID, queue: str, task: str, limit: int
) -> list[Job]:
    """Claim up to ``limit`` more ready jobs of batch task ``task`` in ``queue`` (docs/batches.md)."""
    params = {"worker_id": worker_id, "queue": queue, "task": task, "limit": limit}
    return [Job.from_row(row) for row in await _rows(conn, "job_claim_batch", schema, params)]


async def claim_limited(conn: AsyncConn, schema: str, worker_id: uuid.UUID, queue: str, limit: int) -> list[Job]:
    """Claim up to ``limit`` jobs of one queue with limits (docs/flow-control.md)."""
    rows = await _rows(conn, "job_claim_limited", schema, {"worker_id": worker_id, "queue": queue, "limit": limit})
    jobs = [Job.from_row(row) for row in rows]
    jobs.sort(key=lambda job: (-job.priority, job.run_at, job.id))
    return jobs


async def read_parents(conn: AsyncConn, schema: str, ctx: JobContext, parents: Sequence[int]) -> None:
    """Fill ``ctx.parent_statuses`` (each parent's final status, ``"missing"`` once
    pruned) and ``ctx.parent_results`` (the results of those that completed)."""
    rows = await _rows(conn, "job_parent_results", schema, {"ids": list(parents)})
    ctx.parent_statuses = {int(row["id"]): row["status"] or "missing" for row in rows}
    ctx.parent_results = {int(row["id"]): row["result"] for row in rows if row["status"] == "completed"}


async def limited_queues(conn: AsyncConn, schema: str, queues: Sequence[str]) -> set[str]:
    rows = await _rows(conn, "job_limited_queues", schema, {"queues": list(queues)})
    return {str(row["name"]) for row in rows}


async def mark_limit_slots(conn: AsyncConn, schema: str, worker_id: uuid.UUID, queues: Sequence[str]) -> None:
    await conn.execute(query("job_mark_limit_slots", schema), {"worker_id": worker_id, "queues": list(queues)})


async def seconds_to_next_token(conn: AsyncConn, schema: str, queues: Sequence[str]) -> float | None:
    rows = await _rows(conn, "job_next_token", schema, {"queues": list(queues)})
    wait = rows[0]["wait"] if rows else None
    return None if wait is None else max(0.0, float(wait))


async def seconds_to_next_job(conn: AsyncConn, schema: str, queues: Sequence[str]) -> float | None:
    rows = await _rows(conn, "job_next_run_at", schema, {"queues": list(queues)})
    wait = rows[0]["wait"] if rows else None
    return None if wait is None else max(0.0, float(wait))


async def finish_many(
    conn: AsyncConn, schema: str, worker_id: uuid.UUID, outcomes: Sequence[dict[str, Any]]
) -> set[int]:
    """Write outcomes (dicts with id, queue, attempt, kind, result, error, delay); returns the ids accepted."""
    params: dict[str, Any] = {
        column: [outcome[column] for outcome in outcomes]
        for column in ("id", "queue", "attempt", "kind", "result", "error", "delay")
    }
    params["worker_id"] = worker_id
    rows = await _rows(conn, "job_finish_many", schema, params)
    return {int(row["id"]) for row in rows}


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
    conn: AsyncConn, schema: str, worker_id: uuid.UUID, status: str, running: Sequence[int]
) -> tuple[str | None, list[int]]:
    rows = await _rows(conn, "worker_heartbeat", schema, {"id": worker_id, "status": status, "running": list(running)})
    row = rows[0]
    return row["status"], [int(i) for i in row["cancel_ids"] or []]


async def return_orphans(
    conn: AsyncConn, schema: str, worker_id: uuid.UUID, owned: Sequence[int], grace: float
) -> list[int]:
    rows = await _rows(
        conn, "job_return_orphans", schema, {"worker_id": worker_id, "owned": list(owned), "grace": grace}
    )
    return [int(row["id"]) for row in rows]


async def stop_worker(conn: AsyncConn, schema: str, worker_id: uuid.UUID) -> None:
    await conn.execute(query("worker_stop", schema), {"id": worker_id})


async def notify(conn: AsyncConn, channel: str, payload: str = "") -> None:
    await conn.execute("select pg_notify(%s, %s)", [channel, payload])
