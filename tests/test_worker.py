"""The worker in-process (``async with app.worker(...)``) on a real database.

Orders, counts and delays are read from the jobs' own rows (database clock);
no assertion depends on how fast this machine is, except the delayed-start
bound the worker issue asks for.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import pgq
from pgq.events import Event


async def run_until(app: pgq.App, done: Callable[[], bool], timeout: float = 30.0, **options: Any) -> None:
    """Run a worker until ``done()`` (called in a thread) is true, or fail after ``timeout``."""
    options.setdefault("poll_interval", 0.2)
    async with app.worker(**options):
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(done):
            if time.monotonic() > deadline:
                raise AssertionError(f"worker did not finish within {timeout} s")
            await asyncio.sleep(0.05)


def finished(app: pgq.App, ids: list[int]) -> Callable[[], bool]:
    def check() -> bool:
        return all((job := app.get_job(i)) is not None and job.is_finished for i in ids)

    return check


def job(app: pgq.App, job_id: int) -> pgq.Job:
    found = app.get_job(job_id)
    assert found is not None
    return found


async def test_runs_jobs_and_stores_results(app: pgq.App) -> None:
    @app.task
    async def double(n: int) -> int:
        return n * 2

    @app.task
    def shout(text: str) -> dict[str, str]:
        return {"text": text.upper()}

    ids = [double.enqueue(n=i) for i in range(5)] + [shout.enqueue(text="hi")]
    await run_until(app, finished(app, ids))
    assert [job(app, i).result for i in ids] == [0, 2, 4, 6, 8, {"text": "HI"}]
    for i in ids:
        done = job(app, i)
        assert done.status == "completed" and done.attempts == 1 and done.progress == 1
        assert done.finished_at is not None and done.started_at is not None


async def test_priority_then_run_at_then_id(app: pgq.App, conn: Any) -> None:
    order: list[str] = []

    @app.task
    def step(name: str) -> None:
        order.append(name)

    past = datetime.now(UTC) - timedelta(minutes=5)
    step.enqueue(name="low-late")
    step.options(priority=10).enqueue(name="high-1")
    step.options(priority=10, run_at=past).enqueue(name="high-older")
    step.options(priority=-5).enqueue(name="lowest")
    step.options(priority=10).enqueue(name="high-2")
    step.options(run_at=past).enqueue(name="low-older")
    await run_until(app, lambda: len(order) == 6, concurrency=1)
    assert order == ["high-older", "high-1", "high-2", "low-older", "low-late", "lowest"]


async def test_concurrency_runs_that_many_at_once(app: pgq.App) -> None:
    active = 0
    peak = 0
    gate = asyncio.Event()

    @app.task
    async def hold(i: int) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if peak >= 4:
            gate.set()
        await asyncio.wait_for(gate.wait(), 10)
        await asyncio.sleep(0.05)
        active -= 1

    ids = [hold.enqueue(i=i) for i in range(12)]
    await run_until(app, finished(app, ids), concurrency=4)
    assert peak == 4
    assert all(job(app, i).status == "completed" for i in ids)


async def test_retries_with_backoff_and_error_history(app: pgq.App) -> None:
    @app.task(max_attempts=3, backoff=0.3)
    def flaky(n: int) -> None:
        raise ConnectionError(f"upstream said 503 ({n})")

    job_id = flaky.enqueue(n=1)
    await run_until(app, finished(app, [job_id]))
    failed = job(app, job_id)
    assert failed.status == "failed" and failed.attempts == 3
    assert [e["attempt"] for e in failed.errors] == [1, 2, 3]
    assert all(e["type"] == "ConnectionError" and e["message"] == "upstream said 503 (1)" for e in failed.errors)
    assert "raise ConnectionError" in failed.errors[0]["traceback"]
    times = [datetime.fromisoformat(e["at"]) for e in failed.errors]
    # Backoff doubles from 0.3 s with ±20 % jitter: at least 0.24 s, then 0.48 s (database clock).
    assert (times[1] - times[0]).total_seconds() >= 0.24
    assert (times[2] - times[1]).total_seconds() >= 0.48


async def test_permanent_error_and_retry_request(app: pgq.App) -> None:
    calls: list[int] = []

    @app.task(max_attempts=5)
    def invalid(address: str) -> None:
        raise pgq.PermanentError(f"invalid address {address}")

    @app.task(max_attempts=5, pass_context=True)
    def later(ctx: pgq.JobContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise pgq.Retry(delay=0.4, reason="rate limited")
        return "done"

    ids = [invalid.enqueue(address="nope"), later.enqueue()]
    await run_until(app, finished(app, ids))
    failed, retried = job(app, ids[0]), job(app, ids[1])
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.errors[0]["type"] == "PermanentError" and failed.errors[0]["permanent"] is True
    assert retried.status == "completed" and retried.result == "done" and calls == [1, 2]
    assert retried.errors[0]["type"] == "Retry" and retried.errors[0]["message"] == "rate limited"
    assert retried.started_at is not None
    assert (retried.started_at - datetime.fromisoformat(retried.errors[0]["at"])).total_seconds() >= 0.4


async def test_timeouts_of_async_and_sync_handlers(app: pgq.App) -> None:
    noticed = threading.Event()

    @app.task(timeout=0.3, max_attempts=1)
    async def hangs() -> None:
        await asyncio.sleep(60)

    @app.task(timeout=0.3, max_attempts=1, pass_context=True)
    def spins(ctx: pgq.JobContext) -> None:
        while not ctx.cancelled:
            time.sleep(0.01)
        noticed.set()

    @app.task
    def after() -> str:
        return "still working"

    ids = [hangs.enqueue(), spins.enqueue()]
    await run_until(app, finished(app, ids), concurrency=2)
    for job_id in ids:
        timed_out = job(app, job_id)
        assert timed_out.status == "failed"
        assert timed_out.errors[0]["type"] == "Timeout" and "timed out after 0.3 s" in timed_out.errors[0]["message"]
    assert noticed.wait(5)  # the sync handler saw ctx.cancelled
    # The worker's slots were freed: new work still runs.
    follow = after.enqueue()
    await run_until(app, finished(app, [follow]), concurrency=2)
    assert job(app, follow).result == "still working"


async def test_cancel_pending_and_running_jobs(app: pgq.App) -> None:
    started = asyncio.Event()
    sync_started = threading.Event()

    @app.task
    async def long_async() -> None:
        started.set()
        await asyncio.sleep(60)

    @app.task(pass_context=True)
    def long_sync(ctx: pgq.JobContext) -> None:
        sync_started.set()
        while not ctx.cancelled:
            time.sleep(0.01)

    pending = long_async.options(delay=3600).enqueue()
    assert app.cancel(pending) == "cancelled"
    assert job(app, pending).status == "cancelled"
    with pytest.raises(pgq.InvalidState, match="already finished"):
        app.cancel(pending)
    with pytest.raises(pgq.JobNotFound):
        app.cancel(987654)

    running = [long_async.enqueue(), long_sync.enqueue()]
    async with app.worker(concurrency=2, poll_interval=0.2):
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.to_thread(sync_started.wait, 10)
        assert [await asyncio.to_thread(app.cancel, i) for i in running] == ["cancelling", "cancelling"]
        deadline = time.monotonic() + 10
        while not await asyncio.to_thread(finished(app, running)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    for job_id in running:
        cancelled = job(app, job_id)
        assert cancelled.status == "cancelled" and cancelled.cancel_requested_at is not None
        assert cancelled.errors[-1]["type"] == "Cancelled"


async def test_delayed_job_starts_on_time_on_an_idle_worker(app: pgq.App) -> None:
    @app.task
    def ping() -> None: ...

    async with app.worker(poll_interval=30):  # the poll would be far too late: the worker must sleep until run_at
        await asyncio.sleep(0.3)  # idle
        ids = [await asyncio.to_thread(ping.options(delay=delay).enqueue) for delay in (0.8, 1.2, 1.6)]
        deadline = time.monotonic() + 10
        while not await asyncio.to_thread(finished(app, ids)):
            assert time.monotonic() < deadline, "delayed jobs did not run"
            await asyncio.sleep(0.05)
    lags = sorted((job(app, i).started_at - job(app, i).run_at).total_seconds() for i in ids)  # type: ignore[operator]
    assert all(lag >= 0 for lag in lags)
    assert lags[1] < 0.1, f"median delay after run_at {lags[1]:.3f} s"


async def test_an_idle_worker_sleeps_between_polls(app: pgq.App, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing to do, a worker claims once per poll (and once when its LISTEN starts),
    not in a loop: an idle worker once asked 1,200 times a second, its next-run query
    answering 0 seconds instead of "no delayed job"."""
    from pgq.db import repo

    claims = 0
    claim = repo.claim

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal claims
        claims += 1
        return await claim(*args, **kwargs)

    monkeypatch.setattr(repo, "claim", counted)
    async with app.worker(poll_interval=1.0, scheduler=False, sweeper=False):
        await asyncio.sleep(2.5)
    assert 1 <= claims <= 6, claims


