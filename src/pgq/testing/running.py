"""Running jobs inside the test's process: ``drain`` (through the queue) and
``run_job`` (one handler, no queue).

Both use the worker's own :class:`~pgq.worker.executor.Executor`, so a handler
is called exactly as a worker calls it: async handlers on the event loop, plain
ones in a thread, with its timeout, its context and the same classification of
what it raised (retry, permanent failure, out of attempts).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar, Unpack

import psycopg
from psycopg.rows import dict_row

from pgq.app import App, TaskRef
from pgq.context import JobContext
from pgq.db import repo, store
from pgq.db.connection import Row, connection_kwargs
from pgq.enqueueing import prepare
from pgq.errors import ConfigurationError, UnknownTask, unknown_options
from pgq.events import Event
from pgq.job import Job, JobSpec
from pgq.task import Task
from pgq.worker.completer import as_row
from pgq.worker.executor import Executor, RunningJob
from pgq.worker.outcome import Outcome
from pgq.worker.transactional import Transactions

log = logging.getLogger("pgq.testing")
T = TypeVar("T")

#: ``drain`` stops with an error after this many jobs: a job that enqueues itself forever.
MAX_JOBS = 1_000


@dataclass(frozen=True)
class JobOutcome:
    """What one attempt of a job came to."""

    #: The job as it was run: ``attempts`` counts this attempt.
    job: Job
    #: ``completed``, ``failed`` (for good), ``retry`` (failed; the job waits out its backoff),
    #: ``snooze`` (the handler raised pgq.Snooze: the job waits, no attempt counted) or
    #: ``cancelled``.
    status: str
    #: The handler's return value, as stored (through JSON); None if it returned nothing.
    result: Any = None
    #: The error entry written to the job: ``type``, ``message``, ``traceback``, ``attempt``.
    error: dict[str, Any] | None = None
    #: Seconds until the job runs again (``status`` ``retry`` or ``snooze``).
    retry_in: float | None = None
    #: Seconds the attempt took.
    duration: float = 0.0
    #: The last progress the handler reported (``ctx.set_progress``).
    progress: float | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def __str__(self) -> str:
        text = f"job {self.job.id} {self.job.task} (attempt {self.job.attempts}/{self.job.max_attempts}): {self.status}"
        if self.error:
            text += f": {self.error.get('type')}: {self.error.get('message')}"
        return text


def _outcome(outcome: Outcome, ctx: JobContext) -> JobOutcome:
    return JobOutcome(
        job=outcome.job,
        status=outcome.kind,
        result=json.loads(outcome.result_json) if outcome.result_json is not None else None,
        error=outcome.error,
        retry_in=outcome.delay,
        duration=outcome.duration,
        progress=ctx.progress,
    )


def _run_sync(coroutine_function: Callable[[], Awaitable[T]], name: str) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine_function())  # type: ignore[arg-type]
    raise RuntimeError(f"{name}() was called inside a running event loop: use `await {name}_async(...)` there")


async def _emit(app: App, event: Event) -> None:
    """Call the app's hooks (``app.on``) as a worker would: errors are logged, never raised."""
    for hook in app.hooks.get(event.name, ()):
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("hook %r for %s raised; ignored", hook, event.name)


async def _report(app: App, outcome: Outcome) -> None:
    await _emit(app, outcome.as_event())


# ------------------------------------------------------------------- drain


def drain(
    app: App,
    queue: str | Sequence[str] | None = None,
    *,
    with_scheduled: bool = False,
    max_jobs: int = MAX_JOBS,
) -> list[JobOutcome]:
    """Run every due job, one at a time in this process, until none is due; return the outcomes.

    Jobs are claimed and finished with the worker's own statements, so their
    outcomes land in the database (history, ``attempts``, ``errors``) exactly as
    a worker would leave them, and jobs that jobs enqueue run too. ``queue``
    limits the run to one queue (or several); default every queue. Paused queues
    are left alone, as a worker would.

    A delayed job, or a retry waiting out its backoff, is not due: it stays
    pending, unless ``with_scheduled=True``, which makes every pending job due
    first (so a job that keeps failing runs until it fails for good).
    Raises ``RuntimeError`` after ``max_jobs`` jobs if more are still due.
    Inside an event loop, use :func:`drain_async`.
    """
    return _run_sync(lambda: drain_async(app, queue, with_scheduled=with_scheduled, max_jobs=max_jobs), "drain")


