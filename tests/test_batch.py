"""Batch tasks (``@app.task(batch_size=..., batch_wait=...)``) on a real database.

Which jobs ran in which handler call is read back from the jobs' own results
(each handler call numbers itself and stores that number in every result), and
orders and times from the rows' database timestamps, never from this machine's
speed: each test that waits for a batch to fill gives it a generous batch_wait
and fills it, so the batch runs as soon as it is full.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import pgq
from tests.processes import WorkerProcess, count, wait_for
from tests.test_worker import finished, job, run_until


async def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await asyncio.to_thread(check)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
    return value


def running_count(conn: Any, ids: list[int]) -> int:
    return int(
        conn.execute("select count(*) as n from pgq.jobs where status = 'running' and id = any(%s)", [ids]).fetchone()[
            "n"
        ]
    )


async def test_batch_handler_records_per_job_outcomes(app: pgq.App, conn: Any) -> None:
    calls: list[list[int]] = []

    @app.task(batch_size=10, batch_wait=0.5, max_attempts=3, backoff=0.1)
    async def deliver(jobs: list[pgq.Job]) -> list[Any]:
        calls.append([j.id for j in jobs])
        outcomes: list[Any] = []
        for j in jobs:
            mode = j.args["mode"]
            if mode == "ok":
                outcomes.append({"sent": j.args["to"], "call": len(calls)})
            elif mode == "none":
                outcomes.append(None)
            elif mode == "flaky" and j.attempts == 1:
                outcomes.append(ConnectionError(f"mailbox of {j.args['to']} busy"))
            elif mode == "flaky":
                outcomes.append({"sent": j.args["to"], "call": len(calls)})
            elif mode == "bad":
                outcomes.append(pgq.PermanentError(f"no such address {j.args['to']}"))
            else:
                outcomes.append(ValueError(f"always fails ({j.args['to']})"))
        return outcomes

    ids = {
        "ok": deliver.enqueue(mode="ok", to="a"),
        "none": deliver.enqueue(mode="none", to="b"),
        "flaky": deliver.enqueue(mode="flaky", to="c"),
        "bad": deliver.enqueue(mode="bad", to="d"),
        "failing": deliver.enqueue(mode="failing", to="e"),
        "first": deliver.options(priority=5).enqueue(mode="ok", to="f"),
    }
    await run_until(app, finished(app, list(ids.values())))
    # The first call had every job, sorted in claim order (priority first, then id).
    assert calls[0] == [ids["first"], ids["ok"], ids["none"], ids["flaky"], ids["bad"], ids["failing"]]
    ok, none, flaky, bad, failing = (job(app, ids[k]) for k in ("ok", "none", "flaky", "bad", "failing"))
    assert ok.status == "completed" and ok.result == {"sent": "a", "call": 1} and ok.attempts == 1
    assert none.status == "completed" and none.result is None and none.errors == []
    assert flaky.status == "completed" and flaky.attempts == 2 and flaky.result["sent"] == "c"
    assert [(e["attempt"], e["type"], e["message"]) for e in flaky.errors] == [
        (1, "ConnectionError", "mailbox of c busy")
    ]
    assert bad.status == "failed" and bad.attempts == 1 and bad.errors[0]["permanent"] is True
    assert bad.errors[0]["type"] == "PermanentError" and bad.errors[0]["message"] == "no such address d"
    assert failing.status == "failed" and failing.attempts == 3
    assert [e["type"] for e in failing.errors] == ["ValueError"] * 3
    # Every outcome went through the worker's one history table, as single jobs' do.
    rows = conn.execute("select status, count(*) as n from pgq.job_history group by status order by status").fetchall()
    assert rows == [{"status": "completed", "n": 4}, {"status": "failed", "n": 2}]


async def test_a_batch_is_bigger_than_the_workers_concurrency(app: pgq.App, conn: Any) -> None:
    numbers = itertools.count(1)

    @app.task(batch_size=40, batch_wait=60)  # fills long before the wait ends
    def bulk_insert(jobs: list[pgq.Job]) -> list[dict[str, int]]:
        call = next(numbers)
        return [{"call": call, "size": len(jobs)} for _ in jobs]

    @app.task
    def single() -> str:
        return "ran beside the batch"

    ids = app.enqueue_many([pgq.JobSpec("bulk_insert", {"row": i}) for i in range(40)])
    other = single.enqueue()
    await run_until(app, finished(app, [*ids, other]), concurrency=2)
    results = conn.execute(
        "select result->>'call' as call, result->>'size' as size, count(*) as n, max(attempts) as attempts "
        "from pgq.job_history where task = 'bulk_insert' group by 1, 2"
    ).fetchall()
    assert results == [{"call": "1", "size": "40", "n": 40, "attempts": 1}]
    assert job(app, other).result == "ran beside the batch"


async def test_jobs_enqueued_within_batch_wait_join_the_batch(app: pgq.App, conn: Any) -> None:
    numbers = itertools.count(1)

    @app.task(batch_size=3, batch_wait=60)  # runs when the third job arrives
    async def notify_users(jobs: list[pgq.Job]) -> list[int]:
        call = next(numbers)
        return [call for _ in jobs]

    async with app.worker(poll_interval=0.2):
        first = await asyncio.to_thread(notify_users.enqueue, user=1)
        await wait_until(lambda: running_count(conn, [first]) == 1, "the first job to wait in a batch")
        second = await asyncio.to_thread(notify_users.enqueue, user=2)
        await wait_until(lambda: running_count(conn, [second]) == 1, "the second job to join")
        third = await asyncio.to_thread(notify_users.enqueue, user=3)
        await wait_until(finished(app, [first, second, third]), "the batch to run")
    jobs = [job(app, i) for i in (first, second, third)]
    assert [j.result for j in jobs] == [1, 1, 1]  # one call
    # They arrived over time: each was enqueued after the one before was claimed (database clock).
    assert jobs[0].started_at < jobs[1].created_at and jobs[1].started_at < jobs[2].created_at  # type: ignore[operator]


async def test_a_handler_that_raises_fails_every_jobs_attempt(app: pgq.App) -> None:
    @app.task(batch_size=5, batch_wait=0, max_attempts=2, backoff=0.05)
    def explode(jobs: list[pgq.Job]) -> list[None]:
        raise RuntimeError(f"SMTP down for {len(jobs)}")

    @app.task(batch_size=5, batch_wait=0, max_attempts=3)
    def forbid(jobs: list[pgq.Job]) -> list[None]:
        raise pgq.PermanentError("account closed")

    exploding = app.enqueue_many([pgq.JobSpec("explode", {"n": i}) for i in range(3)])
    forbidden = app.enqueue_many([pgq.JobSpec("forbid", {"n": i}) for i in range(2)])
    await run_until(app, finished(app, exploding + forbidden))
    for job_id in exploding:
        failed = job(app, job_id)
        assert failed.status == "failed" and failed.attempts == 2
        assert [e["type"] for e in failed.errors] == ["RuntimeError", "RuntimeError"]
        assert "raise RuntimeError" in failed.errors[0]["traceback"]
    for job_id in forbidden:
        failed = job(app, job_id)
        assert failed.status == "failed" and failed.attempts == 1 and failed.errors[0]["permanent"] is True


async def test_a_wrong_return_fails_every_jobs_attempt_with_a_clear_error(app: pgq.App) -> None:
    @app.task(batch_size=5, batch_wait=0, max_attempts=1)
    def forgets(jobs: list[pgq.Job]) -> None:
        pass

    @app.task(batch_size=5, batch_wait=0, max_attempts=1)
    def one_short(jobs: list[pgq.Job]) -> list[str]:
        return ["ok"] * (len(jobs) - 1)

    @app.task(batch_size=5, batch_wait=0, max_attempts=1)
    def unserialisable(jobs: list[pgq.Job]) -> list[object]:
        return [object() for _ in jobs]

    forgetting = app.enqueue_many([pgq.JobSpec("forgets", {"n": i}) for i in range(2)])
    short = app.enqueue_many([pgq.JobSpec("one_short", {"n": i}) for i in range(3)])
    odd = unserialisable.enqueue()
    await run_until(app, finished(app, [*forgetting, *short, odd]))
    for job_id in forgetting:
        failed = job(app, job_id)
        assert failed.status == "failed" and failed.errors[0]["type"] == "InvalidBatchResult"
        assert "forgets got 2 jobs and returned None (no return statement?)" in failed.errors[0]["message"]
        assert "one item per job" in failed.errors[0]["message"]
    for job_id in short:
        failed = job(app, job_id)
        assert failed.status == "failed" and failed.errors[0]["type"] == "InvalidBatchResult"
        assert "one_short got 3 jobs and returned a list of 2" in failed.errors[0]["message"]
    # One result that cannot be stored is treated as a single job's: completed without it.
    done = job(app, odd)
    assert done.status == "completed" and done.result is None


async def test_graceful_shutdown_returns_a_waiting_batch_without_consuming_attempts(app: pgq.App, conn: Any) -> None:
    calls: list[int] = []

    @app.task(batch_size=10, batch_wait=120)
    async def digest(jobs: list[pgq.Job]) -> list[None]:
        calls.append(len(jobs))
        return [None for _ in jobs]

    ids = [digest.enqueue(n=i) for i in range(3)]
    async with app.worker(poll_interval=0.2, concurrency=1, shutdown_timeout=60) as worker:
        await wait_until(lambda: running_count(conn, ids) == 3, "the jobs to wait in a batch")
        assert sorted(worker.running) == ids
        stopping_at = time.monotonic()
    # Stopped at once (not after the 120 s wait nor the 60 s grace), the handler never called.
    assert time.monotonic() - stopping_at < 30 and calls == []
    for job_id in ids:
        returned = job(app, job_id)
        assert returned.status == "pending" and returned.attempts == 0 and returned.worker_id is None
        assert returned.errors == []  # its handler was never called: nothing to explain


async def test_shutdown_past_the_timeout_returns_a_running_batch(app: pgq.App) -> None:
    started = asyncio.Event()

    @app.task(batch_size=2, batch_wait=60)
    async def endless(jobs: list[pgq.Job]) -> list[None]:
        started.set()
        await asyncio.sleep(600)
        return [None for _ in jobs]

    ids = [endless.enqueue(n=i) for i in range(2)]
    async with app.worker(poll_interval=0.2, shutdown_timeout=0.5):
        await asyncio.wait_for(started.wait(), 30)
    for job_id in ids:
        returned = job(app, job_id)
        assert returned.status == "pending" and returned.attempts == 0
        # The handler was called: the stop shows, uncharged, so that the re-run is explained.
        assert [(e["type"], e["attempt"], e["charged"]) for e in returned.errors] == [("Shutdown", 1, False)]


async def test_batch_jobs_are_held_like_running_jobs_and_cancellable(app: pgq.App, conn: Any) -> None:
    release = asyncio.Event()
    seen: list[list[int]] = []

    @app.task(batch_size=10, batch_wait=120)
    async def gather_up(jobs: list[pgq.Job]) -> list[str]:
        seen.append([j.id for j in jobs])
        await release.wait()
        return ["done" for _ in jobs]

    ids = [gather_up.enqueue(n=i) for i in range(4)]
    async with app.worker(poll_interval=0.2, heartbeat_interval=0.2) as worker:
        await wait_until(lambda: running_count(conn, ids) == 4, "the jobs to wait in a batch")
        # The heartbeat lists every job of the waiting batch, as it lists running jobs.
        await wait_until(
            lambda: (
                sorted(
                    conn.execute("select running from pgq.workers where id = %s", [worker.id]).fetchone()["running"]
                    or []
                )
                == ids
            ),
            "the heartbeat to list the batch",
        )
        # A cancel of a job of a waiting batch takes it out of the batch, cancelled.
        assert await asyncio.to_thread(app.cancel, ids[0]) == "cancelling"
        await wait_until(finished(app, [ids[0]]), "the cancelled job to finish")
        assert job(app, ids[0]).status == "cancelled" and ids[0] not in worker.running
        # Fill the batch: it runs with the other jobs.
        more = [await asyncio.to_thread(gather_up.enqueue, n=i) for i in range(4, 11)]
        await wait_until(lambda: len(seen) == 1, "the batch to start")
        assert seen[0] == ids[1:] + more
        # A cancel of a job of a running batch does not stop the others' handler.
        assert await asyncio.to_thread(app.cancel, more[0]) == "cancelling"
        await asyncio.sleep(0.3)
        release.set()
        await wait_until(finished(app, ids[1:] + more), "the batch to finish")
    assert all(job(app, i).result == "done" for i in ids[1:] + more)
    # The job cancelled while its batch ran completed: its handler did the work.
    assert job(app, more[0]).status == "completed" and job(app, more[0]).cancel_requested_at is not None


async def test_a_batch_whose_jobs_are_all_cancelled_is_interrupted(app: pgq.App) -> None:
    started = asyncio.Event()

    @app.task(batch_size=2, batch_wait=60, max_attempts=5)
    async def stuck(jobs: list[pgq.Job]) -> list[None]:
        started.set()
        await asyncio.sleep(60)
        return [None for _ in jobs]

    ids = [stuck.enqueue(n=i) for i in range(2)]
    async with app.worker(poll_interval=0.2):
        await asyncio.wait_for(started.wait(), 30)
        for job_id in ids:
            await asyncio.to_thread(app.cancel, job_id)
        await wait_until(finished(app, ids), "the cancelled batch to end")
    for job_id in ids:
        cancelled = job(app, job_id)
        assert cancelled.status == "cancelled" and cancelled.attempts == 1
        assert cancelled.errors[-1]["type"] == "Cancelled"


async def test_timeout_applies_to_the_whole_handler_call(app: pgq.App) -> None:
    @app.task(batch_size=3, batch_wait=0, timeout=0.5, max_attempts=1)
    async def slow(jobs: list[pgq.Job]) -> list[None]:
        await asyncio.sleep(60)
        return [None for _ in jobs]

    @app.task
    def after() -> str:
        return "slot freed"

    ids = app.enqueue_many([pgq.JobSpec("slow", {"n": i}) for i in range(3)])
    await run_until(app, finished(app, ids), concurrency=1)
    for job_id in ids:
        failed = job(app, job_id)
        assert failed.status == "failed" and failed.errors[0]["type"] == "Timeout"
        assert "timed out after 0.5 s" in failed.errors[0]["message"]
    follow = after.enqueue()
    await run_until(app, finished(app, [follow]), concurrency=1)
    assert job(app, follow).result == "slot freed"


async def test_batch_jobs_fire_per_job_events(app: pgq.App) -> None:
    events: list[tuple[str, int]] = []

    @app.task(batch_size=5, batch_wait=0, max_attempts=1)
    def mixed(jobs: list[pgq.Job]) -> list[Any]:
        return [ValueError("no") if j.args["fail"] else j.id for j in jobs]

    for name in ("job_started", "job_completed", "job_failed"):
        app.on(name, lambda event: events.append((event.name, event.job.id)))
    good, bad = mixed.enqueue(fail=False), mixed.enqueue(fail=True)
    await run_until(app, finished(app, [good, bad]))
    assert sorted(events) == sorted(
        [("job_started", good), ("job_started", bad), ("job_completed", good), ("job_failed", bad)]
    )


def test_batch_tasks_run_as_batches_of_one_in_pgq_testing(app: pgq.App) -> None:
    from pgq.testing import drain, run_job

    @app.task(batch_size=10)
    def shout(jobs: list[pgq.Job]) -> list[str]:
        return [j.args["text"].upper() for j in jobs]

    assert run_job(app, shout, {"text": "hi"}).result == "HI"
    shout.enqueue(text="a")
    shout.enqueue(text="b")
    assert [o.result for o in drain(app)] == ["A", "B"]


def test_bad_batch_options_are_configuration_errors(app: pgq.App) -> None:
    def handler(jobs: list[pgq.Job]) -> list[None]:
        return []

    cases: list[tuple[dict[str, Any], str]] = [
        ({"batch_size": 1}, "must be an integer from 2 to 10000, got 1; leave batch_size out"),
        ({"batch_size": 10_001}, "must be an integer from 2 to 10000, got 10001"),
        ({"batch_size": True}, "must be an integer from 2 to 10000, got True"),
        ({"batch_size": "100"}, "must be an integer from 2 to 10000, got '100'"),
        ({"batch_wait": 1.0}, "has batch_wait but no batch_size; add batch_size=N"),
        ({"batch_size": 10, "batch_wait": -1}, "finite number of seconds >= 0, got -1"),
        ({"batch_size": 10, "batch_wait": float("inf")}, "finite number of seconds >= 0, got inf"),
        ({"batch_size": 10, "batch_wait": "1s"}, r"must be seconds \(a number\) or a timedelta, got '1s'"),
        ({"batch_size": 10, "batch_wait": 5, "timeout": 5}, r"batch_wait of task 'handler' \(5 s\) must be shorter"),
        ({"batch_size": 10, "pass_context": True}, "pass_context cannot be combined with batch_size"),
    ]
    for options, message in cases:
        with pytest.raises(pgq.ConfigurationError, match=message):
            app.task(**options)(handler)
    assert "handler" not in app.tasks

    def keyword_handler(*, user_id: int) -> None: ...

    with pytest.raises(pgq.ConfigurationError, match=r"called as fn\(jobs\) with one list of pgq.Job"):
        app.task(batch_size=10)(keyword_handler)

    ok = app.task(batch_size=100, batch_wait=timedelta(milliseconds=250))(handler)
    assert (ok.batch_size, ok.batch_wait) == (100, 0.25)
    assert app.task(batch_size=2)(lambda jobs: jobs).batch_wait == 1.0  # type: ignore[attr-defined]
    # Enqueue is unchanged, and any args pass: the handler takes the list, not the args.
    ok.enqueue(anything="goes", n=1)


@pytest.mark.slow
def test_batches_in_a_worker_process_and_sigterm_returns_a_waiting_batch(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = pgq.App(database_url)
    ids = app.enqueue_many([pgq.JobSpec("record_batch", {"n": i}, queue="bulk") for i in range(25)])
    worker = start_worker("--queues", "bulk", "--concurrency", "1")
    wait_for(
        lambda: count(db, "select count(*) as n from pgq.job_history where status = 'completed'") == 25, 60, "25 jobs"
    )
    # Every job ran once, in calls of at most 10 jobs; the results say which call.
    assert count(db, "select count(distinct job_id) as n from runs") == 25
    assert count(db, "select count(*) as n from runs") == 25
    sizes = db.execute("select count(*) as n from pgq.job_history group by result->>'call' order by 1 desc").fetchall()
    assert all(row["n"] <= 10 for row in sizes) and sum(row["n"] for row in sizes) == 25
    # A batch that waits (batch_wait 120 s) when SIGTERM comes goes back without counting attempts.
    waiting = [app.enqueue("slow_batch", {"n": i}, queue="bulk") for i in range(2)]
    wait_for(
        lambda: count(db, "select count(*) as n from pgq.jobs where status = 'running' and id = any(%s)", waiting) == 2,
        30,
        "the waiting batch",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    for job_id in waiting:
        returned = app.get_job(job_id)
        assert returned is not None and returned.status == "pending" and returned.attempts == 0
    assert "Traceback" not in worker.output()
    assert all(app.get_job(i).status == "completed" for i in ids)  # type: ignore[union-attr]
    app.close()


@pytest.mark.parametrize("plan_mode", ["force_generic_plan", "force_custom_plan"])
def test_the_top_up_reads_the_claim_index_of_its_queue(conn: Any, plan_mode: str) -> None:
    """The top-up runs at each notification while a batch waits: in a queue of its own
    it must read about the rows it takes, not the backlog (in either plan the
    worker's prepared statement may end up with)."""
    import uuid

    from pgq.db.queries import query
    from tests.test_plans import explained_prepared, total_buffers

    worker_id = uuid.uuid4()
    conn.execute(
        query("worker_register", "pgq"),
        {
            "id": worker_id,
            "name": "t",
            "host": "h",
            "pid": 1,
            "queues": ["bulk"],
            "concurrency": 1,
            "version": "t",
            "tasks": ["send"],
        },
    )
    conn.execute("insert into pgq.jobs (task, queue) select 'send', 'bulk' from generate_series(1, 20000)")
    conn.execute("insert into pgq.jobs (task, queue) select 'other', 'default' from generate_series(1, 20000)")
    conn.execute("analyze pgq.jobs")
    conn.execute(f"set plan_cache_mode = {plan_mode}")
    params = {"worker_id": worker_id, "queue": "bulk", "task": "send", "limit": 100}
    plan = explained_prepared(conn, "job_claim_batch", params)
    text = "\n".join(plan)
    assert "Seq Scan on jobs" not in text, text
    assert total_buffers(plan) <= 2000, text
    assert (
        count(conn, "select count(*) as n from pgq.jobs where status = 'running' and worker_id = %s", worker_id) == 100
    )