async def test_notification_wakes_an_idle_worker(app: pgq.App) -> None:
    @app.task
    def ping() -> None: ...

    async with app.worker(poll_interval=30) as worker:
        for _ in range(100):
            if worker.listener is not None and worker.listener.listening:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        job_id = await asyncio.to_thread(ping.enqueue)
        deadline = time.monotonic() + 5  # far less than the 30 s poll
        while not await asyncio.to_thread(finished(app, [job_id])):
            assert time.monotonic() < deadline, "the NOTIFY did not wake the worker"
            await asyncio.sleep(0.02)


async def test_a_started_worker_has_its_claim_and_finish_sessions_open_before_any_job(app: pgq.App, conn: Any) -> None:
    """A worker started under load opened its finishes session, and planned the finish
    function, at its first finish, while jobs piled up; it opens both sessions and writes an
    empty batch of completions on each before it claims (Worker._warm_up)."""

    @app.task
    def ping() -> None: ...

    async with app.worker(name="w1") as worker:
        names: set[str] = set()
        for _ in range(100):
            rows = conn.execute(
                "select application_name as name from pg_stat_activity where application_name like 'pgq worker w1 %'"
            ).fetchall()
            names = {row["name"] for row in rows}
            if {"pgq worker w1 claims", "pgq worker w1 finishes"} <= names:
                break
            await asyncio.sleep(0.05)
        assert {"pgq worker w1 claims", "pgq worker w1 finishes"} <= names, names
        assert worker.processed == 0


