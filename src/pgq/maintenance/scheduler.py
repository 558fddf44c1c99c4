"""The scheduler: turns each due cron tick into exactly one job.

Every worker runs one (unless ``--no-scheduler``); they need no leader. A tick
is taken by ``schedule_take_tick`` (a conditional update of ``next_run_at``) in
the same transaction as the job's insert, so of two schedulers racing for a
tick exactly one commits both, and a crash between the two commits neither.
All times are the database's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from pgq.cron import next_tick
from pgq.db import store
from pgq.db.connection import Row, run_async
from pgq.errors import PgqError, QueueFull
from pgq.maintenance.service import Service
from pgq.schedules import upsert_params
from pgq.throttle import LogWindow

if TYPE_CHECKING:
    from pgq.app import App
    from pgq.enqueueing import PreparedJob

log = logging.getLogger("pgq.scheduler")

#: The longest the scheduler sleeps, so that schedules added at run time are seen soon.
MAX_SLEEP = 5.0

Connection = Callable[[], contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Row]]]


def plan_tick(catch_up: str, cron: str, timezone: str, tick: datetime, now: datetime) -> tuple[bool, datetime]:
    """Whether the due ``tick`` gets a job, and the next ``next_run_at``.

    Ticks are *missed* when the one after ``tick`` is due as well (the
    scheduler was away). ``once`` runs one job for all of them and moves on to
    the first tick after now; ``all`` runs this one and moves to the next (the
    following passes run the rest); ``none`` skips them all.
    """
    following = next_tick(cron, timezone, tick)
    if catch_up == "all" or following > now:
        return True, following
    return catch_up == "once", next_tick(cron, timezone, now)


class Scheduler(Service):
    name = "scheduler"

    def __init__(self, app: App, connection: Connection, queues: list[str] | None = None) -> None:
        super().__init__(interval=MAX_SLEEP)
        self.app = app
        self.schema = app.schema
        self.connection = connection
        self.queues = queues
        self._wait = 0.0
        self._synced = False
        self._job_errors = LogWindow(log, 60.0)

    async def sync_declared(self) -> None:
        """Upsert the schedules declared in code, and disable those removed from it."""
        declared = list(self.app.schedules.values())
        async with self.connection() as conn:
            now = (await store.db_now.fetch_async(conn, self.schema, {}))[0]["db_now"]
            async with conn.transaction():
                for spec in declared:
                    task = self.app.tasks[spec.task]
                    stored = task.stored_schedule_args(spec.args, self.app.settings.max_payload_bytes)
                    row = upsert_params(dataclasses.replace(spec, args=stored), "code", now)
                    await store.schedule_upsert.fetch_async(conn, self.schema, row)
                gone = await store.schedule_disable_missing.fetch_async(
                    conn, self.schema, {"declared": [s.name for s in declared], "tasks": sorted(self.app.tasks)}
                )
                disabled = [row["name"] for row in gone]
        if declared:
            log.info("schedules declared in code: %s", ", ".join(s.name for s in declared))
        if disabled:
            log.warning("schedules no longer declared in code were disabled (not deleted): %s", ", ".join(disabled))

    async def run_once(self) -> int:
        """Enqueue the jobs of every due tick; returns how many jobs it enqueued."""
        if not self._synced:
            await self.sync_declared()
            self._synced = True
        enqueued = 0
        async with self.connection() as conn:
            mine: store.ByTasks = {"tasks": self.app.tasks.names()}
            for row in await store.schedule_due.fetch_async(conn, self.schema, mine):
                try:
                    enqueued += await self._fire(conn, row)
                except (PgqError, ValueError, KeyError) as exc:
                    # A row written by hand with a bad cron or zone must not block the others.
                    log.error("schedule %s is invalid and was disabled: %s", row["name"], exc)
                    await store.schedule_set_enabled.fetch_async(
                        conn, self.schema, {"name": row["name"], "enabled": False, "next_run_at": None}
                    )
            waits = await store.schedule_next_wait.fetch_async(conn, self.schema, mine)
            wait = waits[0].get("wait") if waits else None
        self._wait = MAX_SLEEP if wait is None else float(wait)
        return enqueued

    def next_interval(self) -> float:
        return max(0.005, min(self._wait, MAX_SLEEP))

    async def _fire(self, conn: psycopg.AsyncConnection[Row], row: dict[str, Any]) -> int:
        name, tick, now = row["name"], row["next_run_at"], row["db_now"]
        run, next_run_at = plan_tick(row["catch_up"], row["cron"], row["timezone"], tick, now)
        spec: PreparedJob | None = None
        if run:
            try:
                from pgq.enqueueing import prepare
                from pgq.job import JobSpec

                # run_at is the tick itself: the job is due at its tick, and the
                # tick it stands for stays readable in the job's row.
                spec = prepare(
                    JobSpec(
                        task=row["task"],
                        args=row["args"],
                        queue=row["queue"],
                        priority=row["priority"],
                        run_at=tick,
                        max_attempts=row["max_attempts"],
                    ),
                    self.app.tasks.get(row["task"]),
                    self.app.settings.max_payload_bytes,
                    strict=False,
                )
            except PgqError as exc:
                # The tick is still taken: a broken schedule must not retry every pass.
                self._job_errors.warning("schedule %s: cannot enqueue its job: %s", name, exc)
        async with conn.transaction():
            taken = await store.schedule_take_tick.fetch_async(
                conn, self.schema, {"name": name, "tick": tick, "next_run_at": next_run_at}
            )
            if not taken:
                return 0  # another scheduler took this tick
            if spec is None:
                if not run:
                    log.info("schedule %s: skipped missed ticks (catch_up='none'); next at %s", name, next_run_at)
                return 0
            from pgq.db.flows import drive_async
            from pgq.enqueueing import insert_one, rejected_count

            try:
                # A savepoint: a full queue refuses this tick's job, and the tick stays taken.
                async with conn.transaction():
                    job_id = await drive_async(insert_one(self.schema, spec), lambda sql, p: run_async(conn, sql, p))
            except QueueFull as full:
                refused = rejected_count(full, [spec])
                if refused is not None:
                    await store.ops_count_rejected.fetch_async(conn, self.schema, refused)
                log.warning(
                    "schedule %s: tick %s was not enqueued: %s",
                    name,
                    tick.isoformat(),
                    full,
                    extra={"event": "schedule_rejected", "schedule": name, "queue": spec["queue"]},
                )
                return 0
            await store.schedule_set_last_job.fetch_async(conn, self.schema, {"name": name, "job_id": job_id})
        log.info(
            "schedule %s: tick %s enqueued job %s",
            name,
            tick.isoformat(),
            job_id,
            extra={"event": "schedule_fired", "schedule": name, "job_id": job_id},
        )
        return 1
