"""Transactional handlers (``@app.task(transactional=True)``): the handler's writes on
``ctx.connection`` and its job's completion commit together, once, or not at all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import pgq
import pgq.testing
from pgq.worker import lent_session
from tests.processes import FAST_MAINTENANCE, WorkerProcess, count, wait_for

EFFECTS = "create table effects (job_id bigint not null, attempt int not null, pid int)"


@pytest.fixture
def effects(conn: Any) -> Callable[[int], list[int]]:
    """The attempts whose effect committed, for a job."""
    conn.execute(EFFECTS)

    def attempts(job_id: int) -> list[int]:
        rows = conn.execute("select attempt from effects where job_id = %s order by attempt", [job_id]).fetchall()
        return [row["attempt"] for row in rows]

    return attempts


async def wait_until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := await asyncio.to_thread(check)):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return found


def status(app: pgq.App, job_id: int) -> str | None:
    job = app.get_job(job_id)
    return job.status if job else None


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_the_effect_and_the_completion_commit_together(
    app: pgq.App, conn: Any, effects: Callable[[int], list[int]], kind: str
) -> None:
    inside = threading.Event()
    release = threading.Event()

    def effect(ctx: pgq.JobContext) -> str:
        return "insert into effects (job_id, attempt) values (%s, %s)"

    if kind == "async":

        @app.task(transactional=True, name="move")
        async def move_async(ctx: pgq.JobContext, amount: int) -> dict[str, int]:
            assert isinstance(ctx.connection, psycopg.AsyncConnection)
            await ctx.connection.execute(effect(ctx), [ctx.job.id, ctx.attempt])
            inside.set()
            await asyncio.to_thread(release.wait, 30)
            return {"moved": amount}

    else:

        @app.task(transactional=True, name="move")
        def move_sync(ctx: pgq.JobContext, amount: int) -> dict[str, int]:
            assert isinstance(ctx.connection, psycopg.Connection)
            ctx.connection.execute(effect(ctx), [ctx.job.id, ctx.attempt])
            inside.set()
            release.wait(30)
            return {"moved": amount}

    job_id = app.enqueue("move", {"amount": 5})
    async with app.worker(poll_interval=0.2):
        await asyncio.to_thread(inside.wait, 30)
        # The handler wrote, and has not returned: nothing of it is visible, and the job runs.
        assert effects(job_id) == [] and status(app, job_id) == "running"
        release.set()
        await wait_until(lambda: status(app, job_id) == "completed")
        assert effects(job_id) == [1]
    job = app.get_job(job_id)
    assert job is not None and job.result == {"moved": 5} and job.attempts == 1
    idle = conn.execute(
        "select count(*) as n from pg_stat_activity where datname = current_database() and state like 'idle in%%'"
    ).fetchone()
    assert idle == {"n": 0}


async def test_a_raised_error_leaves_no_effect_and_the_job_is_retried(
    app: pgq.App, effects: Callable[[int], list[int]]
) -> None:
    @app.task(transactional=True, backoff=0)
    async def charge(ctx: pgq.JobContext) -> None:
        await ctx.connection.execute("insert into effects (job_id, attempt) values (%s, %s)", [ctx.job.id, ctx.attempt])
        if ctx.attempt == 1:
            raise RuntimeError("the card was declined")

    job_id = app.enqueue(charge)
    async with app.worker(poll_interval=0.2):
        await wait_until(lambda: status(app, job_id) == "completed")
    assert effects(job_id) == [2]  # the first attempt's write rolled back with its failure
    job = app.get_job(job_id)
    assert job is not None and job.attempts == 2 and job.errors[0]["type"] == "RuntimeError"


async def test_a_completion_the_fence_refuses_rolls_the_effect_back(
    app: pgq.App, conn: Any, effects: Callable[[int], list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    inside = threading.Event()
    release = threading.Event()

    @app.task(transactional=True)
    def pay(ctx: pgq.JobContext) -> None:
        ctx.connection.execute("insert into effects (job_id, attempt) values (%s, %s)", [ctx.job.id, ctx.attempt])
        inside.set()
        release.wait(30)

    job_id = app.enqueue(pay)
    async with app.worker(poll_interval=0.2, sweeper=False):
        await asyncio.to_thread(inside.wait, 30)
        # What the sweeper does to a frozen worker's job: it is given to another worker.
        conn.execute(
            "update pgq.jobs set worker_id = gen_random_uuid(), attempts = attempts + 1 where id = %s", [job_id]
        )
        release.set()
        await wait_until(lambda: "transaction rolled back" in caplog.text)
    assert effects(job_id) == []
    row = conn.execute("select status, attempts from pgq.jobs where id = %s", [job_id]).fetchone()
    assert row == {"status": "running", "attempts": 2}  # the other owner's, untouched


async def test_a_timeout_rolls_back_and_frees_the_connection(
    app: pgq.App, conn: Any, effects: Callable[[int], list[int]]
) -> None:
    @app.task(transactional=True, timeout=0.5, max_attempts=1)
    async def slow(ctx: pgq.JobContext) -> None:
        await ctx.connection.execute("insert into effects (job_id, attempt) values (%s, %s)", [ctx.job.id, ctx.attempt])
        await asyncio.sleep(30)

    job_id = app.enqueue(slow)
    async with app.worker(poll_interval=0.2):
        await wait_until(lambda: status(app, job_id) == "failed")
        # Rolled back, and the connection is back in its pool: not left idle in transaction.
        idle = conn.execute(
            "select count(*) as n from pg_stat_activity where datname = current_database() and state like 'idle in%%'"
        ).fetchone()
        assert idle == {"n": 0}
    assert effects(job_id) == []
    job = app.get_job(job_id)
    assert job is not None and job.errors[-1]["type"] == "Timeout"


def test_drain_runs_a_transactional_task_and_run_job_says_why_it_cannot(
    app: pgq.App, effects: Callable[[int], list[int]]
) -> None:
    @app.task(transactional=True)
    def book(ctx: pgq.JobContext, seat: str) -> str:
        ctx.connection.execute("insert into effects (job_id, attempt) values (%s, %s)", [ctx.job.id, ctx.attempt])
        return seat

    job_id = app.enqueue(book, {"seat": "12A"})
    (outcome,) = pgq.testing.drain(app)
    assert outcome.status == "completed" and outcome.result == "12A"
    assert effects(job_id) == [1]
    with pytest.raises(pgq.ConfigurationError, match=r"transactional.*drain"):
        pgq.testing.run_job(app, "book", {"seat": "1A"})


def test_what_cannot_be_transactional_is_refused_at_registration(app: pgq.App) -> None:
    with pytest.raises(pgq.ConfigurationError, match="not supported for batch tasks"):

        @app.task(transactional=True, batch_size=10)
        def many(jobs: list[pgq.Job]) -> list[None]:
            return [None for _ in jobs]

    with pytest.raises(pgq.ConfigurationError, match="transactional=True but takes no arguments"):

        @app.task(transactional=True)
        def nothing() -> None: ...


@pytest.mark.slow
def test_sigstop_rescue_and_sigcont_leave_the_effect_of_one_run(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A worker frozen mid-handler is declared dead, its job re-runs elsewhere and commits;
    then the frozen one wakes and its late commit is refused: one effect, the rescuer's."""
    db.execute(EFFECTS)
    app = pgq.App(database_url)
    frozen = start_worker(env=FAST_MAINTENANCE)
    job_id = app.enqueue("transfer", {"seconds": 1.5})
    wait_for(lambda: count(db, "select count(*) as n from runs where job_id = %s", job_id), 30, "the job to start")
    os.kill(frozen.process.pid, signal.SIGSTOP)
    try:
        other = start_worker(env=FAST_MAINTENANCE)
        done = wait_for(
            lambda: (j := app.get_job(job_id)) is not None and j.status == "completed" and j, 60, "the re-run elsewhere"
        )
    finally:
        os.kill(frozen.process.pid, signal.SIGCONT)
    # The frozen worker's handler wakes and runs to its end (it ignores cancellation).
    wait_for(
        lambda: count(db, "select count(*) as n from runs where job_id = %s and finished_at is not null", job_id) == 2,
        30,
        "the frozen worker's handler to finish its run",
    )
    for worker in (frozen, other):
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    # Checked once both workers have exited, so after any commit the late handler could make.
    effects = db.execute("select attempt, pid from effects where job_id = %s", [job_id]).fetchall()
    assert effects == [{"attempt": done.attempts, "pid": other.process.pid}]
    final = app.get_job(job_id)
    assert final == done and final is not None and final.result == "moved"
    app.close()