async def test_rolled_back_enqueue_never_runs(app: pgq.App, database_url: str) -> None:
    ran: list[str] = []

    @app.task
    def work(name: str) -> None:
        ran.append(name)

    with psycopg.connect(database_url) as caller:
        work.options(connection=caller).enqueue(name="rolled back")
        caller.rollback()
        work.options(connection=caller).enqueue(name="committed")
        caller.commit()
    sentinel = work.enqueue(name="sentinel")
    await run_until(app, finished(app, [sentinel]))
    assert sorted(ran) == ["committed", "sentinel"]


async def test_bad_jobs_fail_once_and_the_worker_carries_on(app: pgq.App, conn: Any) -> None:
    @app.task
    def greet(name: str) -> str:
        return f"hello {name}"

    @app.task
    def unserialisable() -> object:
        return object()

    ids = [
        app.enqueue("nobody_registered_this", {}),
        conn.execute("select pgq.enqueue('greet', '{\"nom\": \"x\"}') as id").fetchone()["id"],
        unserialisable.enqueue(),
        greet.enqueue(name="ada"),
    ]
    await run_until(app, finished(app, ids))
    unknown, wrong_args, no_result, good = (job(app, i) for i in ids)
    assert unknown.status == "failed" and unknown.attempts == 1
    assert "unknown task 'nobody_registered_this'" in unknown.errors[0]["message"]
    assert wrong_args.status == "failed" and wrong_args.attempts == 1
    assert "missing a required argument: 'name'; got ['nom']" in wrong_args.errors[0]["message"]
    assert no_result.status == "completed" and no_result.result is None
    assert good.result == "hello ada"


