"""Rows a test writes straight into pgq's tables, to set up a state no process need reach:
registered workers, and finished jobs in the history.

Registered workers are the common case: a worker row makes the sweeper, explain,
the dashboard and the flow-control claims see a live (or dead, or stale) worker
without starting one. Tests that need a worker that runs jobs start a real one
(tests/processes.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb


def add_worker(
    conn: Any,
    *,
    queues: Sequence[str] = ("default",),
    name: str = "w",
    concurrency: int = 1,
    status: str = "running",
    heartbeat_age: float = 0.0,
    tasks: Sequence[str] | None = None,
    running: Sequence[int] = (),
    worker_id: uuid.UUID | str | None = None,
) -> uuid.UUID:
    """Register a worker as ``pgq worker`` does (host ``h``, pid 1), its last heartbeat
    ``heartbeat_age`` seconds ago; ``tasks`` None is an older worker that knows every task."""
    worker = uuid.UUID(str(worker_id)) if worker_id is not None else uuid.uuid4()
    conn.execute(
        """insert into pgq.workers
               (id, name, host, pid, queues, concurrency, status, last_heartbeat, tasks, running)
           values (%s, %s, 'h', 1, %s, %s, %s, now() - make_interval(secs => %s), %s, %s)""",
        [worker, name, list(queues), concurrency, status, heartbeat_age, tasks, list(running)],
    )
    return worker


def add_history(
    conn: Any,
    count: int = 1,
    *,
    status: str = "completed",
    finished: str | datetime = "now()",
    run: float | None = 1.0,
    wait: float = 0.0,
    queue: str = "default",
    task: str = "t",
    attempts: int = 1,
    max_attempts: int = 3,
    key: str | None = None,
    errors: Any = (),
    result: Any = None,
) -> list[int]:
    """``count`` jobs in ``job_history`` (ids from the jobs' sequence, as pgq's own): finished at
    ``finished`` (a datetime, or an SQL expression such as ``"now() - interval '2 days'"``),
    after running ``run`` seconds (None: never started) and waiting ``wait`` seconds from being
    due. ``errors`` and ``result`` are stored as JSON."""
    at = "%(finished)s::timestamptz" if isinstance(finished, datetime) else f"({finished})"
    rows = conn.execute(
        f"""insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,
                                         run_at, created_at, started_at, finished_at, key, errors, result)
            select nextval(pg_get_serial_sequence('pgq.jobs', 'id')), %(queue)s, %(task)s, '{{}}', 0, %(status)s,
                   %(attempts)s, %(max_attempts)s,
                   f - make_interval(secs => coalesce(%(run)s, 0) + %(wait)s),
                   f - make_interval(secs => coalesce(%(run)s, 0) + %(wait)s),
                   f - make_interval(secs => %(run)s), f, %(key)s, %(errors)s, %(result)s
              from generate_series(1, %(count)s), lateral (select {at} as f) x
            returning id""",
        {
            "queue": queue,
            "task": task,
            "status": status,
            "attempts": attempts,
            "max_attempts": max_attempts,
            "run": run,
            "wait": wait,
            "key": key,
            "errors": Jsonb(list(errors)),
            "result": None if result is None else Jsonb(result),
            "count": count,
            "finished": finished,
        },
    ).fetchall()
    return [int(row["id"]) for row in rows]
