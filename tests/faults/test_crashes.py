"""Processes dying under load: kill -9 (the sweeper too), poison jobs, and storms
of terminated database sessions. Each scenario ends with the table checks and
counts lost, duplicated and overlapping runs from the handlers' rows."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgq
from tests.faults.consistency import Counts
from tests.processes import FAST_MAINTENANCE, WorkerProcess, count, finished, stop_all, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def test_kill_9_under_load_including_the_sweeper(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess], settle: Callable[..., Counts]
) -> None:
    app = pgq.App(database_url)
    ids = app.enqueue_many([pgq.JobSpec("async_sleepy", {"seconds": 0.5}) for _ in range(600)])
    workers = [start_worker("--concurrency", "60", env=FAST_MAINTENANCE) for _ in range(3)]
    wait_for(
        lambda: count(db, "select count(*) as n from pgq.jobs where status = 'running'") >= 150,
        60,
        "150 jobs running at once",
    )
    # Kill the elected sweeper (it says so in its log) and one other worker.
    sweeper_worker = wait_for(
        lambda: next((w for w in workers if "is now the sweeper" in w.output()), None), 30, "an elected sweeper"
    )
    by_pid = {w.process.pid: w for w in workers}
    victims = [sweeper_worker, next(w for w in workers if w is not sweeper_worker)]
    held = {
        w.process.pid: count(
            db, "select count(*) as n from runs r where r.pid = %s and r.finished_at is null", w.process.pid
        )
        for w in victims
    }
    killed_at = db.execute("select now() as now").fetchone()["now"]
    for victim in victims:
        victim.process.kill()
        victim.wait(10)
    replacements = [start_worker("--concurrency", "60", env=FAST_MAINTENANCE) for _ in range(2)]
    wait_for(lambda: finished(db, ids) == len(ids), 180, "every job to finish")
    stop_all([w for w in workers if w not in victims] + replacements)

    rescues = [
        (row["restarted"] - killed_at).total_seconds()
        for row in db.execute(
            """select min(r.started_at) as restarted from runs r
                where r.job_id in (select job_id from runs where pid = any(%s) and finished_at is null)
                  and r.pid <> all(%s)
                group by r.job_id""",
            [list(by_pid.keys() & {v.process.pid for v in victims})] * 2,
        )
    ]
    counts = settle(
        ids,
        killed_workers=2,
        jobs_running_on_killed=sum(held.values()),
        rescue_p50_s=round(statistics.median(rescues), 2) if rescues else None,
        rescue_max_s=round(max(rescues), 2) if rescues else None,
    )
    assert counts.lost == 0 and counts.overlapping == 0
    assert counts.completed == len(ids)
    # Duplicates are bounded by what the killed workers were running (plus unflushed finishes).
    assert counts.duplicated <= sum(held.values()) + 2 * 60
    app.close()


def test_poison_jobs_end_failed_and_the_rest_carry_on(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess], settle: Callable[..., Counts]
) -> None:
    """Poison jobs among normal ones (issue 15 item 4): each poison is charged only for
    its own crashes, in a child process where it runs alone, and ends failed saying so;
    the jobs that died beside it get their attempt back and complete."""
    app = pgq.App(database_url)
    kinds = ("exit", "kill", "segfault", "memory")
    poison = [app.enqueue("poison", {"kind": kind}, max_attempts=2) for kind in kinds]
    normal = app.enqueue_many([pgq.JobSpec("record", {"n": i}) for i in range(300)])
    supervisor = start_worker("--processes", "2", "--concurrency", "4", env=FAST_MAINTENANCE)
    bystander = start_worker("--concurrency", "4", env=FAST_MAINTENANCE)  # survives to sweep
    wait_for(lambda: finished(db, poison + normal) == len(poison + normal), 240, "poison and normal jobs to end")
    # The bystander runs poison jobs as well, in its own process: "kill" and "exit" end it.
    stop_all([supervisor, bystander], died_ok=True)
    worker_pids = {row["pid"] for row in db.execute("select pid from pgq.workers").fetchall()}
    for job_id, kind in zip(poison, kinds, strict=True):
        job = app.get_job(job_id)
        assert job is not None and job.status == "failed" and job.attempts == 2, (kind, job)
        last = job.errors[-1]
        if kind == "memory" and last["type"] == "MemoryError":
            continue  # the allocation failed without killing anything: a plain failed attempt
        assert last["type"] == "Crashed" and "crashed its worker" in last["message"], (kind, job.errors)
        # Both charged attempts ran, alone, in a child process of a worker.
        alone = db.execute(
            "select count(*) as n from runs where job_id = %s and ppid = any(%s)", [job_id, list(worker_pids)]
        ).fetchone()["n"]
        assert alone >= 2, (kind, alone, job.errors)
    charged = [
        job.attempts
        for job_id in normal
        if (job := app.get_job(job_id)) is not None and job.status == "completed" and job.attempts > 1
    ]
    assert charged == [], f"normal jobs charged for crashes they did not cause: {charged}"
    counts = settle(poison + normal, poison_kinds=4)
    assert counts.lost == 0 and counts.overlapping == 0
    assert counts.completed == len(normal) and counts.failed == len(poison)
    app.close()


def test_storms_of_terminated_sessions(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess], settle: Callable[..., Counts]
) -> None:
    app = pgq.App(database_url)
    ids = app.enqueue_many([pgq.JobSpec("record", {"n": i}) for i in range(1500)])
    workers = [start_worker("--concurrency", "10", env=FAST_MAINTENANCE) for _ in range(2)]
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    terminated = 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        terminated += len(
            db.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where datname = %s and application_name like 'pgq %%' and pid <> pg_backend_pid()",
                [dbname],
            ).fetchall()
        )
        time.sleep(0.3)
    wait_for(lambda: finished(db, ids) == len(ids), 180, "every job to finish after the storm")
    for worker in workers:
        assert worker.process.poll() is None, "a worker died in the storm"
    stop_all(workers)
    counts = settle(ids, sessions_terminated=terminated)
    assert counts.lost == 0 and counts.overlapping == 0 and counts.completed == len(ids)
    assert terminated > 20
    app.close()


def test_kill_9_in_the_middle_of_workflows(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess], settle: Callable[..., Counts]
) -> None:
    """Diamonds of real jobs, one worker killed while they run: every node still completes,
    and no child starts (in any of its runs) before each of its parents finished for good."""
    app = pgq.App(database_url)
    step = pgq.JobSpec("async_sleepy", {"seconds": 0.3})
    ids: list[int] = []
    for _ in range(20):
        ids += app.enqueue_workflow(pgq.chain(step, pgq.group([step, step, step]), step))
    workers = [start_worker("--concurrency", "10", env=FAST_MAINTENANCE) for _ in range(2)]
    wait_for(lambda: finished(db, ids) >= 30, 60, "the first layers to finish")
    victim = workers[0]
    held = wait_for(
        lambda: count(db, "select count(*) as n from runs where pid = %s and finished_at is null", victim.process.pid),
        60,
        "the victim to be running jobs",
    )
    victim.process.kill()
    victim.wait(10)
    replacement = start_worker("--concurrency", "10", env=FAST_MAINTENANCE)
    wait_for(lambda: finished(db, ids) == len(ids), 180, "every workflow to finish")
    stop_all([workers[1], replacement])

    assert count(db, "select count(*) as n from pgq.jobs where status = 'blocked'") == 0
    early = db.execute(
        """select child.id as child, parent.id as parent
             from pgq.job_history child
             cross join lateral unnest(child.depends_on) as p(id)
             join pgq.job_history parent on parent.id = p.id
             join runs r on r.job_id = child.id
            where child.id = any(%s) and r.started_at < parent.finished_at""",
        [ids],
    ).fetchall()
    assert early == [], f"children started before a parent finished: {early}"
    counts = settle(ids, killed_workers=1, jobs_running_on_killed=held, workflows=20)
    assert counts.lost == 0 and counts.overlapping == 0 and counts.completed == len(ids)
    app.close()


def test_a_sweeper_killed_inside_its_vacuum_lets_go_of_the_leadership_at_once(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    """The sweeper's vacuum runs without a statement timeout (a throttled vacuum of a large
    table takes longer than one). A server session goes on with its statement after its client
    died, and the leadership is a lock of that session: the process that replaces a killed
    leader must not wait for a vacuum nobody will read."""
    app = pgq.App(database_url)
    maintenance = {**FAST_MAINTENANCE, "PGQ_VACUUM_THRESHOLD": "1"}
    leader = start_worker(env=maintenance)
    wait_for(lambda: "is now the sweeper" in leader.output(), 30, "the first worker to be elected")
    standby = start_worker(env=maintenance)
    with psycopg.connect(database_url) as blocker:
        # The lock VACUUM takes and claims, finishes and enqueues do not: the leader's next
        # vacuum waits behind it for as long as this transaction lasts, as a long vacuum runs.
        blocker.execute("lock table pgq.jobs in share update exclusive mode")
        ids = app.enqueue_many([pgq.JobSpec("record", {"n": n}) for n in range(20)])
        wait_for(lambda: finished(db, ids) == len(ids), 30, "the jobs that leave dead rows behind")
        vacuuming = """select count(*) as n from pg_stat_activity
                        where datname = current_database() and application_name = 'pgq sweeper'
                          and wait_event_type = 'Lock' and query ilike 'vacuum%%'"""
        wait_for(lambda: count(db, vacuuming) == 1, 30, "the leader's vacuum to wait for the lock")
        leader.process.kill()
        leader.wait(10)
        # Its server session notices the dead client within the check interval and ends,
        # its lock with it: the standby takes over while the vacuum's lock is still held.
        wait_for(lambda: "is now the sweeper" in standby.output(), 15, "the standby to become the sweeper")
    stop_all([standby])
    app.close()