async def test_args_python_cannot_read_fail_that_job_only(app: pgq.App, conn: Any) -> None:
    """Args nested deeper than Python's recursion limit, written by plain SQL (pgq.enqueue
    refuses them since migration 0007, a bare insert does not): reading them
    must not break the claim (which would fail again at every retry, for every job of
    the queue); that job fails once, clearly, and the others run."""

    @app.task
    async def nested(value: object) -> None: ...

    @app.task
    async def fine() -> str:
        return "ran"

    deep = '{"value": ' + "[" * 5000 + "]" * 5000 + "}"
    bad = conn.execute(
        "insert into pgq.jobs (task, queue, args) values ('nested', 'default', %s::jsonb) returning id", [deep]
    ).fetchone()["id"]
    good = fine.enqueue()
    await run_until(app, finished(app, [bad, good]))
    failed = conn.execute("select status, attempts, errors from pgq.job_history where id = %s", [bad]).fetchone()
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert failed["errors"][0]["type"] == "InvalidArgs" and "cannot be read as JSON" in failed["errors"][0]["message"]
    assert job(app, good).result == "ran"


async def test_args_past_64_bits_reach_the_handler_whole(app: pgq.App, conn: Any) -> None:
    """Integers past 64 bits, written by plain SQL (pgq.enqueue refuses them), reach the
    handler exactly: the claim's JSON reader (orjson) would make them floats, so args
    that may hold one are read by json instead. Small numbers and floats read alike."""
    seen: list[object] = []

    @app.task
    async def numbers(big: int, negative: int, small: int, ratio: float) -> None:
        seen.extend([big, negative, small, ratio])

    args = '{"big": 123456789012345678901234567890, "negative": -9223372036854775809, "small": 7, "ratio": 0.1}'
    job_id = conn.execute(
        "insert into pgq.jobs (task, queue, args) values ('numbers', 'default', %s::jsonb) returning id", [args]
    ).fetchone()["id"]
    await run_until(app, finished(app, [job_id]))
    assert job(app, job_id).status == "completed"
    assert seen == [123456789012345678901234567890, -9223372036854775809, 7, 0.1]
    assert [type(value) for value in seen] == [int, int, int, float]


async def test_hooks_progress_and_retry_from_dead_letters(app: pgq.App) -> None:
    events: list[tuple[str, int]] = []
    seen_progress: list[float | None] = []
    fail = True

    @app.task(max_attempts=1)
    def once() -> str:
        if fail:
            raise RuntimeError("first run fails")
        return "second run works"

    @app.task(pass_context=True)
    async def steps(ctx: pgq.JobContext) -> None:
        ctx.set_progress(0.5, "half way")
        for _ in range(40):
            current = await asyncio.to_thread(app.get_job, ctx.job.id)
            if current is not None and current.progress == 0.5:
                seen_progress.append(current.progress)
                assert current.progress_message == "half way"
                return
            await asyncio.sleep(0.05)

    def record(event: Event) -> None:
        events.append((event.name, event.job.id))

    async def record_async(event: Event) -> None:
        events.append(("async:" + event.name, event.job.id))

    for name in ("job_started", "job_completed", "job_failed"):
        app.on(name, record)
    app.on("job_failed")(record_async)  # the decorator form
    with pytest.raises(pgq.ConfigurationError, match="unknown event"):
        app.on("job_exploded", record)

    failing, stepping = once.enqueue(), steps.enqueue()
    await run_until(app, finished(app, [failing, stepping]))
    assert job(app, failing).status == "failed"
    assert seen_progress == [0.5]
    assert ("job_failed", failing) in events and ("async:job_failed", failing) in events
    assert ("job_completed", stepping) in events and ("job_started", stepping) in events

    with pytest.raises(pgq.InvalidState, match="only failed or cancelled"):
        app.retry(stepping)
    fail = False
    app.retry(failing)
    again = job(app, failing)
    assert again.status == "pending" and again.max_attempts == 2 and len(again.errors) == 1
    await run_until(app, finished(app, [failing]))
    assert job(app, failing).result == "second run works" and job(app, failing).attempts == 2


