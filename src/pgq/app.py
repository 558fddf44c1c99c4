"""The application object: settings, the task registry and the enqueue family."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, Unpack, cast, overload

import psycopg

from pgq.app_part import part_method
from pgq.bulk import BulkControls, JobFilterOptions, job_filter
from pgq.db import store
from pgq.db.connection import Row, can_copy
from pgq.db.database import Database
from pgq.db.flows import drive, translated
from pgq.db.pooled import Commit
from pgq.db.urls import normalize
from pgq.encryption import is_envelope, open_envelope, parse_keys
from pgq.enqueueing import (
    Batch,
    PreparedJob,
    insert_batch,
    insert_many,
    insert_one,
    insert_workflow,
    is_plain,
    needs_transaction,
    prepare,
    prepare_batch,
    rejected_count,
)
from pgq.errors import ConfigurationError, PgqError, QueueFull, unknown_options
from pgq.events import EVENTS, Event
from pgq.fast_lane import FastLane, check_options
from pgq.group_commit import GroupCommit
from pgq.job import EnqueueOptions, Job, JobSpec, LogLine
from pgq.job_edits import JobEdits
from pgq.operations import OperationControls
from pgq.schedules import ScheduleControls, ScheduleSpec, check_spec
from pgq.settings import Settings, load_settings
from pgq.task import DEFAULT_MAX_SNOOZES, Backoff, Task
from pgq.task_registry import TaskRegistry, check_aliases
from pgq.telemetry import Telemetry, with_trace
from pgq.telemetry import get as get_telemetry
from pgq.workflow import Node, Step, flatten, with_placeholder_parents

if TYPE_CHECKING:
    from pgq.worker import Worker

log = logging.getLogger("pgq")

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
TaskRef = str | Task[Any, Any]


class App:
    """One pgq installation: where its database is, and which tasks it knows.

    ``App()`` reads ``PGQ_*`` environment variables; keyword arguments override
    them (``App(database_url=..., schema="jobs", concurrency=20)``, any field of
    :class:`pgq.settings.Settings`). With no database URL anywhere, pgq starts an
    embedded PostgreSQL in ``PGQ_DATA_DIR`` (default ``./.pgq``) and migrates
    it. Nothing connects until the first enqueue or query.
    """

    def __init__(self, database_url: str | None = None, **settings: Any) -> None:
        self.settings = load_settings(database_url=database_url, **settings)
        if self.settings.database_url is not None:
            normalize(self.settings.database_url)  # a malformed URL fails here, not later
        if self.settings.listen_url is not None:
            normalize(self.settings.listen_url, "PGQ_LISTEN_URL")
        self.tasks = TaskRegistry()
        #: PGQ_ENCRYPTION_KEYS, checked here: the first encrypts, all decrypt.
        self.encryption_keys = parse_keys(self.settings.encryption_keys)
        #: OpenTelemetry's spans and metrics, or None (not installed, or PGQ_OTEL=false).
        self.telemetry: Telemetry | None = get_telemetry(self.settings)
        # Concurrent app.enqueue calls on pgq's pool share statements (pgq.group_commit).
        self._group_commit = GroupCommit(self._write_jobs, lambda params: self._write_jobs([params])[0])
        #: The hooks of :meth:`on`, by event name (the worker and pgq.testing call them).
        self.hooks: dict[str, list[Callable[[Event], Any]]] = {}
        #: Schedules declared in code (``@app.periodic``), upserted when a worker starts.
        self.schedules: dict[str, ScheduleSpec] = {}
        #: The jobs of ``durable=False`` tasks, run in this process (pgq.fast_lane).
        self.fast_lane = FastLane(self)
        self._attach_parts()

    def _attach_parts(self) -> None:
        """The parts whose methods the app's public methods below call (pgq.app_part), made
        with this app: the read replica's app (``reader``) makes its own, or its reads would
        run on the primary."""
        self._operations = OperationControls(self)
        self._schedule_controls = ScheduleControls(self)
        self._bulk = BulkControls(self)
        self._edits = JobEdits(self)

    def configure(self, **overrides: Any) -> None:
        """Override settings after construction (the CLI's flags do this); only
        before the app first connects. ``None`` values are ignored."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return
        if self.db.started:
            raise ConfigurationError("configure() must be called before the app connects")
        current = self.settings.model_dump(exclude_unset=False)
        current["schema"] = current.pop("schema_name")
        if "schema_name" in given:
            given["schema"] = given.pop("schema_name")
        current.update(given)
        self.settings = load_settings(**current)
        if self.settings.database_url is not None:
            normalize(self.settings.database_url)

    # ----------------------------------------------------------------- tasks

    # The overloads type a task by its handler, so that mypy checks ``task.enqueue(...)``
    # (and ``task.options(...).enqueue(...)``) against the handler's parameters. A
    # handler given a context, or a batch handler (called with a list of jobs), takes
    # other arguments than its jobs' args: those tasks take any keyword arguments.
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | timedelta | None = None,
        pass_context: Literal[False] = False,
        batch_size: None = None,
        batch_wait: None = None,
        validate: bool = True,
        max_snoozes: int | None = DEFAULT_MAX_SNOOZES,
        aliases: Sequence[str] = (),
        encrypt: bool = False,
        transactional: Literal[False] = False,
        durable: bool = True,
        concurrency: int | None = None,
        rate: str | tuple[int, float | timedelta] | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | timedelta | None = None,
        pass_context: bool = False,
        batch_size: int | None = None,
        batch_wait: float | timedelta | None = None,
        validate: bool = True,
        max_snoozes: int | None = DEFAULT_MAX_SNOOZES,
        aliases: Sequence[str] = (),
        encrypt: bool = False,
        transactional: bool = False,
        durable: bool = True,
        concurrency: int | None = None,
        rate: str | tuple[int, float | timedelta] | None = None,
    ) -> Callable[[Callable[..., R]], Task[..., R]]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | timedelta | None = None,
        pass_context: bool = False,
        batch_size: int | None = None,
        batch_wait: float | timedelta | None = None,
        validate: bool = True,
        max_snoozes: int | None = DEFAULT_MAX_SNOOZES,
        aliases: Sequence[str] = (),
        encrypt: bool = False,
        transactional: bool = False,
        durable: bool = True,
        concurrency: int | None = None,
        rate: str | tuple[int, float | timedelta] | None = None,
    ) -> Task[Any, Any] | Callable[[F], Task[Any, Any]]:
        """Register a handler as a task: ``@app.task`` or ``@app.task(queue=..., ...)``.

        - ``name``: stored on each job; default the function's ``__name__``.
        - ``queue``: default queue of its jobs; default ``"default"``.
        - ``priority``: default priority (higher runs first); default 0.
        - ``max_attempts``: runs before the job fails for good; default 3.
        - ``backoff``: first retry delay in seconds, doubled each attempt with
          jitter, or a callable ``attempt -> seconds``; default 2.0.
        - ``timeout``: seconds (or timedelta) an attempt may run; default none.
        - ``pass_context``: call the handler as ``fn(ctx, **args)`` with a
          :class:`pgq.JobContext`; default False.
        - ``batch_size``: make it a batch task (2 to 10000): the handler is
          called as ``fn(jobs)`` with a list of up to that many :class:`pgq.Job`
          of one queue, in claim order, and returns a list of the same length:
          for each job a result (or None), meaning it completed, or an exception
          instance, meaning its attempt failed (retried, or failed for good with
          ``pgq.PermanentError``). An exception raised by the handler, or a
          return that is not such a list, fails every job's attempt. A batch
          holds one of the worker's slots however many jobs it has. Jobs are
          enqueued one by one as usual, each with its own args (not checked
          against the handler, which takes the list). Default: none.
        - ``batch_wait``: seconds (or timedelta) a batch waits for more jobs
          after its first one arrives, unless it fills up first; 0 runs what is
          ready at once. Only with ``batch_size``; default 1.0. Must be shorter
          than ``timeout``, which counts from the first job's claim.
          ``pass_context`` is refused for batch tasks. See docs/batches.md.
        - ``validate``: check at enqueue that each argument fits its parameter's
          annotation, as the handler will receive it from JSON (strict: ``"5"``
          is not an int); a wrong one is :class:`pgq.InvalidJob` naming it.
          Default True; see docs/enqueueing.md.
        - ``max_snoozes``: how many times a job may raise :class:`pgq.Snooze`
          (wait and run again, no attempt counted); the snooze past it fails the
          job for good. Default 100; None for no limit. See docs/worker.md.
        - ``aliases``: former names of the task: jobs stored under them (enqueued
          before a rename, or by code that still uses the old name) run with this
          handler, and ``app.enqueue(old_name)`` stores the current name.
        - ``encrypt``: store args and result encrypted (AES-GCM, keys from
          ``PGQ_ENCRYPTION_KEYS``); the handler sees plain args, the dashboard,
          the API and SQL an envelope. Needs ``pgq-jobs[encryption]``. See
          docs/enqueueing.md#encrypted-args.
        - ``transactional``: run the handler in a database transaction, on
          ``ctx.connection`` (so it takes the context: ``fn(ctx, **args)``), and
          complete the job in that same transaction: the handler's writes and
          the job's completion commit together, once, or not at all. See
          docs/worker.md#transactional-handlers.
        - ``durable``: False makes it a fast-lane task (pgq.fast_lane): its jobs run in
          this process, on a background thread's loop, and are never written to the
          database; **they are lost when the process ends**. For short work whose loss
          costs nothing (cache warm-ups, previews). ``concurrency`` (default 10) and
          ``rate`` (``"20/s"``) bound its jobs; ``batch_size``, ``max_attempts``,
          ``backoff`` and ``timeout`` apply as for a durable task. See
          docs/enqueueing.md#the-fast-lane.
        """

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or getattr(func, "__name__", None)
            if not task_name or not isinstance(task_name, str):
                raise ConfigurationError(f"cannot name task {func!r}: pass name=")
            former = check_aliases(task_name, aliases)
            if task_name in self.tasks.keys() and self.tasks[task_name].fn is not func:
                raise ConfigurationError(f"task {task_name!r} is registered twice; give one of them name=...")
            if backoff is not None and not callable(backoff):
                if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 0:
                    raise ConfigurationError(
                        f"backoff of task {task_name!r} must be seconds >= 0 or a callable "
                        f"attempt -> seconds, got {backoff!r}"
                    )
            if max_attempts is not None and (
                not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1
            ):
                raise ConfigurationError(
                    f"max_attempts of task {task_name!r} must be an integer >= 1, got {max_attempts!r}"
                )
            if max_snoozes is not None and (
                not isinstance(max_snoozes, int) or isinstance(max_snoozes, bool) or max_snoozes < 0
            ):
                raise ConfigurationError(
                    f"max_snoozes of task {task_name!r} must be an integer >= 0, or None for no limit, "
                    f"got {max_snoozes!r}"
                )
            lane = check_options(
                task_name,
                durable=durable,
                concurrency=concurrency,
                rate=rate,
                pass_context=pass_context,
                transactional=transactional,
                encrypt=encrypt,
            )
            registered = Task(
                self,
                func,
                name=task_name,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                backoff=backoff,
                timeout=timeout,
                pass_context=pass_context,
                batch_size=batch_size,
                batch_wait=batch_wait,
                validate=validate,
                max_snoozes=max_snoozes,
                encrypt=encrypt,
                transactional=transactional,
            )
            registered.lane = lane
            # Check the task's default queue and priority once, here, rather
            # than failing at every enqueue.
            prepare(
                JobSpec(task=task_name, queue=queue, priority=priority),
                None,
                self.settings.max_payload_bytes,
                False,
            )
            self.tasks.add(registered, former)
            return registered

        if fn is not None:
            return register(fn)
        return register

    def periodic(
        self,
        *,
        cron: str,
        timezone: str = "UTC",
        name: str | None = None,
        queue: str | None = None,
        args: dict[str, Any] | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        catch_up: str = "once",
    ) -> Callable[[Task[Any, Any]], Task[Any, Any]]:
        """Run a task on a cron schedule; stack it above ``@app.task``:

            @app.periodic(cron="*/5 * * * *")          # every 5 minutes
            @app.task
            def refresh() -> None: ...

        ``cron`` has five fields, or six with seconds first (``*/10 * * * * *``).
        ``name`` defaults to the task's name (give one to schedule a task twice).
        ``catch_up`` after downtime: ``"once"`` (default, one job for all missed
        ticks), ``"all"`` (one per missed tick) or ``"none"`` (skip them). A bad
        cron or time zone fails here, at import time, not in the worker.
        """

        def declare(task: Task[Any, Any]) -> Task[Any, Any]:
            if not isinstance(task, Task):
                raise ConfigurationError(
                    f"@app.periodic must be stacked above @app.task (it got {task!r}, not a pgq task)"
                )
            if task.lane is not None:
                raise ConfigurationError(
                    f"task {task.name!r} is durable=False: a schedule's ticks are jobs in the database, taken by "
                    "one worker each; make the task durable to schedule it"
                )
            spec = check_spec(
                ScheduleSpec(
                    name or task.name, cron, task.name, args or {}, timezone, queue, priority, max_attempts, catch_up
                ),
                self.settings.max_payload_bytes,
            )
            task.encode(spec.args, self.settings.max_payload_bytes, sealed=False)  # sealed when written
            if spec.name in self.schedules:
                raise ConfigurationError(f"schedule {spec.name!r} is declared twice; give one of them name=...")
            self.schedules[spec.name] = spec
            return task

        return declare

    # -------------------------------------------------------------- database

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        """New settings take a new :class:`Database`: the old one's pools are closed."""
        previous: Database | None = getattr(self, "db", None)
        if previous is not None:
            previous.close()
        self._close_reader()
        self._settings = value
        #: pgq's way to its database: pools, the retry rule, the schema check.
        self.db = Database(value)

    @property
    def reader(self) -> App:
        """This app as the dashboard, its API's reads and ``pgq stats`` see it: its read methods
        (``list_jobs``, ``get_job``, ``stats``, ``list_queues``, ...) run on the read replica of
        ``PGQ_READ_URL`` when one is set, else it is the app itself. It may lag the primary:
        act, enqueue and read what you just wrote through the app itself (see docs/scaling.md)."""
        if not self.settings.read_url:
            return self
        reader: App | None = self.__dict__.get("_reader")
        if reader is None:
            reader = copy.copy(self)
            replica = self.settings.model_copy(
                update={"database_url": self.settings.read_url, "auto_migrate": False, "pooler": "none"}
            )
            reader.__dict__["db"] = Database(replica)
            reader.__dict__["_reader"] = reader
            reader._attach_parts()
            self.__dict__["_reader"] = reader
        return reader

    def replica_lag(self) -> float | None:
        """Seconds the read replica is behind the primary (0 when it has replayed all it
        received); None without ``PGQ_READ_URL``."""
        if not self.settings.read_url:
            return None
        row = store.replica_lag.run(self.reader.db, {})[0]
        return None if row["lag"] is None else float(row["lag"])

    def _close_reader(self) -> None:
        reader: App | None = self.__dict__.pop("_reader", None)
        if reader is not None and reader is not self:
            reader.db.close()

    @property
    def url(self) -> str:
        """The libpq URL pgq connects to (starting the embedded server if none is set)."""
        return self.db.url

    @property
    def direct_url(self) -> str | None:
        """The URL for LISTEN and the sweeper's lock session, past any transaction pooler;
        None when there is none (``PGQ_POOLER=transaction`` without ``PGQ_LISTEN_URL``)."""
        return self.db.direct_url

    @property
    def uses_embedded(self) -> bool:
        return self.db.uses_embedded

    @property
    def schema(self) -> str:
        return self.settings.schema_name

    def migrate(self) -> None:
        """Bring this app's schema up to date (what ``pgq migrate`` does)."""
        self.db.migrate()

    def close(self) -> None:
        """Close pgq's own connections, and stop the fast lane (its waiting jobs are dropped:
        ``app.fast_lane.drain()`` first to finish them). The app can be used again afterwards."""
        self.fast_lane.close()
        self.db.close()
        reader: App | None = self.__dict__.get("_reader")
        if reader is not None and reader is not self:
            reader.db.close()

    async def aclose(self) -> None:
        self.fast_lane.close()
        await self.db.aclose()
        reader: App | None = self.__dict__.get("_reader")
        if reader is not None and reader is not self:
            await reader.db.aclose()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- enqueue

    def _task_for(self, task: TaskRef) -> tuple[str, Task[Any, Any] | None]:
        if isinstance(task, Task):
            return task.name, task
        return task, self.tasks.get(task) if isinstance(task, str) else None

    def _fast_task(self, spec: JobSpec) -> Task[Any, Any] | None:
        """The registered ``durable=False`` task of ``spec``, if it is one."""
        registered = self.tasks.get(spec.task)
        return registered if registered is not None and registered.lane is not None else None

    def _enqueue_fast(self, task: Task[Any, Any], params: PreparedJob, connection: Any) -> int:
        """A fast-lane job: queued in this process, nothing written (pgq.fast_lane)."""
        refused = [
            option
            for option, given in (
                ("connection", connection is not None),
                ("key", params["key"] is not None),
                ("group", params["group_key"] is not None),
                ("depends_on", params["depends_on"] is not None),
            )
            if given
        ]
        if refused:
            raise ConfigurationError(
                f"task {task.name!r} is durable=False: its jobs are never written to the database, so they take "
                f"no {', '.join(refused)}; make the task durable for that"
            )
        delay = params["delay"]
        if params["run_at"] is not None:
            delay = (params["run_at"] - datetime.now(UTC)).total_seconds()
        return self.fast_lane.submit(task, params, max(delay or 0.0, 0.0))

    def _prepare(self, spec: JobSpec, strict: bool) -> PreparedJob:
        _, registered = self._task_for(spec.task)
        return prepare(spec, registered, self.settings.max_payload_bytes, strict)

    def enqueue(self, task: TaskRef, args: dict[str, Any] | None = None, **options: Unpack[EnqueueOptions]) -> int:
        """Enqueue one job and return its id.

        - ``task``: a task name or a registered :class:`Task`.
        - ``args``: keyword arguments of the handler, a JSON-serialisable dict.
        - ``options``: the job's options and how it is written, each described on
          :class:`pgq.EnqueueOptions` (``queue``, ``priority``, ``run_at`` or ``delay``,
          ``key``, ``group``, ``depends_on``, ``tags``, ``connection``, ...).
        """
        connection = options.pop("connection", None)
        name, params, lane = self._accept(task, args, options)
        if lane is not None:
            return self._enqueue_fast(lane, params, connection)
        if self.telemetry is None or not self.telemetry.active():
            return self._enqueue_one(params, connection)
        with self.telemetry.enqueue_span(name, params["queue"]) as span:
            self._stamp_trace(params)
            job_id = self._enqueue_one(params, connection)
            span.set_attribute("pgq.job.id", job_id)
            return job_id

    def _accept(
        self, task: TaskRef, args: dict[str, Any] | None, options: EnqueueOptions
    ) -> tuple[str, PreparedJob, Task[Any, Any] | None]:
        """The task's name, the job's checked parameters, and its fast-lane task if it is one."""
        strict = options.pop("strict", False)
        if (parents := options.get("depends_on")) is not None:
            options["depends_on"] = _ids(parents)
        name, _ = self._task_for(task)
        try:
            # What is left of options are JobSpec's own (connection and strict are taken out).
            spec = JobSpec(name, args, **cast("dict[str, Any]", options))
        except TypeError as exc:
            raise unknown_options("enqueue", options, EnqueueOptions) or exc from None
        return name, self._prepare(spec, strict), self._fast_task(spec)

    def _enqueue_one(self, params: PreparedJob, connection: Any) -> int:
        try:
            if connection is None and is_plain(params):
                return self._group_commit.enqueue(params)
            return self.db.drive(
                lambda: insert_one(self.schema, params), connection, transaction=needs_transaction([params])
            )
        except QueueFull as full:
            self._count_rejected(full, [params], connection)
            raise

    def _stamp_trace(self, params: PreparedJob) -> None:
        """Store the current trace context in the job's meta (see pgq.telemetry)."""
        carrier = self.telemetry.carrier() if self.telemetry is not None else None
        if carrier is not None:
            params["meta"] = with_trace(params["meta"], carrier)

    def _write_jobs(self, jobs: list[PreparedJob]) -> list[int]:
        """Plain jobs of concurrent enqueue calls, in one statement on pgq's pool."""
        if len(jobs) > 1:
            return self.db.drive(lambda: insert_many(self.schema, jobs), None)
        # The one-job case is the hot path of app.enqueue: the statement of insert_one's
        # plain branch, run directly (no flow, no cursor of its own).
        sql, params = store.job_insert_plain.sql(self.schema), jobs[0]

        def insert(conn: psycopg.Connection[Row], _: Commit | None) -> list[int]:
            try:
                row = conn.execute(sql, params).fetchone()
            except psycopg.Error as exc:
                error = translated(exc)
                if error is None:
                    raise
                raise error from None
            assert row is not None
            return [int(row["id"])]

        return self.db.pooled(insert)

    async def enqueue_async(
        self, task: TaskRef, args: dict[str, Any] | None = None, **options: Unpack[EnqueueOptions]
    ) -> int:
        """:meth:`enqueue` for async code; ``connection`` is a psycopg
        ``AsyncConnection`` or SQLAlchemy ``AsyncConnection``/``AsyncSession``."""
        connection = options.pop("connection", None)
        name, params, lane = self._accept(task, args, options)
        if lane is not None:
            return self._enqueue_fast(lane, params, connection)
        if self.telemetry is None or not self.telemetry.active():
            return await self._enqueue_one_async(params, connection)
        with self.telemetry.enqueue_span(name, params["queue"]) as span:
            self._stamp_trace(params)
            job_id = await self._enqueue_one_async(params, connection)
            span.set_attribute("pgq.job.id", job_id)
            return job_id

    async def _enqueue_one_async(self, params: PreparedJob, connection: Any) -> int:
        try:
            return await self.db.drive_async(
                lambda: insert_one(self.schema, params), connection, transaction=needs_transaction([params])
            )
        except QueueFull as full:
            await self._count_rejected_async(full, [params], connection)
            raise

    def enqueue_many(self, specs: Iterable[JobSpec], *, connection: Any = None, strict: bool = False) -> list[int]:
        """Enqueue many jobs at once; returns their ids in the order given.

        Every spec is checked before anything is written: one bad spec rejects
        the whole batch. The batch is written in one transaction (yours with
        ``connection``): plain jobs by binary COPY, the others (a key, parents, a
        run time, a queue with ``max_pending``) by insert statements. A spec whose
        key a live job holds gets that job's id.
        """
        batch = prepare_batch(specs, self.tasks, self.settings.max_payload_bytes, strict)
        if not batch.size:
            return []
        if self.telemetry is None or not self.telemetry.active():
            return self._enqueue_batch(batch, connection)
        with self.telemetry.enqueue_span(_batch_task(batch), None, batch.size):
            self._stamp_batch(batch)
            return self._enqueue_batch(batch, connection)

    def _enqueue_batch(self, batch: Batch, connection: Any) -> list[int]:
        use_copy = can_copy(connection)
        # pgq's pool needs a transaction only for a batch of several statements; a
        # caller's connection is the caller's (autocommit included).
        own = bool(batch.others)
        theirs = connection is not None and not getattr(connection, "autocommit", False)
        try:
            return self.db.drive(
                lambda: insert_batch(self.schema, batch, use_copy, own or theirs), connection, transaction=own
            )
        except QueueFull as full:
            self._count_rejected(full, batch.all_params(), connection)
            raise

    def _stamp_batch(self, batch: Batch) -> None:
        carrier = self.telemetry.carrier() if self.telemetry is not None else None
        if carrier is not None:
            batch.trace_meta = with_trace(None, carrier)
            for _, params in batch.others:
                params["meta"] = with_trace(params["meta"], carrier)

    async def enqueue_many_async(
        self, specs: Iterable[JobSpec], *, connection: Any = None, strict: bool = False
    ) -> list[int]:
        """:meth:`enqueue_many` for async code."""
        batch = prepare_batch(specs, self.tasks, self.settings.max_payload_bytes, strict)
        if not batch.size:
            return []
        if self.telemetry is None or not self.telemetry.active():
            return await self._enqueue_batch_async(batch, connection)
        with self.telemetry.enqueue_span(_batch_task(batch), None, batch.size):
            self._stamp_batch(batch)
            return await self._enqueue_batch_async(batch, connection)

    async def _enqueue_batch_async(self, batch: Batch, connection: Any) -> list[int]:
        use_copy = can_copy(connection)
        own = bool(batch.others)
        theirs = connection is not None and not getattr(connection, "autocommit", False)
        try:
            return await self.db.drive_async(
                lambda: insert_batch(self.schema, batch, use_copy, own or theirs), connection, transaction=own
            )
        except QueueFull as full:
            await self._count_rejected_async(full, batch.all_params(), connection)
            raise

    def enqueue_workflow(self, workflow: Step, *, connection: Any = None, strict: bool = False) -> list[int]:
        """Insert a workflow (:func:`pgq.chain`, :func:`pgq.group`) in one transaction; returns
        the ids of its jobs in the order their specs appear in it.

        Each job waits (``blocked``) for the jobs before it in its chain, or for
        all jobs of the group before it, reads their results as
        ``ctx.parent_results``, and is cancelled if one of them fails for good
        (unless its spec says ``on_parent_failure="run"``).
        """
        nodes, batch = self._prepare_workflow(workflow, strict)
        try:
            return self.db.drive(lambda: insert_workflow(self.schema, nodes, batch), connection, transaction=True)
        except QueueFull as full:
            self._count_rejected(full, batch, connection)
            raise

    async def enqueue_workflow_async(
        self, workflow: Step, *, connection: Any = None, strict: bool = False
    ) -> list[int]:
        """:meth:`enqueue_workflow` for async code."""
        nodes, batch = self._prepare_workflow(workflow, strict)
        try:
            return await self.db.drive_async(
                lambda: insert_workflow(self.schema, nodes, batch), connection, transaction=True
            )
        except QueueFull as full:
            await self._count_rejected_async(full, batch, connection)
            raise

    def _prepare_workflow(self, workflow: Step, strict: bool) -> tuple[list[Node], list[PreparedJob]]:
        nodes = flatten(workflow)
        batch = self._prepare_batch([with_placeholder_parents(node) for node in nodes], strict)
        for node, params in zip(nodes, batch, strict=True):
            params["depends_on"] = list(node.spec.depends_on or ()) or None
        return nodes, batch

    def _rejected_params(
        self, full: QueueFull, batch: list[PreparedJob], connection: Any
    ) -> store.OpsCountRejected | None:
        """What to add to the queue's ``rejected`` count. Only on pgq's own connection: a
        caller's transaction still holds the queue's lock, so a count beside it would wait on it."""
        return None if connection is not None else rejected_count(full, batch)

    def _count_rejected(self, full: QueueFull, batch: list[PreparedJob], connection: Any) -> None:
        params = self._rejected_params(full, batch, connection)
        if params is not None:
            with contextlib.suppress(Exception):  # a count, never a reason to hide the QueueFull
                store.ops_count_rejected.run(self.db, params)

    async def _count_rejected_async(self, full: QueueFull, batch: list[PreparedJob], connection: Any) -> None:
        params = self._rejected_params(full, batch, connection)
        if params is not None:
            with contextlib.suppress(Exception):
                await store.ops_count_rejected.run_async(self.db, params)

    def _prepare_batch(self, specs: Iterable[JobSpec], strict: bool) -> list[PreparedJob]:
        batch = []
        for index, spec in enumerate(specs):
            if not isinstance(spec, JobSpec):
                raise TypeError(f"enqueue_many takes pgq.JobSpec items; item {index} is {spec!r}")
            if self._fast_task(spec) is not None:
                raise ConfigurationError(
                    f"job {index} of the batch: task {spec.task!r} is durable=False; enqueue_many and workflows "
                    "write jobs to the database: enqueue fast-lane jobs one by one (task.enqueue)"
                )
            try:
                batch.append(self._prepare(spec, strict))
            except PgqError as exc:
                raise type(exc)(f"job {index} of the batch: {exc}") from None
        return batch

    # ----------------------------------------------------------------- reads

    def get_job(self, job_id: int) -> Job | None:
        """The job with that id, live or finished, or None."""
        rows = store.job_get.run(self.db, {"id": int(job_id)})
        return Job.from_row(rows[0]) if rows else None

    def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Block until the job ends (completed, failed or cancelled) and return it, with its result.

        Woken by a NOTIFY when the job moves to history (the workers send it only
        while someone waits). Returns at once for a job that already ended. Raises
        :class:`TimeoutError` after ``timeout`` seconds (None: no limit) and
        :class:`JobNotFound` for an unknown id."""
        from pgq.waiting import wait

        return wait(self, job_id, timeout)

    async def wait_async(self, job_id: int, timeout: float | None = None) -> Job:
        """:meth:`wait` for asyncio code."""
        from pgq.waiting import wait_async

        return await wait_async(self, job_id, timeout)

    def decrypt(self, value: Any) -> Any:
        """The plain value of an encrypted task's stored args or result (``job.args``,
        ``job.result``); any other value as it is. Raises pgq.encryption.DecryptionError
        when no key of PGQ_ENCRYPTION_KEYS opens it."""
        return open_envelope(value, self.encryption_keys) if is_envelope(value) else value

    def rotate_keys(self) -> dict[str, int]:
        """Re-encrypt, with the first key of PGQ_ENCRYPTION_KEYS, the args of live jobs and
        schedules sealed with an older one (``pgq keys rotate``); see pgq.encryption.rotate."""
        from pgq.encryption import rotate

        return rotate(self)

    def job_logs(self, job_id: int) -> list[LogLine]:
        """The lines the job's handler logged through ``ctx.log``, oldest first, each with
        its attempt (the last 200 or 64 KiB of each run are kept); empty when it logged none."""
        from pgq.operations import job_id_of

        rows = store.job_log_list.run(self.db, {"id": job_id_of(job_id)})
        return [LogLine(**row) for row in rows]

    def list_jobs(
        self, *, limit: int = 50, before_id: int | None = None, **where: Unpack[JobFilterOptions]
    ) -> list[Job]:
        """Jobs newest first, those that match every condition given (status, queue, task,
        key, tag, args: :class:`pgq.bulk.JobFilterOptions`); pass the last id as
        ``before_id`` for the next page."""
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ConfigurationError(f"limit must be between 1 and 10000, got {limit!r}")
        chosen = job_filter("list_jobs", where)
        params: store.JobList = {
            "status": chosen.status,
            "queue": chosen.queue,
            "task": chosen.task,
            "key": chosen.key,
            "args": chosen.params()["f_args"],
            "limit": limit,
            "before_id": before_id,
        }
        if chosen.tag is None:
            rows = store.job_list.run(self.db, params)
        else:
            rows = store.job_list_tagged.run(self.db, {**params, "tag": chosen.tag})
        return [Job.from_row(row) for row in rows]

    # ------------------------------------------------------------- controls
    # The operator's actions and reads (pgq.operations), schedules (pgq.schedules), bulk
    # actions (pgq.bulk) and job edits (pgq.job_edits): methods of the app's parts.

    cancel = part_method("_operations", OperationControls.cancel)
    retry = part_method("_operations", OperationControls.retry)
    retry_failed = part_method("_operations", OperationControls.retry_failed)
    promote = part_method("_operations", OperationControls.promote)
    delete = part_method("_operations", OperationControls.delete)
    pause_queue = part_method("_operations", OperationControls.pause_queue)
    resume_queue = part_method("_operations", OperationControls.resume_queue)
    list_queues = part_method("_operations", OperationControls.list_queues)
    get_queue = part_method("_operations", OperationControls.get_queue)
    set_queue = part_method("_operations", OperationControls.set_queue)
    explain = part_method("_operations", OperationControls.explain)
    list_workers = part_method("_operations", OperationControls.list_workers)
    stats = part_method("_operations", OperationControls.stats)
    add_schedule = part_method("_schedule_controls", ScheduleControls.add_schedule)
    list_schedules = part_method("_schedule_controls", ScheduleControls.list_schedules)
    get_schedule = part_method("_schedule_controls", ScheduleControls.get_schedule)
    remove_schedule = part_method("_schedule_controls", ScheduleControls.remove_schedule)
    enable_schedule = part_method("_schedule_controls", ScheduleControls.enable_schedule)
    disable_schedule = part_method("_schedule_controls", ScheduleControls.disable_schedule)
    trigger_schedule = part_method("_schedule_controls", ScheduleControls.trigger_schedule)
    bulk = part_method("_bulk", BulkControls.bulk)
    update_job = part_method("_edits", JobEdits.update_job)

    def prune(self, on_history_batch: Callable[[int], None] | None = None) -> dict[str, int]:
        """What the sweeper's retention deletes, now and to the end (``pgq prune``): finished
        jobs past retention, worker rows stopped over a day ago, idle ``queue_groups`` rows,
        old metrics, spent ``job_keys``, ``job_waiters`` of gone sessions and the log lines
        of gone jobs; a count of each. ``on_history_batch`` hears each batch of jobs deleted.
        Every statement commits on its own: what one deleted stays deleted."""
        from pgq.maintenance.retention import retention_flow

        flow = retention_flow(self.schema, self.settings, None, on_history_batch)
        pruned = drive(flow, lambda sql, params: self.db.run(sql, params, idempotent=True))
        if pruned.refused:
            log.warning("could not make or drop a partition of %s.job_history: %s", self.schema, pruned.refused)
        return pruned.as_dict()

    # --------------------------------------------------------------- worker

    def on(self, event: str, hook: Callable[[Event], Any] | None = None) -> Any:
        """Call ``hook(event)`` on each job event of this app's workers (see :mod:`pgq.events`).

        ``app.on("job_failed", fn)``, or as a decorator: ``@app.on("job_failed")``.
        """
        if event not in EVENTS:
            raise ConfigurationError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")

        def register(fn: Callable[[Event], Any]) -> Callable[[Event], Any]:
            if not callable(fn):
                raise ConfigurationError(f"a hook must be callable, got {fn!r}")
            self.hooks.setdefault(event, []).append(fn)
            return fn

        return register if hook is None else register(hook)

    @contextlib.asynccontextmanager
    async def worker(self, **options: Any) -> AsyncIterator[Worker]:
        """Run a worker in the background of the current event loop:

            async with app.worker(queues=["emails"], concurrency=20) as worker:
                ...   # jobs run meanwhile

        Leaving the block stops it gracefully (running jobs finish, up to the
        shutdown timeout). Options are those of :class:`pgq.worker.Worker`.
        """
        from pgq.worker import Worker

        worker = Worker(self, **options)
        task = asyncio.create_task(worker.run(), name="pgq-worker")
        try:
            yield worker
        finally:
            worker.stop()
            await task

    def run_worker(self, **options: Any) -> Worker:
        """Run a worker in this thread until SIGTERM or SIGINT (what ``pgq worker`` does).

        The first signal stops claiming and lets running jobs finish for up to
        ``shutdown_timeout`` seconds; a second one returns them to the queue at once.
        Returns the stopped :class:`~pgq.worker.Worker`.
        """
        from pgq.worker.runtime import new_event_loop, tune_gc

        tune_gc()
        with asyncio.Runner(loop_factory=new_event_loop(self.settings.event_loop)) as runner:
            return runner.run(self._run_worker_until_signal(**options))

    async def _run_worker_until_signal(self, **options: Any) -> Worker:
        from pgq.worker import Worker
        from pgq.worker.worker import SHUTDOWN_SLACK

        worker = Worker(self, **options)
        loop = asyncio.get_running_loop()
        received: list[str] = []
        watchdog: list[threading.Timer] = []

        def on_signal(name: str) -> None:
            received.append(name)
            if len(received) == 1:
                log.warning(
                    "%s received: finishing running jobs (up to %.0f s); send it again to stop at once",
                    name,
                    worker.shutdown_timeout,
                )
                worker.stop()
            else:
                log.warning("%s received again: returning running jobs to the queue now", name)
                worker.stop(graceful=False)
            # Every step of a shutdown is bounded; this is the bound's guard, in a thread
            # so that it fires even if the event loop is stuck (a handler that blocks it).
            grace = 0.0 if len(received) > 1 else worker.shutdown_timeout
            for timer in watchdog:
                timer.cancel()
            timer = threading.Timer(grace + SHUTDOWN_SLACK + 0.5, _exit_now, [grace + SHUTDOWN_SLACK + 0.5])
            timer.daemon = True
            timer.start()
            watchdog[:] = [timer]

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        try:
            await worker.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            for timer in watchdog:
                timer.cancel()
        return worker


def _exit_now(seconds: float) -> None:
    log.critical("the shutdown did not end within %.1f s; exiting now", seconds)
    logging.shutdown()
    os._exit(1)


def _batch_task(batch: Batch) -> str:
    """The task of an enqueue_many's jobs, for its span: its name, or "(several)"."""
    names = {options.task for _, _, options in batch.rows} | {params["task"] for _, params in batch.others}
    return names.pop() if len(names) == 1 else "(several)"


def _ids(ids: Iterable[int]) -> list[int]:
    if isinstance(ids, str | bytes) or not hasattr(ids, "__iter__"):
        return ids  # type: ignore[return-value]  # prepare() says what is wrong with it
    return list(ids)
