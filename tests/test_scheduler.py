"""Cron schedules: declaration, exactly one job per tick, catch-up, run-time control.

Missed ticks are made by back-dating ``next_run_at``, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import pgq
from pgq.maintenance.scheduler import Scheduler, plan_tick


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("catch_up", "tick", "now", "runs", "next_run"),
    [
        # on time: run, move to the following tick
        ("once", "2026-01-01 10:05", "2026-01-01 10:05:00.3", True, "2026-01-01 10:10"),
        ("none", "2026-01-01 10:05", "2026-01-01 10:07", True, "2026-01-01 10:10"),
        ("all", "2026-01-01 10:05", "2026-01-01 10:05:01", True, "2026-01-01 10:10"),
        # three ticks missed (10:05, 10:10, 10:15 all due at 10:17)
        ("once", "2026-01-01 10:05", "2026-01-01 10:17", True, "2026-01-01 10:20"),
        ("all", "2026-01-01 10:05", "2026-01-01 10:17", True, "2026-01-01 10:10"),
        ("none", "2026-01-01 10:05", "2026-01-01 10:17", False, "2026-01-01 10:20"),
    ],
)
def test_plan_tick(catch_up: str, tick: str, now: str, runs: bool, next_run: str) -> None:
    assert plan_tick(catch_up, "*/5 * * * *", "UTC", at(tick), at(now)) == (runs, at(next_run))


def test_seconds_field_and_time_zones() -> None:
    assert plan_tick("once", "*/2 * * * * *", "UTC", at("2026-01-01 10:00:02"), at("2026-01-01 10:00:02.1")) == (
        True,
        at("2026-01-01 10:00:04"),
    )
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    winter = plan_tick("once", "0 9 * * *", "Europe/Paris", at("2026-01-10 08:00"), at("2026-01-10 08:00:01"))
    summer = plan_tick("once", "0 9 * * *", "Europe/Paris", at("2026-07-10 07:00"), at("2026-07-10 07:00:01"))
    assert winter[1].astimezone(UTC) == at("2026-01-11 08:00")
    assert summer[1].astimezone(UTC) == at("2026-07-11 07:00")


def test_bad_declarations_fail_at_once() -> None:
    app = pgq.App("postgresql://localhost/unused")

    @app.task
    def report(week: int = 0) -> None: ...

    with pytest.raises(pgq.ConfigurationError, match="invalid cron expression '61 \\* \\* \\* \\*'"):
        app.periodic(cron="61 * * * *")(report)
    with pytest.raises(pgq.ConfigurationError, match="invalid cron expression 'every day'"):
        app.periodic(cron="every day")(report)
    with pytest.raises(pgq.ConfigurationError, match="unknown time zone 'Mars/Olympus'"):
        app.periodic(cron="* * * * *", timezone="Mars/Olympus")(report)
    with pytest.raises(pgq.ConfigurationError, match="catch_up must be one of"):
        app.periodic(cron="* * * * *", catch_up="some")(report)
    with pytest.raises(pgq.ConfigurationError, match=r"stacked above @app\.task"):
        app.periodic(cron="* * * * *")(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(pgq.InvalidJob, match="unexpected keyword argument 'weak'"):
        app.periodic(cron="* * * * *", args={"weak": 1})(report)
    with pytest.raises(pgq.ConfigurationError, match="not JSON-serialisable"):
        app.periodic(cron="* * * * *", args={"week": object()})(report)
    with pytest.raises(pgq.ConfigurationError, match="queue must be"):
        app.periodic(cron="* * * * *", queue="no spaces please")(report)
    with pytest.raises(pgq.ConfigurationError, match="priority must be between"):
        app.periodic(cron="* * * * *", priority=2**40)(report)
    app.periodic(cron="*/10 * * * * *", name="fast")(report)
    app.periodic(cron="0 8 * * 1", args={"week": 1})(report)
    with pytest.raises(pgq.ConfigurationError, match="declared twice"):
        app.periodic(cron="0 9 * * 1")(report)  # a second schedule of one task needs its own name
    assert set(app.schedules) == {"fast", "report"}


@contextlib.asynccontextmanager
async def schedulers(app: pgq.App, database_url: str, count: int) -> AsyncIterator[list[Scheduler]]:
    connections = [
        await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) for _ in range(count)
    ]

    def factory(conn: psycopg.AsyncConnection[Any]) -> Any:
        @contextlib.asynccontextmanager
        async def connection() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
            yield conn

        return connection

    try:
        yield [Scheduler(app, factory(conn)) for conn in connections]
    finally:
        for conn in connections:
            await conn.close()


def backdate(conn: Any, name: str, minutes: int) -> None:
    conn.execute(
        "update pgq.schedules set next_run_at = date_trunc('minute', now()) - make_interval(mins => %s) "
        "where name = %s",
        [minutes, name],
    )


async def test_racing_schedulers_take_each_tick_once(app: pgq.App, database_url: str, conn: Any) -> None:
    @app.periodic(cron="* * * * *", catch_up="all")
    @app.task
    def minutely() -> None: ...

    async with schedulers(app, database_url, 6) as racing:
        await racing[0].sync_declared()
        backdate(conn, "minutely", 20)  # 21 ticks due, counting the current minute's
        for _ in range(30):
            results = await asyncio.gather(*(s.run_once() for s in racing))
            if sum(results) == 0:
                break
    rows = conn.execute("select run_at from pgq.jobs where task = 'minutely' order by run_at").fetchall()
    ticks = [row["run_at"] for row in rows]
    assert len(ticks) == 21 and len(set(ticks)) == 21
    assert all(later - earlier == timedelta(minutes=1) for earlier, later in itertools.pairwise(ticks))


@pytest.mark.parametrize(("catch_up", "jobs"), [("once", 1), ("all", 11), ("none", 0)])
async def test_catch_up_after_downtime(app: pgq.App, database_url: str, conn: Any, catch_up: str, jobs: int) -> None:
    @app.periodic(cron="* * * * *", catch_up=catch_up)
    @app.task
    def minutely() -> None: ...

    async with schedulers(app, database_url, 1) as (scheduler,):
        await scheduler.sync_declared()
        backdate(conn, "minutely", 10)
        while await scheduler.run_once():
            pass
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == jobs
    schedule = app.get_schedule("minutely")
    assert schedule is not None and schedule.next_run_at is not None
    assert schedule.next_run_at > conn.execute("select now() as now").fetchone()["now"]


async def test_code_schedules_are_upserted_and_removed_ones_disabled(
    app: pgq.App, database_url: str, conn: Any
) -> None:
    @app.task
    def nightly() -> None: ...

    @app.task
    def hourly() -> None: ...

    app.periodic(cron="0 3 * * *")(nightly)
    app.periodic(cron="0 * * * *")(hourly)
    async with schedulers(app, database_url, 1) as (scheduler,):
        await scheduler.sync_declared()
    first = app.get_schedule("nightly")
    assert first is not None and first.source == "code" and first.enabled and first.next_run_at is not None
    assert (first.next_run_at.astimezone(UTC).hour, first.next_run_at.minute) == (3, 0)

    # The next deploy: nightly moved to 04:00, hourly removed from code.
    redeployed = pgq.App(database_url)
    redeployed.task(nightly.fn)
    redeployed.task(hourly.fn)
    redeployed.periodic(cron="0 4 * * *")(redeployed.tasks["nightly"])
    async with schedulers(redeployed, database_url, 1) as (scheduler,):
        await scheduler.sync_declared()
        # an unchanged schedule keeps its next_run_at across deploys
        await scheduler.sync_declared()
    moved, removed = app.get_schedule("nightly"), app.get_schedule("hourly")
    assert moved is not None and moved.cron == "0 4 * * *" and moved.next_run_at.astimezone(UTC).hour == 4  # type: ignore[union-attr]
    assert removed is not None and not removed.enabled  # disabled, not deleted
    redeployed.close()


async def test_runtime_schedules_and_a_broken_one(app: pgq.App, database_url: str, conn: Any) -> None:
    @app.task
    def greet(name: str) -> None: ...

    schedule = app.add_schedule("greeter", "*/5 * * * *", "greet", {"name": "ada"}, queue="mail")
    assert schedule.source == "runtime" and schedule.enabled and schedule.queue == "mail"
    with pytest.raises(pgq.ConfigurationError, match="invalid cron expression"):
        app.add_schedule("bad", "*/5 * * *", "greet", {"name": "x"})
    with pytest.raises(pgq.ConfigurationError, match="unknown time zone"):
        app.add_schedule("bad", "*/5 * * * *", "greet", {"name": "x"}, timezone="Europe/Atlantis")
    with pytest.raises(pgq.InvalidJob, match="missing a required argument"):
        app.add_schedule("bad", "*/5 * * * *", "greet")
    assert [s.name for s in app.list_schedules()] == ["greeter"]

    job_id = app.trigger_schedule("greeter")
    triggered = app.get_job(job_id)
    assert triggered is not None and triggered.queue == "mail" and triggered.args == {"name": "ada"}

    assert not app.disable_schedule("greeter").enabled
    assert app.enable_schedule("greeter").enabled
    # A run-time schedule whose args do not fit the handler: its tick is taken, no job, no crash.
    conn.execute("update pgq.schedules set args = '{\"nom\": 1}' where name = 'greeter'")
    backdate(conn, "greeter", 1)
    async with schedulers(app, database_url, 1) as (scheduler,):
        assert await scheduler.run_once() == 0
        assert await scheduler.run_once() == 0
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 1  # only the triggered one
    assert app.get_schedule("greeter").next_run_at > datetime.now(UTC) - timedelta(seconds=5)  # type: ignore[union-attr]
    app.remove_schedule("greeter")
    with pytest.raises(pgq.ConfigurationError, match="no schedule named 'greeter'"):
        app.remove_schedule("greeter")


def test_schedules_cli(database_url: str) -> None:
    def pgq_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pgq", *args, "--database-url", database_url],
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = pgq_cli(
        "schedules",
        "add",
        "digest",
        "--cron",
        "0 7 * * *",
        "--task",
        "digest",
        "--args",
        '{"kind": "daily"}',
        "--timezone",
        "Europe/Paris",
    )
    assert added.returncode == 0, added.stderr
    assert "next run" in added.stdout
    listed = pgq_cli("schedules", "list", "--json")
    rows = json.loads(listed.stdout)
    assert (
        rows[0]["name"] == "digest" and rows[0]["timezone"] == "Europe/Paris" and rows[0]["args"] == {"kind": "daily"}
    )
    assert "digest" in pgq_cli("schedules", "list").stdout
    assert pgq_cli("schedules", "disable", "digest").stdout.startswith("schedule digest disabled")
    assert pgq_cli("schedules", "enable", "digest").stdout.startswith("schedule digest enabled")
    assert pgq_cli("schedules", "trigger", "digest").stdout.strip().isdigit()
    assert pgq_cli("schedules", "remove", "digest").returncode == 0
    for args, message in (
        (("schedules", "add", "x", "--cron", "* * *", "--task", "t"), "invalid cron expression"),
        (("schedules", "add", "x", "--cron", "* * * * *", "--task", "t", "--timezone", "CET+1"), "unknown time zone"),
        (
            ("schedules", "add", "x", "--cron", "* * * * *", "--task", "t", "--args", "[]"),
            "--args must be a JSON object",
        ),
        (("schedules", "remove", "nothing"), "no schedule named 'nothing'"),
    ):
        result = pgq_cli(*args)
        assert result.returncode == 2 and message in result.stderr, result.stderr


async def test_a_broken_row_is_disabled_and_the_others_still_fire(app: pgq.App, database_url: str, conn: Any) -> None:
    @app.task
    def ping() -> None: ...

    app.add_schedule("good", "* * * * *", "ping")
    app.add_schedule("bad", "* * * * *", "ping")
    conn.execute("update pgq.schedules set cron = 'every full moon' where name = 'bad'")
    backdate(conn, "bad", 2)
    backdate(conn, "good", 1)
    async with schedulers(app, database_url, 1) as (scheduler,):
        assert await scheduler.run_once() == 1
    assert not app.get_schedule("bad").enabled  # type: ignore[union-attr]
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 1


async def test_an_operators_disable_survives_deploys(app: pgq.App, database_url: str) -> None:
    @app.task
    def nightly() -> None: ...

    app.periodic(cron="0 3 * * *")(nightly)
    async with schedulers(app, database_url, 1) as (scheduler,):
        await scheduler.sync_declared()
        app.disable_schedule("nightly")
        await scheduler.sync_declared()  # the next deploy
        assert not app.get_schedule("nightly").enabled  # type: ignore[union-attr]
        app.enable_schedule("nightly")
        # Removed from code, then declared again: enabled again.
        app.schedules.clear()
        await scheduler.sync_declared()
        assert not app.get_schedule("nightly").enabled  # type: ignore[union-attr]
        app.periodic(cron="0 3 * * *")(nightly)
        await scheduler.sync_declared()
        again = app.get_schedule("nightly")
        assert again is not None and again.enabled and again.next_run_at is not None


async def test_code_schedules_fire_only_in_the_app_that_declares_their_task(
    app: pgq.App, database_url: str, conn: Any
) -> None:
    """Two apps share a database: a worker of the other app does not fire this app's code
    schedules (nobody there runs their task), and its scheduler does not spin on their ticks."""

    @app.periodic(cron="* * * * *", catch_up="once")
    @app.task
    def minutely() -> None: ...

    other = pgq.App(database_url)

    @other.task
    def unrelated() -> None: ...

    app.add_schedule("runtime", "0 0 1 1 *", "anything")  # added at run time: any scheduler fires it
    try:
        async with schedulers(app, database_url, 1) as (own,), schedulers(other, database_url, 1) as (foreign,):
            await own.sync_declared()
            await foreign.sync_declared()
            backdate(conn, "minutely", 5)
            backdate(conn, "runtime", 5)
            assert await foreign.run_once() == 1  # the runtime schedule's tick, not minutely's
            assert foreign.next_interval() > 1, "a foreign schedule's overdue tick must not make it spin"
            assert conn.execute("select count(*) as n from pgq.jobs where task = 'minutely'").fetchone()["n"] == 0
            assert await own.run_once() == 1
        tasks = [row["task"] for row in conn.execute("select task from pgq.jobs order by id").fetchall()]
        assert tasks == ["anything", "minutely"]
    finally:
        other.close()


async def test_a_full_queue_refuses_a_ticks_job_and_the_schedule_goes_on(
    app: pgq.App, database_url: str, conn: Any, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    def ping() -> None: ...

    app.set_queue("default", max_pending=1)
    app.enqueue("ping")  # the queue is full
    app.add_schedule("every", "* * * * *", "ping")
    backdate(conn, "every", 0)  # this minute's tick is due
    async with schedulers(app, database_url, 1) as (scheduler,):
        assert await scheduler.run_once() == 0
        schedule = app.get_schedule("every")
        assert schedule is not None and schedule.enabled and schedule.last_job_id is None
        assert schedule.next_run_at is not None and schedule.next_run_at > datetime.now(UTC)  # the tick is taken
        assert "schedule every: tick" in caplog.text and "is full" in caplog.text
        assert conn.execute("select rejected from pgq.queues where name = 'default'").fetchone()["rejected"] == 1
        assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 1

        conn.execute("delete from pgq.jobs")  # room again: the next tick's job goes in
        backdate(conn, "every", 0)
        assert await scheduler.run_once() == 1
    after = app.get_schedule("every")
    assert after is not None and after.enabled and after.last_job_id is not None