@pytest.mark.parametrize("result", ["late", None], ids=["with a result: finish_jobs", "plain: finish_completed"])
async def test_worker_row_and_fenced_finish(app: pgq.App, conn: Any, result: str | None) -> None:
    """A finish from a worker that no longer owns the attempt is refused."""
    release = asyncio.Event()

    @app.task
    async def slow() -> str | None:
        await release.wait()
        return result

    job_id = slow.enqueue()
    async with app.worker(poll_interval=0.2) as worker:
        for _ in range(200):
            row = await asyncio.to_thread(
                lambda: conn.execute("select status, worker_id from pgq.jobs where id = %s", [job_id]).fetchone()
            )
            if row and row["status"] == "running":
                break
            await asyncio.sleep(0.05)
        assert row["worker_id"] == worker.id
        workers = conn.execute("select status, queues, concurrency from pgq.workers").fetchall()
        assert workers == [{"status": "running", "queues": ["default"], "concurrency": 100}]  # every task async
        # What the sweeper will do for a dead worker: give the job back and let another take it.
        conn.execute(
            "update pgq.jobs set status = 'running', worker_id = gen_random_uuid(), attempts = attempts + 1 "
            "where id = %s",
            [job_id],
        )
        release.set()
        await asyncio.sleep(0.5)
    row = conn.execute("select status, attempts from pgq.jobs where id = %s", [job_id]).fetchone()
    assert row == {"status": "running", "attempts": 2}  # the late finish did not touch it
    assert conn.execute("select count(*) as n from pgq.job_history").fetchone()["n"] == 0
    assert conn.execute("select status from pgq.workers").fetchone()["status"] == "stopped"


async def test_paused_queue_is_skipped(app: pgq.App, conn: Any) -> None:
    @app.task
    def work(q: str) -> None: ...

    conn.execute("insert into pgq.queues (name, paused) values ('held', true)")
    held = work.options(queue="held").enqueue(q="held")
    free = work.enqueue(q="default")
    await run_until(app, finished(app, [free]), queues=["held", "default"])
    assert job(app, held).status == "pending"
    conn.execute("update pgq.queues set paused = false where name = 'held'")
    await run_until(app, finished(app, [held]), queues=["held", "default"])


def test_concurrency_defaults_to_the_kind_of_handlers(app: pgq.App) -> None:
    """Without a setting, async slots are cheap (100) and plain handlers each take a thread (10)."""
    from pgq.worker import Worker

    @app.task
    async def fast() -> None: ...

    assert Worker(app).concurrency == 100

    @app.task
    def blocking() -> None: ...

    assert Worker(app).concurrency == 10
    assert Worker(app, concurrency=7).concurrency == 7
    configured = pgq.App(app.url, concurrency=3)  # as PGQ_CONCURRENCY=3 does
    configured.task(blocking.fn)
    assert Worker(configured).concurrency == 3


def test_bad_worker_options(app: pgq.App) -> None:
    from pgq.worker import Worker

    with pytest.raises(pgq.ConfigurationError, match="concurrency must be an integer >= 1"):
        Worker(app, concurrency=0)
    with pytest.raises(pgq.ConfigurationError, match=r"queue must be 1-128 ASCII letters.*got .bad queue."):
        Worker(app, queues=["bad queue"])
    with pytest.raises(pgq.ConfigurationError, match="at least one queue"):
        Worker(app, queues=[])


