"""Rows a test writes straight into pgq's tables, to set up a state no process need reach.

Registered workers are the common case: a worker row makes the sweeper, explain,
the dashboard and the flow-control claims see a live (or dead, or stale) worker
without starting one. Tests that need a worker that runs jobs start a real one
(tests/processes.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any


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
