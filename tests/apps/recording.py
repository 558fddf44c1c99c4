"""Tasks for tests that start real `pgq worker` processes.

Handlers record each run in a `runs` table (job id, attempt, pid, start and
end by the database clock), so tests count runs, duplicates and overlaps
from rows, never from timing. PGQ_DATABASE_URL names the test's database.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from typing import Any

from psycopg_pool import ConnectionPool

import pgq

app = pgq.App()

_pool: ConnectionPool[Any] | None = None
_pool_lock = threading.Lock()

RUNS_TABLE = """
create table if not exists runs (
    job_id bigint not null,
    attempt int not null,
    pid int not null,
    -- the worker's pid when the job ran in a child process of it (a suspect), else its parent's
    ppid int,
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz
)
"""


def pool() -> ConnectionPool[Any]:
    global _pool
    with _pool_lock:  # handler threads race here on the first jobs
        if _pool is None:
            _pool = ConnectionPool(
                # RUNS_DATABASE_URL lets fault tests keep this bookkeeping off a faulty path.
                os.environ.get("RUNS_DATABASE_URL") or os.environ["PGQ_DATABASE_URL"],
                min_size=1,
                max_size=20,
                kwargs={"autocommit": True},
                open=False,
            )
            _pool.open(wait=True)
    return _pool


def record_start(ctx: pgq.JobContext) -> None:
    with pool().connection() as conn:
        conn.execute(
            "insert into runs (job_id, attempt, pid, ppid) values (%s, %s, %s, %s)",
            [ctx.job.id, ctx.attempt, os.getpid(), os.getppid()],
        )


def record_end(ctx: pgq.JobContext) -> None:
    with pool().connection() as conn:
        conn.execute(
            "update runs set finished_at = clock_timestamp() where job_id = %s and attempt = %s and pid = %s",
            [ctx.job.id, ctx.attempt, os.getpid()],
        )


@app.task(pass_context=True)
def record(ctx: pgq.JobContext, n: int = 0) -> int:
    record_start(ctx)
    record_end(ctx)
    return n


@app.task(pass_context=True, max_attempts=3)
def sleepy(ctx: pgq.JobContext, seconds: float) -> str:
    """Sleeps, but stops early when cancelled or timed out (it polls ctx.cancelled)."""
    record_start(ctx)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.02)
    record_end(ctx)
    return "slept"


@app.task(pass_context=True, max_attempts=3)
async def async_sleepy(ctx: pgq.JobContext, seconds: float) -> str:
    await asyncio.to_thread(record_start, ctx)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(record_end, ctx)
    return "slept"


@app.task(pass_context=True, max_attempts=3)
def stubborn(ctx: pgq.JobContext, seconds: float) -> str:
    """Ignores ctx.cancelled: a handler a shutdown cannot stop."""
    record_start(ctx)
    time.sleep(seconds)
    record_end(ctx)
    return "done"


@app.task(pass_context=True, max_attempts=2)
def poison(ctx: pgq.JobContext, kind: str) -> None:
    """Kills the process that runs it, in one of several ways."""
    import ctypes
    import signal as signals

    record_start(ctx)
    if kind == "exit":
        os._exit(7)
    elif kind == "kill":
        os.kill(os.getpid(), signals.SIGKILL)
    elif kind == "segfault":
        ctypes.string_at(0)
    elif kind == "memory":
        import resource

        # A memory bomb, kept to this process: past the limit the allocation fails.
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, resource.RLIM_INFINITY))
        hoard = [bytearray(256 * 1024**2) for _ in range(16)]
        del hoard


@app.task(queue="bulk", batch_size=10, batch_wait=0.2)
def record_batch(jobs: list[pgq.Job]) -> list[dict[str, str]]:
    """A batch task: records each job's run, and returns the call's id as every job's result."""
    call = uuid.uuid4().hex
    with pool().connection() as conn:
        for job in jobs:
            conn.execute(
                "insert into runs (job_id, attempt, pid) values (%s, %s, %s)", [job.id, job.attempts, os.getpid()]
            )
    return [{"call": call} for _ in jobs]


@app.task(queue="bulk", batch_size=10, batch_wait=120)
async def slow_batch(jobs: list[pgq.Job]) -> list[None]:
    """A batch task whose batch waits two minutes for more jobs unless it fills up."""
    return [None for _ in jobs]


@app.task(transactional=True, max_attempts=3)
def transfer(ctx: pgq.JobContext, seconds: float) -> str:
    """A transactional handler: its effect (a row of `effects`) commits with its completion.
    It records its run outside the transaction (runs), and ignores cancellation."""
    record_start(ctx)
    ctx.connection.execute(
        "insert into effects (job_id, attempt, pid) values (%s, %s, %s)", [ctx.job.id, ctx.attempt, os.getpid()]
    )
    time.sleep(seconds)
    record_end(ctx)
    return "moved"