async def test_handler_errors_that_look_like_ours(app: pgq.App) -> None:
    """A handler's own TimeoutError, CancelledError or SystemExit is a failed attempt like any other."""

    @app.task(max_attempts=2, backoff=0.05)  # no timeout configured
    async def own_timeout() -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)

    @app.task(max_attempts=2, backoff=0.05)
    async def own_cancel() -> None:
        inner = asyncio.create_task(asyncio.sleep(10))
        inner.cancel()
        await inner

    @app.task(max_attempts=2, backoff=0.05)
    async def exits() -> None:
        raise SystemExit(3)

    @app.task
    def after() -> str:
        return "alive"

    ids = [own_timeout.enqueue(), own_cancel.enqueue(), exits.enqueue()]
    await run_until(app, finished(app, ids), concurrency=3)
    for job_id, kind in zip(ids, ("TimeoutError", "CancelledError", "SystemExit"), strict=True):
        failed = job(app, job_id)
        assert failed.status == "failed" and failed.attempts == 2, failed
        assert [e["type"] for e in failed.errors] == [kind, kind]
    follow = after.enqueue()
    await run_until(app, finished(app, [follow]))
    assert job(app, follow).result == "alive"


def test_retry_delay_must_be_finite() -> None:
    for bad in (float("inf"), float("nan"), -1, "5"):
        with pytest.raises(pgq.ConfigurationError, match="finite number of seconds"):
            pgq.Retry(delay=bad)  # type: ignore[arg-type]


async def test_a_cancelled_job_that_fails_is_not_retried(app: pgq.App) -> None:
    started = threading.Event()

    @app.task(pass_context=True, max_attempts=5)
    def stubborn(ctx: pgq.JobContext) -> None:
        started.set()
        while not ctx.cancelled:
            time.sleep(0.01)
        raise RuntimeError("interrupted")

    job_id = stubborn.enqueue()
    async with app.worker(poll_interval=0.2):
        await asyncio.to_thread(started.wait, 10)
        await asyncio.to_thread(app.cancel, job_id)
        deadline = time.monotonic() + 10
        while not await asyncio.to_thread(finished(app, [job_id])):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert job(app, job_id).status == "cancelled" and job(app, job_id).attempts == 1


async def test_a_job_cancelled_before_it_starts_frees_its_slot(app: pgq.App) -> None:
    from pgq.worker import Worker

    @app.task
    async def quick() -> None: ...

    job_id = quick.enqueue()
    worker = Worker(app, concurrency=1)
    claimed = job(app, job_id)
    worker.start(claimed)
    worker.cancel_local(job_id)  # in the same loop turn: the task never takes its first step
    await asyncio.sleep(0.05)
    assert worker.running == {}
    assert [o.kind for o in worker.completer._queue] == ["cancelled"]


async def test_a_worker_declared_dead_claims_nothing_under_that_id(app: pgq.App, conn: Any) -> None:
    @app.task
    def work() -> None: ...

    async with app.worker(poll_interval=0.1, heartbeat_interval=0.3) as worker:
        old_id = worker.id
        for _ in range(200):  # registered?
            if conn.execute("update pgq.workers set status = 'dead' where id = %s", [old_id]).rowcount:
                break
            await asyncio.sleep(0.02)
        job_id = await asyncio.to_thread(work.enqueue)
        deadline = time.monotonic() + 10
        while not await asyncio.to_thread(finished(app, [job_id])):
            assert time.monotonic() < deadline, "the worker never re-registered"
            await asyncio.sleep(0.05)
        assert worker.id != old_id
    done = job(app, job_id)
    assert done.worker_id == worker.id and done.worker_id != old_id


async def test_handlers_that_ignore_their_timeout_do_not_hold_a_slot(app: pgq.App) -> None:
    release = asyncio.Event()

    @app.task(timeout=0.3, max_attempts=1)
    async def deaf() -> None:
        while not release.is_set():  # swallows every cancellation until the test lets it go
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass

    @app.task(timeout=0.3, max_attempts=1)
    def busy() -> None:
        end = time.monotonic() + 2
        while time.monotonic() < end:  # CPU-bound, never looks at ctx.cancelled
            sum(range(1000))

    @app.task
    def after() -> str:
        return "ran"

    ids = [deaf.enqueue(), busy.enqueue(), after.enqueue()]
    try:
        await run_until(app, finished(app, ids), concurrency=1)  # one slot: each must free it
    finally:
        release.set()
    assert [job(app, i).status for i in ids] == ["failed", "failed", "completed"]
    assert job(app, ids[0]).errors[0]["type"] == "Timeout" and job(app, ids[1]).errors[0]["type"] == "Timeout"