class Base(DeclarativeBase):
    pass


class Effect(Base):
    __tablename__ = "effects"
    job_id: Mapped[int] = mapped_column(primary_key=True)
    attempt: Mapped[int] = mapped_column(primary_key=True)
    pid: Mapped[int | None]


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_ctx_session_works_in_the_jobs_transaction(
    app: pgq.App, effects: Callable[[int], list[int]], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh engine, as in a new process: its first connection runs SQLAlchemy's set-up
    # queries and a rollback of its own, which must not end the session's savepoint.
    monkeypatch.setattr(lent_session, "_engine", None)
    monkeypatch.setattr(lent_session, "_async_engine", None)
    undone = "insert into effects (job_id, attempt) values (:id, 100)"
    if kind == "async":

        @app.task(transactional=True, name="book", backoff=0)
        async def book_async(ctx: pgq.JobContext) -> None:
            session = ctx.session
            await session.execute(text(undone), {"id": ctx.job.id})
            await session.rollback()  # undoes its own work only
            session.add(Effect(job_id=ctx.job.id, attempt=ctx.attempt))  # pending: pgq flushes it
            if ctx.attempt == 1:
                await session.commit()  # kept for the job's commit, which the error below prevents
                raise RuntimeError("the seat was taken")

    else:

        @app.task(transactional=True, name="book", backoff=0)
        def book_sync(ctx: pgq.JobContext) -> None:
            session = ctx.session
            session.execute(text(undone), {"id": ctx.job.id})
            session.rollback()
            session.add(Effect(job_id=ctx.job.id, attempt=ctx.attempt))
            if ctx.attempt == 1:
                session.commit()
                raise RuntimeError("the seat was taken")

    job_id = app.enqueue("book")
    async with app.worker(poll_interval=0.2):
        await wait_until(lambda: status(app, job_id) == "completed")
    assert effects(job_id) == [2]


def test_ctx_session_outside_a_transactional_task_says_so(app: pgq.App) -> None:
    @app.task(pass_context=True)
    def plain(ctx: pgq.JobContext) -> None:
        ctx.session  # noqa: B018

    app.enqueue(plain)
    outcome = pgq.testing.drain(app)[0]
    assert outcome.status == "retry" and outcome.error is not None
    assert "ctx.session exists in transactional tasks only" in outcome.error["message"]


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_job_enqueued_in_the_handlers_transaction_exists_only_if_it_commits(
    app: pgq.App, conn: Any, kind: str
) -> None:
    @app.task()
    def receipt(order: int) -> None: ...

    if kind == "async":

        @app.task(transactional=True, name="order", backoff=0)
        async def order_async(ctx: pgq.JobContext) -> None:
            await app.enqueue_async(receipt, {"order": ctx.attempt}, connection=ctx.connection)
            if ctx.attempt == 1:
                raise RuntimeError("out of stock")

    else:

        @app.task(transactional=True, name="order", backoff=0)
        def order_sync(ctx: pgq.JobContext) -> None:
            app.enqueue(receipt, {"order": ctx.attempt}, connection=ctx.connection)
            if ctx.attempt == 1:
                raise RuntimeError("out of stock")

    job_id = app.enqueue("order")
    async with app.worker(poll_interval=0.2):
        await wait_until(lambda: status(app, job_id) == "completed")
        rows = conn.execute("select args from pgq.all_jobs where task = 'receipt'").fetchall()
    assert [row["args"] for row in rows] == [{"order": 2}]  # the failed attempt's enqueue rolled back


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_ctx_session_on_a_fresh_engine_completes_at_the_first_attempt(
    app: pgq.App, effects: Callable[[int], list[int]], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new process's first session: SQLAlchemy's set-up of its first connection ends with a
    # rollback of its own, which must leave the session a savepoint to commit.
    monkeypatch.setattr(lent_session, "_engine", None)
    monkeypatch.setattr(lent_session, "_async_engine", None)
    if kind == "async":

        @app.task(transactional=True, name="record", max_attempts=1)
        async def record_async(ctx: pgq.JobContext) -> None:
            ctx.session.add(Effect(job_id=ctx.job.id, attempt=ctx.attempt))

    else:

        @app.task(transactional=True, name="record", max_attempts=1)
        def record_sync(ctx: pgq.JobContext) -> None:
            ctx.session.add(Effect(job_id=ctx.job.id, attempt=ctx.attempt))

    job_id = app.enqueue("record")
    (outcome,) = await pgq.testing.drain_async(app)
    assert outcome.status == "completed", outcome.error
    assert effects(job_id) == [1]


def as_url(dsn: str) -> str:
    """The tests' servers are given as libpq keywords; the example reads a URL, as users write it."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user, dbname, host, port = info.get("user", ""), info["dbname"], str(info.get("host", "")), info.get("port")
    if host.startswith("/"):
        return f"postgresql://{user}@/{dbname}?host={host}" + (f"&port={port}" if port else "")
    return f"postgresql://{user}@{host}{f':{port}' if port else ''}/{dbname}"


def test_the_fastapi_example_pays_each_order_once(
    database_url: str, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/worker.md's FastAPI + SQLAlchemy example, run as written (its URL aside)."""
    from fastapi.testclient import TestClient

    doc = (Path(__file__).parent.parent / "docs" / "worker.md").read_text()
    section = doc.split("### With FastAPI and SQLAlchemy", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'DATABASE_URL = "postgresql://localhost/shop"' in code
    code = code.replace('"postgresql://localhost/shop"', repr(as_url(database_url)))
    module = types.ModuleType("shop")  # SQLAlchemy resolves the models' annotations in their module
    monkeypatch.setitem(sys.modules, "shop", module)
    exec(compile(code, "docs/worker.md", "exec"), module.__dict__)
    shop = module.__dict__
    jobs: pgq.App = shop["jobs"]
    try:
        shop["Base"].metadata.create_all(shop["engine"])
        client = TestClient(shop["api"])
        first = client.post("/orders", params={"amount": 42}).json()
        (outcome,) = pgq.testing.drain(jobs)
        assert outcome.status == "completed", outcome.error
        second = client.post("/orders", params={"amount": 7}).json()
        (outcome,) = pgq.testing.drain(jobs)
        assert outcome.status == "completed", outcome.error
        rows = conn.execute(
            "select o.id, o.paid, p.amount from orders o join payments p on p.order_id = o.id order by o.id"
        ).fetchall()
        assert rows == [
            {"id": first["order"], "paid": True, "amount": 42},
            {"id": second["order"], "paid": True, "amount": 7},
        ]
        assert jobs.get_job(first["job"]).result == 1  # type: ignore[union-attr]
    finally:
        jobs.close()
        shop["engine"].dispose()