async def drain_async(
    app: App,
    queue: str | Sequence[str] | None = None,
    *,
    with_scheduled: bool = False,
    max_jobs: int = MAX_JOBS,
) -> list[JobOutcome]:
    """:func:`drain` for async tests."""
    from pgq import __version__

    wanted = [queue] if isinstance(queue, str) else list(queue) if queue is not None else None
    app.db.ensure_migrated()
    worker_id = uuid.uuid4()
    transactions = (
        Transactions(app.url, app.settings, app.schema, lambda: worker_id, 1, "testing drain")
        if any(task.transactional for task in app.tasks.values())
        else None
    )
    executor = Executor(
        app.tasks, 1, app.settings.max_payload_bytes, telemetry=app.telemetry, transactions=transactions
    )
    conn: psycopg.AsyncConnection[Row] = await psycopg.AsyncConnection.connect(
        app.url, autocommit=True, row_factory=dict_row, **connection_kwargs(app.settings, "testing drain")
    )
    outcomes: list[JobOutcome] = []
    # Until the loop ends cleanly a claimed job may be left running under worker_id:
    # the sweeper then looks for it (released False).
    released = False
    try:
        await repo.register_worker(
            conn,
            app.schema,
            id=worker_id,
            name=f"pgq.testing.drain:{os.getpid()}",
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=wanted or ["*"],
            concurrency=1,
            version=__version__,
            tasks=app.tasks.names(),
        )
        while True:
            queues = _queues_to_drain(app, wanted, with_scheduled)
            if len(outcomes) >= max_jobs:
                # Checked before claiming: a job claimed and then left would stay running.
                if queues and await _any_due(conn, app, queues):
                    raise RuntimeError(
                        f"drain() ran {max_jobs} jobs and more are due (a job that enqueues itself forever?); "
                        "pass max_jobs= to allow more"
                    )
                released = True
                return outcomes
            jobs = (await repo.claim(conn, app.schema, worker_id, queues, 1))[0] if queues else []
            if not jobs:
                released = True
                return outcomes
            job = jobs[0]
            ctx = JobContext(job, logging.getLogger(f"pgq.job.{job.task}"))
            if job.depends_on:
                await repo.read_parents(conn, app.schema, ctx, job.depends_on)
            await _emit(app, Event("job_started", job))
            outcome = await executor.run(RunningJob(job, ctx))
            if outcome is None:  # only a stopping worker gets none; drain never stops mid-job
                raise RuntimeError(f"job {job.id}: the executor returned no outcome")
            if not outcome.written:  # a transactional handler's is written with its transaction
                await repo.finish_many(conn, app.schema, worker_id, [as_row(outcome)])
            await _report(app, outcome)
            outcomes.append(_outcome(outcome, ctx))
    finally:
        try:
            await repo.stop_worker(conn, app.schema, worker_id, released)
        finally:
            await conn.close()
            executor.shutdown()
            if transactions is not None:
                await transactions.close()


async def _any_due(conn: psycopg.AsyncConnection[Row], app: App, queues: list[str]) -> bool:
    rows = await store.testing_any_due.fetch_async(conn, app.schema, {"queues": queues})
    return bool(rows and rows[0]["due"])


def _queues_to_drain(app: App, wanted: list[str] | None, with_scheduled: bool) -> list[str]:
    """The queues to claim from this round; with ``with_scheduled``, their delayed jobs are made due first."""
    infos = [info for info in app.list_queues() if wanted is None or info.name in wanted]
    if with_scheduled:
        for info in infos:
            if info.delayed:
                for job in app.list_jobs(status="pending", queue=info.name, limit=10_000):
                    app.promote(job.id)  # a job that is already due is left as it is
    return [info.name for info in infos if info.waiting or info.delayed]


# ----------------------------------------------------------------- run_job


class RunOptions(TypedDict, total=False):
    """How :func:`run_job` runs the job."""

    attempt: int
    """The attempt the handler sees (1 to ``max_attempts``); default 1."""
    max_attempts: int | None
    queue: str | None
    job_id: int
    """The id ``ctx.job.id`` shows; default 0."""


def run_job(app: App, task: TaskRef, args: dict[str, Any] | None = None, **options: Unpack[RunOptions]) -> JobOutcome:
    """Call one task's handler as a worker would, without the queue or a database.

    The args go through the same checks and JSON round trip as an enqueue (a
    tuple arrives as a list; a datetime is refused), the handler gets a real
    :class:`pgq.JobContext` for a job with id ``job_id`` on its ``attempt``, and
    what it returns or raises is classified like a worker does: ``completed``,
    ``retry`` (with ``retry_in``), ``snooze`` (with ``retry_in``), ``failed`` or
    ``cancelled``. Nothing is written. Inside an event loop, use :func:`run_job_async`.
    """
    return _run_sync(lambda: run_job_async(app, task, args, **options), "run_job")


async def run_job_async(
    app: App, task: TaskRef, args: dict[str, Any] | None = None, **options: Unpack[RunOptions]
) -> JobOutcome:
    """:func:`run_job` for async tests."""
    if error := unknown_options("run_job", options, RunOptions):
        raise error
    attempt, job_id = options.get("attempt", 1), options.get("job_id", 0)
    name = task.name if isinstance(task, Task) else task
    registered = app.tasks.get(name) if isinstance(name, str) else None
    if registered is None:
        known = ", ".join(sorted(app.tasks)) or "none"
        raise UnknownTask(f"task {name!r} is not registered with this app (it knows {known})")
    if registered.transactional:
        raise ConfigurationError(
            f"task {name!r} is transactional: its handler completes its job in its own transaction, so it needs "
            "a job in the database; enqueue it and run pgq.testing.drain(app) instead of run_job"
        )
    spec = JobSpec(name, args or {}, queue=options.get("queue"), max_attempts=options.get("max_attempts"))
    params = prepare(spec, registered, app.settings.max_payload_bytes, strict=True)
    if not isinstance(attempt, int) or not 1 <= attempt <= params["max_attempts"]:
        raise ValueError(f"attempt must be between 1 and max_attempts ({params['max_attempts']}), got {attempt!r}")
    now = datetime.now(UTC)
    job = Job(
        id=job_id,
        queue=params["queue"],
        task=name,
        args=json.loads(params["args"]),
        priority=params["priority"],
        status="running",
        attempts=attempt,
        max_attempts=params["max_attempts"],
        run_at=now,
        created_at=now,
        started_at=now,
        timeout=params["timeout"],
        backoff=params["backoff"],
    )
    ctx = JobContext(job, logging.getLogger(f"pgq.job.{name}"))
    executor = Executor(app.tasks, 1, app.settings.max_payload_bytes, telemetry=app.telemetry)
    try:
        outcome = await executor.run(RunningJob(job, ctx))
    finally:
        executor.shutdown()
    if outcome is None:
        raise RuntimeError(f"task {name!r}: the executor returned no outcome")
    return _outcome(outcome, ctx)
