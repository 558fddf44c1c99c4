"""RQ's side of benchmarks/compare.py: the jobs an ``rq worker`` runs, on compare.py's own
redis-server (appendonly everysec). RQ keeps each job's hash and its finished registry entry
(``result_ttl`` 500 s), as it ships."""

from __future__ import annotations

import time

from rq import get_current_job


def noop(i: int = 0) -> None:
    return None


def ping() -> None:
    started = time.monotonic()  # one clock for every process of the machine
    job = get_current_job()
    assert job is not None
    job.connection.hset("starts", job.id, started)
