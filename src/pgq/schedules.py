"""Cron schedules: declared in code with ``@app.periodic``, or at run time.

Each tick of a schedule becomes exactly one job, however many schedulers run:
the tick is taken by a conditional update of ``next_run_at`` in the
transaction that enqueues its job (see ``schedule_take_tick``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from pgq.app_part import AppPart
from pgq.cron import check_catch_up, check_cron, check_timezone, next_tick
from pgq.db import store
from pgq.enqueueing import prepare
from pgq.errors import ConfigurationError, PgqError
from pgq.job import JobSpec
from pgq.payload import encode_args

NAME_LIMIT = 200


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule as declared: what to run and when."""

    name: str
    cron: str
    task: str
    args: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    #: After downtime: "once" (one job for all missed ticks), "all" (one per tick), "none" (skip them).
    catch_up: str = "once"
    enabled: bool = True


@dataclass(frozen=True)
class Schedule:
    """A row of ``schedules``."""

    name: str
    cron: str
    timezone: str
    task: str
    args: dict[str, Any]
    queue: str | None
    priority: int | None
    max_attempts: int | None
    catch_up: str
    enabled: bool
    source: str
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Schedule:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


def check_spec(spec: ScheduleSpec, max_payload_bytes: int) -> ScheduleSpec:
    """Raise :class:`ConfigurationError` for anything a scheduler could trip on later."""
    if not isinstance(spec.name, str) or not spec.name.strip() or len(spec.name) > NAME_LIMIT:
        raise ConfigurationError(f"schedule name must be 1-{NAME_LIMIT} characters, got {spec.name!r}")
    cron = check_cron(spec.cron)
    check_timezone(spec.timezone)
    check_catch_up(spec.catch_up)
    if not isinstance(spec.task, str) or not spec.task:
        raise ConfigurationError(f"schedule {spec.name!r}: task must be a task name, got {spec.task!r}")
    try:
        encode_args(spec.args, max_payload_bytes, spec.task)
        # The same checks as an enqueue of its job: queue name, priority and attempts ranges.
        prepare(
            JobSpec(spec.task, spec.args, queue=spec.queue, priority=spec.priority, max_attempts=spec.max_attempts),
            None,
            max_payload_bytes,
            strict=False,
        )
    except PgqError as exc:
        raise ConfigurationError(f"schedule {spec.name!r}: {exc}") from None
    if cron != spec.cron:
        spec = ScheduleSpec(**{**spec.__dict__, "cron": cron})
    return spec


def upsert_params(spec: ScheduleSpec, source: str, db_now: datetime) -> store.ScheduleUpsert:
    return {
        "name": spec.name,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "task": spec.task,
        "args": json.dumps(spec.args or {}),
        "queue": spec.queue,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "catch_up": spec.catch_up,
        "enabled": spec.enabled,
        "source": source,
        "next_run_at": next_tick(spec.cron, spec.timezone, db_now),
    }


class ScheduleControls(AppPart):
    """The schedule operations of :class:`pgq.App` (its part ``_schedule_controls``)."""

    def add_schedule(
        self,
        name: str,
        cron: str,
        task: str,
        args: dict[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        catch_up: str = "once",
        enabled: bool = True,
    ) -> Schedule:
        """Create or replace a schedule at run time (it survives deploys: its source is ``runtime``)."""
        task_name = getattr(task, "name", task)
        registered = self.app.tasks.get(task_name) if isinstance(task_name, str) else None
        if registered is not None:
            args = registered.stored_schedule_args(args or {}, self.app.settings.max_payload_bytes)
        spec = check_spec(
            ScheduleSpec(name, cron, task_name, args or {}, timezone, queue, priority, max_attempts, catch_up, enabled),
            self.app.settings.max_payload_bytes,
        )
        now = store.db_now.run(self.app.db, {})[0]["db_now"]
        rows = store.schedule_upsert.run(self.app.db, upsert_params(spec, "runtime", now))
        return Schedule.from_row(rows[0])

    def list_schedules(self) -> list[Schedule]:
        return [Schedule.from_row(row) for row in store.schedule_list.run(self.app.db, {})]

    def get_schedule(self, name: str) -> Schedule | None:
        rows = store.schedule_get.run(self.app.db, {"name": name})
        return Schedule.from_row(rows[0]) if rows else None

    def remove_schedule(self, name: str) -> None:
        """Delete a schedule. (One declared in code comes back at the next worker start; disable it instead.)"""
        if not store.schedule_delete.run(self.app.db, {"name": name}):
            raise ConfigurationError(f"no schedule named {name!r}")

    def enable_schedule(self, name: str, enabled: bool = True) -> Schedule:
        """Enable (from the next tick on: missed ticks are skipped) or disable a schedule."""
        schedule = self.get_schedule(name)
        if schedule is None:
            raise ConfigurationError(f"no schedule named {name!r}")
        now = store.db_now.run(self.app.db, {})[0]["db_now"]
        rows = store.schedule_set_enabled.run(
            self.app.db,
            {"name": name, "enabled": enabled, "next_run_at": next_tick(schedule.cron, schedule.timezone, now)},
        )
        return Schedule.from_row(rows[0])

    def disable_schedule(self, name: str) -> Schedule:
        return self.enable_schedule(name, enabled=False)

    def trigger_schedule(self, name: str) -> int:
        """Enqueue the schedule's job now, outside its ticks; returns the job id. The schedule's
        last run and last job become this one (its next tick stays as it was)."""
        schedule = self.get_schedule(name)
        if schedule is None:
            raise ConfigurationError(f"no schedule named {name!r}")
        job_id = self.app.enqueue(
            schedule.task,
            schedule.args,
            queue=schedule.queue,
            priority=schedule.priority,
            max_attempts=schedule.max_attempts,
        )
        store.schedule_triggered.run(self.app.db, {"name": name, "job_id": job_id})
        return job_id
