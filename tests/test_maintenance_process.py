"""The scheduler and the sweeper across real worker processes: cron ticks with
three workers, a worker killed with SIGKILL, a worker frozen with SIGSTOP."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

import pgq
from tests.processes import FAST_MAINTENANCE, WorkerProcess, count, pgq_cli, wait_for

pytestmark = pytest.mark.slow

CRON_APP = "tests.apps.cron:app"


def ticks(db: Any) -> list[datetime]:
    return [row["run_at"] for row in db.execute("select run_at from pgq.all_jobs order by run_at")]


def test_three_workers_one_job_per_tick_and_one_catch_up(db: Any, start_worker: Callable[..., WorkerProcess]) -> None:
    workers = [start_worker(app=CRON_APP) for _ in range(3)]
    # The clock starts at the first tick's job: on a loaded machine, starting three workers can take
    # seconds that would otherwise count as missed ticks.
    wait_for(lambda: len(ticks(db)) >= 1, 30, "the first tick")
    time.sleep(17)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(30) == 0
    before = ticks(db)
    # Every tick gave exactly one job, and no tick in the run was skipped.
    assert len(before) == len(set(before)) and 8 <= len(before) <= 12, before
    assert all(tick.microsecond == 0 and tick.second % 2 == 0 for tick in before)
    assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(before))
    assert count(db, "select count(*) as n from runs") == count(db, "select count(distinct job_id) as n from runs")

    stopped_at = db.execute("select now() as now").fetchone()["now"]
    time.sleep(10)  # five ticks missed
    restarted = [start_worker(app=CRON_APP) for _ in range(3)]
    wait_for(lambda: len(ticks(db)) >= len(before) + 3, 30, "ticks after the restart")
    for worker in restarted:
        worker.signal(signal.SIGTERM)
    for worker in restarted:
        assert worker.wait(30) == 0
    after = ticks(db)[len(before) :]
    assert len(after) == len(set(after))
    missed = [tick for tick in after if tick <= stopped_at + timedelta(seconds=10)]
    assert len(missed) == 1, f"expected one catch-up job for the missed ticks, got {missed}"


def test_kill_9_mid_job_another_worker_finishes_it(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = pgq.App(database_url)
    victim = start_worker(env=FAST_MAINTENANCE)
    job_id = app.enqueue("sleepy", {"seconds": 2})
    wait_for(lambda: count(db, "select count(*) as n from runs where job_id = %s", job_id), 30, "the job to start")
    victim.process.kill()  # SIGKILL: no goodbye, no returned job
    victim.wait(10)
    killed_at = time.monotonic()
    rescuer = start_worker(env=FAST_MAINTENANCE)
    done = wait_for(
        lambda: (j := app.get_job(job_id)) is not None and j.status == "completed" and j,
        60,
        "the job to complete elsewhere",
    )
    # heartbeat timeout (3 s) + one sweep (1 s) + the rerun (2 s) + start-up, with room for a slow machine
    assert time.monotonic() - killed_at < 30
    # Its first crash: the attempt is given back, and it re-runs as usual, in the rescuer
    # (one crash is most often a kill like this one: no child process for it).
    assert done.attempts == 1 and done.errors[0]["type"] == "WorkerDied" and done.errors[0]["charged"] is False
    runs = db.execute("select pid from runs where job_id = %s order by started_at", [job_id]).fetchall()
    assert [r["pid"] for r in runs] == [victim.process.pid, rescuer.process.pid]
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait(30) == 0
    app.close()


def test_sigstop_until_declared_dead_then_sigcont_late_finish_is_refused(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = pgq.App(database_url)
    frozen = start_worker(env=FAST_MAINTENANCE)
    job_id = app.enqueue("sleepy", {"seconds": 1.5})
    wait_for(lambda: count(db, "select count(*) as n from runs where job_id = %s", job_id), 30, "the job to start")
    os.kill(frozen.process.pid, signal.SIGSTOP)
    try:
        other = start_worker(env=FAST_MAINTENANCE)
        done = wait_for(
            lambda: (j := app.get_job(job_id)) is not None and j.status == "completed" and j, 60, "the re-run elsewhere"
        )
    finally:
        os.kill(frozen.process.pid, signal.SIGCONT)
    # The frozen worker wakes up. Either its heartbeat learns first that it was declared dead (it
    # drops the job and writes nothing), or its handler finishes first and the fenced finish is
    # refused; then it re-registers under a new id.
    wait_for(lambda: "declared dead" in frozen.output(), 30, "the frozen worker to learn it was declared dead")
    # Its handler thread runs on to the end of its sleep either way (the log line can come first).
    wait_for(
        lambda: count(db, "select count(*) as n from runs where job_id = %s and finished_at is not null", job_id) == 2,
        30,
        "the frozen worker's handler to finish its run",
    )

    # The log line comes before the re-registration commits, so wait for the fresh identity's row.
    def statuses() -> list[str]:
        rows = db.execute("select status from pgq.workers where pid = %s", [frozen.process.pid]).fetchall()
        return sorted(row["status"] for row in rows)

    wait_for(lambda: "running" in statuses(), 30, "the frozen worker to re-register under a fresh id")
    assert statuses() == ["dead", "running"]  # the old identity, and a fresh one
    for worker in (frozen, other):
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    # Checked once both workers have exited, so after any write the late finish could have made.
    final = app.get_job(job_id)
    assert final is not None and final == done  # unchanged by the late finish
    assert final.worker_id is not None and final.attempts == 1 and final.errors[0]["type"] == "WorkerDied"
    app.close()


def test_shutdown_returns_a_job_whose_sync_handler_ignores_cancellation(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    """The thread cannot be stopped, so the process exits without it (and so the
    thread with it): its job goes back to pending with the attempt given back."""
    app = pgq.App(database_url)
    first = start_worker("--shutdown-timeout", "0.3", env=FAST_MAINTENANCE)
    job_id = app.enqueue("stubborn", {"seconds": 4})
    wait_for(lambda: count(db, "select count(*) as n from runs where job_id = %s", job_id), 30, "the job to start")
    first.signal(signal.SIGTERM)
    assert first.wait(15) == 0  # exits although the thread still runs
    returned = app.get_job(job_id)
    assert returned is not None and returned.status == "pending"
    assert returned.attempts == 0 and returned.worker_id is None
    stop = returned.errors[0]
    assert len(returned.errors) == 1 and (stop["type"], stop["attempt"], stop["charged"]) == ("Shutdown", 1, False)
    shown = pgq_cli(database_url, "jobs", "show", str(job_id))
    assert "  attempt 1 stopped by a shutdown, not charged at " in shown.stdout, shown.stdout
    assert "returned to the queue" in first.output()
    second = start_worker(env=FAST_MAINTENANCE)
    done = wait_for(
        lambda: (j := app.get_job(job_id)) is not None and j.status == "completed" and j,
        60,
        "another worker to run the job",
    )
    assert done.attempts == 1 and done.errors == [stop]  # the shutdown's entry, uncharged
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0
    # The first run never finished: its thread ended with its process.
    runs = db.execute(
        "select pid, finished_at is not null as finished from runs where job_id = %s order by started_at", [job_id]
    ).fetchall()
    assert [r["finished"] for r in runs] == [False, True] and runs[0]["pid"] == first.process.pid
    app.close()


def test_no_scheduler_no_sweeper_flags(db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker("--no-scheduler", "--no-sweeper", app=CRON_APP, env=FAST_MAINTENANCE)
    wait_for(lambda: count(db, "select count(*) as n from pgq.workers where status = 'running'"), 30, "the worker")
    time.sleep(3)  # a schedule every 2 s would have fired
    assert count(db, "select count(*) as n from pgq.all_jobs") == 0
    assert "sweeper" not in worker.output() and "schedules declared" not in worker.output()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