async def test_the_handlers_last_progress_message_is_kept_with_its_outcome(app: pgq.App) -> None:
    @app.task(pass_context=True, max_attempts=1)
    async def encode(ctx: pgq.JobContext) -> None:
        ctx.set_progress(0.9, "segment 10 of 10")
        await asyncio.sleep(1.2)  # the progress writer (every 0.5 s) has written it
        ctx.set_progress(1.0, "done")  # and returns at once: no pass of the writer after this

    job_id = encode.enqueue()
    await run_until(app, finished(app, [job_id]))
    done = job(app, job_id)
    assert done.status == "completed" and (done.progress, done.progress_message) == (1.0, "done")


def lose_claim_answers(monkeypatch: pytest.MonkeyPatch, *, first_only: bool) -> list[int]:
    """Make ``repo.claim`` lose its answer after the claim committed in the database, as a
    connection that breaks on the way back does: the first claim that took jobs, or every
    one. The returned list gets the ids of the jobs whose claim answer was lost."""
    from pgq.db import repo

    real_claim = repo.claim
    lost: list[int] = []

    async def claim_answer_lost(*args: Any, **kwargs: Any) -> Any:
        jobs, wait = await real_claim(*args, **kwargs)
        if jobs and not (first_only and lost):
            lost.extend(job.id for job in jobs)
            raise psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")
        return jobs, wait

    monkeypatch.setattr(repo, "claim", claim_answer_lost)
    return lost


async def test_jobs_of_a_claim_whose_answer_was_lost_go_back_to_pending(
    app: pgq.App, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim committed in the database whose answer never reached the worker (its
    connection broke on the way back) leaves a job running under the worker's id but
    held nowhere. No index keeps a worker's jobs (migration 0022), so the heartbeat
    scans for such jobs only after a failed claim, once the claim has surely ended:
    the job goes back to pending with its attempt counted, and runs again."""

    @app.task
    def work() -> None: ...

    lost = lose_claim_answers(monkeypatch, first_only=True)
    async with app.worker(poll_interval=0.1, heartbeat_interval=0.2) as worker:
        worker.orphan_grace = 0.3  # the claim above has ended: its answer is what was lost
        job_id = await asyncio.to_thread(work.enqueue)
        deadline = time.monotonic() + 20
        while not await asyncio.to_thread(finished(app, [job_id])):
            assert time.monotonic() < deadline, "the orphaned job never ran"
            await asyncio.sleep(0.05)
        assert lost == [job_id] and worker.claim_lost_at is None
        worker_id = worker.id
    ran = job(app, job_id)
    assert ran.status == "completed" and ran.attempts == 2  # the lost claim's attempt stays counted
    # Its stop held nothing and its lost claim was looked after: released at once.
    row = conn.execute("select status, released_at from pgq.workers where id = %s", [worker_id]).fetchone()
    assert row["status"] == "stopped" and row["released_at"] is not None


async def test_a_worker_that_stops_with_a_lost_claim_unlooked_after_is_not_released(
    app: pgq.App, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped before its heartbeat could look for a lost claim's jobs, the worker leaves
    that to the sweeper: its row is not released, so the rescue scans for its jobs."""

    @app.task
    def work() -> None: ...

    lose_claim_answers(monkeypatch, first_only=False)
    async with app.worker(poll_interval=0.1) as worker:
        job_id = await asyncio.to_thread(work.enqueue)
        deadline = time.monotonic() + 10
        while worker.claim_lost_at is None:
            assert time.monotonic() < deadline, "no claim was lost"
            await asyncio.sleep(0.05)
        worker_id = worker.id
    row = conn.execute("select status, released_at from pgq.workers where id = %s", [worker_id]).fetchone()
    assert row["status"] == "stopped" and row["released_at"] is None
    held = job(app, job_id)
    assert held.status == "running" and held.worker_id == worker_id  # for the sweeper's rescue
