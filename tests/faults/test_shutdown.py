"""SIGTERM while a worker holds jobs of every kind (issue 15 item 1): short ones finish, and
every job still held at the shutdown timeout goes back to pending with its attempt given
back, an async one as well as a sync one whose thread ignores cancellation, with an
uncharged "Shutdown" entry in its errors. The process exits without that thread; the
jobs then complete elsewhere on their first attempt."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

import pgq
from tests.faults.consistency import Counts
from tests.processes import FAST_MAINTENANCE, WorkerProcess, count, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SHUTDOWN_TIMEOUT = 2.0


def test_sigterm_returns_every_held_job_whatever_its_handler(
    db: Any,
    database_url: str,
    start_worker: Callable[..., WorkerProcess],
    settle: Callable[..., Counts],
) -> None:
    app = pgq.App(database_url)
    first = start_worker("--concurrency", "4", "--shutdown-timeout", str(SHUTDOWN_TIMEOUT), env=FAST_MAINTENANCE)
    short_sync = app.enqueue("sleepy", {"seconds": 0.5})
    short_async = app.enqueue("async_sleepy", {"seconds": 1})
    long_async = app.enqueue("async_sleepy", {"seconds": 6})
    long_sync = app.enqueue("stubborn", {"seconds": 6})  # its thread cannot be stopped
    ids = [short_sync, short_async, long_async, long_sync]
    wait_for(lambda: count(db, "select count(*) as n from runs where job_id = any(%s)", ids) == 4, 30, "all 4 to start")

    first.signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert first.wait(30) == 0, first.output()[-3000:]
    took = time.monotonic() - signalled

    jobs = {job_id: app.get_job(job_id) for job_id in ids}
    for job_id in (short_sync, short_async):
        assert jobs[job_id] is not None and jobs[job_id].status == "completed"  # type: ignore[union-attr]
    for job_id in (long_async, long_sync):
        returned = jobs[job_id]
        assert returned is not None and returned.status == "pending", returned
        assert returned.attempts == 0 and returned.worker_id is None
        # Its handler ran: the stop shows in errors, uncharged, which explains its re-run.
        assert [(e["type"], e["attempt"], e["charged"]) for e in returned.errors] == [("Shutdown", 1, False)]
    # Within the shutdown timeout + 5 s (docs/guarantees.md), although a thread still ran.
    assert took <= SHUTDOWN_TIMEOUT + 5, took

    second = start_worker(env=FAST_MAINTENANCE)
    done = wait_for(
        lambda: all((j := app.get_job(i)) is not None and j.status == "completed" for i in ids) and True,
        60,
        "the returned jobs to complete elsewhere",
    )
    assert done
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0
    for job_id in (long_async, long_sync):
        again = app.get_job(job_id)
        assert again is not None and again.attempts == 1  # nothing was charged
        assert [e["type"] for e in again.errors] == ["Shutdown"]
    # The sync handler's first run never finished: its thread ended with its process.
    unfinished = count(db, "select count(*) as n from runs where job_id = %s and finished_at is null", long_sync)
    counts = settle(ids, shutdown_s=round(took, 2), returned_to_pending=2)
    assert unfinished == 1 and counts.lost == 0 and counts.completed == 4
    app.close()
