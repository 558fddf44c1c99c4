"""One worker process's engine: claim, run, finish, heartbeat, listen.

The producer claims exactly as many jobs as there are free slots, in one
statement; the executor runs each; the completer writes outcomes in batches.
A LISTEN session wakes the producer within milliseconds of a commit, and a
jittered poll (``PGQ_POLL_INTERVAL``) is the safety net. An idle worker also
sleeps exactly until the next delayed job is due.

Database errors never stop the worker: each loop logs a bounded number of
lines, waits, and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pgq.context import JobContext
from pgq.db import repo
from pgq.db.connection import Pools, Row, connection_kwargs
from pgq.events import Event
from pgq.job import Job
from pgq.maintenance.scheduler import Scheduler
from pgq.maintenance.service import TRANSIENT, client_deadline
from pgq.maintenance.sweeper import Sweeper
from pgq.task import Task
from pgq.throttle import LogWindow
from pgq.worker.batch import BATCH_POLL, TOP_UP_GAP, Batch
from pgq.worker.completer import Completer
from pgq.worker.executor import Executor, RunningJob, error_entry, failure
from pgq.worker.listener import Listener
from pgq.worker.outcome import Outcome

if TYPE_CHECKING:
    from pgq.app import App

log = logging.getLogger("pgq.worker")

#: Seconds between progress writes of one worker (all its jobs in one statement).
PROGRESS_INTERVAL = 0.5


class Worker:
    """Runs jobs of ``queues`` with ``concurrency`` slots until stopped.

    Every option defaults to the app's settings (``PGQ_QUEUES``,
    ``PGQ_CONCURRENCY``, ``PGQ_POLL_INTERVAL``, ``PGQ_HEARTBEAT_INTERVAL``,
    ``PGQ_SHUTDOWN_TIMEOUT``). Use :meth:`App.run_worker` or
    ``async with app.worker(...)`` rather than this class directly.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        name: str | None = None,
        poll_interval: float | None = None,
        heartbeat_interval: float | None = None,
        shutdown_timeout: float | None = None,
        scheduler: bool = True,
        sweeper: bool = True,
    ) -> None:
        from pgq.enqueueing import QUEUE_NAME
        from pgq.errors import ConfigurationError

        settings = app.settings
        self.app = app
        self.schema = app.schema
        self.queues = list(queues if queues is not None else settings.queues)
        if not self.queues:
            raise ConfigurationError("a worker needs at least one queue (--queues or PGQ_QUEUES)")
        for queue in self.queues:
            if not isinstance(queue, str) or not QUEUE_NAME.match(queue):
                raise ConfigurationError(f"queue names are 1-128 letters, digits, '_', '.', ':' or '-'; got {queue!r}")
        self.concurrency = concurrency if concurrency is not None else settings.concurrency
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be an integer >= 1, got {self.concurrency!r}")
        self.poll_interval = poll_interval if poll_interval is not None else settings.poll_interval
        self.heartbeat_interval = heartbeat_interval if heartbeat_interval is not None else settings.heartbeat_interval
        self.shutdown_timeout = shutdown_timeout if shutdown_timeout is not None else settings.shutdown_timeout
        for label, value in (("poll_interval", self.poll_interval), ("heartbeat_interval", self.heartbeat_interval)):
            if value <= 0:
                raise ConfigurationError(f"{label} must be positive, got {value!r}")
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.id = uuid.uuid4()
        self.running: dict[int, RunningJob] = {}
        # Batches held (each takes one slot for all its jobs, which are in
        # self.running too), and of those the one still waiting per (task, queue).
        self._batches: set[Batch] = set()
        self._collecting: dict[tuple[str, str], Batch] = {}
        self.processed = 0
        # Which of self.queues have limits (claimed by claim_limited): loaded at
        # start, again on a notification on the queues channel and at each poll.
        self._limited: set[str] = set()
        self._limits_stale = True
        self._limited_turn = 0
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False
        self._forced = False
        self._started = False
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] | None = None
        self._pools: Pools | None = None
        self._claim_errors = LogWindow(log, 30.0)
        self._beat_errors = LogWindow(log, 30.0)
        self.executor = Executor(app.tasks, self.concurrency, settings.max_payload_bytes)
        self.completer = Completer(self.schema, self._connection, on_written=self._written)
        self.listener: Listener | None = None
        self.run_scheduler = scheduler
        self.run_sweeper = sweeper
        self.scheduler: Scheduler | None = None
        self.sweeper: Sweeper | None = None
        self._hook_tasks: set[asyncio.Future[None]] = set()
        # A claim older than this that no slot holds lost its answer: longer than
        # the slowest claim that can still answer (statement timeout + connect).
        self._orphan_grace = settings.statement_timeout + settings.connect_timeout + 10.0
        self._db_deadline = client_deadline(settings)

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run until :meth:`stop` is called (or a signal arrives in ``run_worker``)."""
        if self._started:
            raise RuntimeError("a Worker runs once; create another")
        self._started = True
        url = self.app.url
        await self._check_schema()
        self._pools = Pools(url, self.app.settings, purpose=f"worker {self.name}")
        self._pool = await self._pools.async_pool()
        await self._register()
        direct = self.app.direct_url
        if direct is None:
            log.warning(
                "PGQ_POOLER=transaction and no PGQ_LISTEN_URL: this worker does not LISTEN (it polls every "
                "%.1f s) and never acts as the sweeper (no rescue of dead workers' jobs, no retention, no "
                "metrics from it). Set PGQ_LISTEN_URL to a direct URL past the pooler.",
                self.poll_interval,
                extra={"event": "no_direct_url"},
            )
            self.run_sweeper = False
        self.listener = Listener(
            direct or url,
            self.app.settings,
            {
                f"{self.schema}_jobs": self._on_jobs,
                f"{self.schema}_cancel": self._on_cancel,
                f"{self.schema}_queues": self._on_queues,
            },
            self._wake.set,
        )
        log.info(
            "worker %s (%s) started: queues %s, concurrency %d",
            self.name,
            self.id,
            ",".join(self.queues),
            self.concurrency,
            extra={"event": "worker_started", "worker_id": str(self.id)},
        )
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="pgq-heartbeat")
        loops = [
            heartbeat,
            asyncio.create_task(self.completer.run(), name="pgq-completer"),
            asyncio.create_task(self._progress_loop(), name="pgq-progress"),
        ]
        if direct is not None:
            loops.append(asyncio.create_task(self.listener.run(), name="pgq-listener"))
        if self.run_scheduler:
            self.scheduler = Scheduler(self.app, self._connection)
            loops.append(asyncio.create_task(self.scheduler.run(), name="pgq-scheduler"))
        if self.run_sweeper:
            self.sweeper = Sweeper(self.app, worker_name=self.name)
            loops.append(asyncio.create_task(self.sweeper.run(), name="pgq-sweeper"))
        for loop_task in loops:
            loop_task.add_done_callback(self._loop_ended)
        try:
            await self._produce()
            await self._shutdown(heartbeat=heartbeat)
        finally:
            await self.listener.stop()
            if self.scheduler is not None:
                self.scheduler.stop()
            if self.sweeper is not None:
                await self.sweeper.close()
            self.completer.stop()
            for loop_task in loops:
                loop_task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            self.executor.shutdown()
            await self._pools.aclose()
            self._stopped.set()
            log.info(
                "worker %s stopped after %d jobs",
                self.name,
                self.processed,
                extra={"event": "worker_stopped", "worker_id": str(self.id)},
            )

    def _loop_ended(self, task: asyncio.Task[Any]) -> None:
        """The background loops catch everything; one that ends anyway is a bug that
        would silently stop heartbeats or finishes: say so loudly and stop the worker."""
        if self._stopping or task.cancelled():
            return
        log.critical(
            "background loop %s ended unexpectedly (%r); stopping the worker", task.get_name(), task.exception()
        )
        self.stop()

    def stop(self, graceful: bool = True) -> None:
        """Stop claiming; running jobs get ``shutdown_timeout`` seconds to finish
        (none if ``graceful`` is False), then go back to pending."""
        if not graceful:
            self._forced = True
        self._stopping = True
        self._wake.set()
        self._slot_freed.set()
        for batch in self._batches:
            batch.wake.set()  # a waiting batch gives its jobs back at once

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    @contextlib.asynccontextmanager
    async def _connection(self, wait: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        """A pooled connection for one piece of work, bounded in time on this side:
        behind a half-open socket the server's statement_timeout never reaches
        us, and TCP may still be acknowledged by a middlebox. A connection whose
        work runs out of time is returned mid-query, so the pool discards it."""
        assert self._pool is not None
        async with asyncio.timeout(self._db_deadline), self._pool.connection(timeout=wait) as conn:
            yield conn

    async def _check_schema(self) -> None:
        """Check (or create, for the embedded database) pgq's schema before the first claim.
        A database that is restarting, or a session terminated under the check, must not stop
        a worker at start any more than later: it is retried like registration. A missing or
        outdated schema is not transient and raises NotMigrated at once."""
        from pgq.errors import DatabaseUnavailable

        while True:
            try:
                await asyncio.to_thread(self.app._ensure_migrated_for_worker)
                return
            except (*TRANSIENT, DatabaseUnavailable) as exc:
                if self._stopping:
                    raise
                self._beat_errors.warning("cannot check pgq's schema yet (database unavailable?): %s", _first_line(exc))
                await asyncio.sleep(1.0)

    async def _register(self) -> None:
        from pgq import __version__

        while True:
            try:
                async with self._connection() as conn:
                    await repo.register_worker(
                        conn,
                        self.schema,
                        id=self.id,
                        name=self.name,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        queues=self.queues,
                        concurrency=self.concurrency,
                        version=__version__,
                        tasks=sorted(self.app.tasks),
                    )
                return
            except TRANSIENT as exc:
                if self._stopping:
                    return
                self._beat_errors.warning("cannot register the worker yet: %s", exc)
                await asyncio.sleep(1.0)

    # ------------------------------------------------------------- producer

    async def _produce(self) -> None:
        while not self._stopping:
            free = self.concurrency - self._slots_used()
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._wake.clear()
            wait: float | None = None
            try:
                async with self._connection() as conn:
                    if self._limits_stale:
                        limited = await repo.limited_queues(conn, self.schema, self.queues)
                        if limited - self._limited:
                            # Jobs this worker claimed before it heard of the limit hold slots of it.
                            await repo.mark_limit_slots(conn, self.schema, self.id, sorted(limited - self._limited))
                        self._limited = limited
                        self._limits_stale = False
                    jobs = await self._claim(conn, free)
                    if len(jobs) < free:
                        wait = await repo.seconds_to_next_job(conn, self.schema, self.queues)
                        if self._limited:
                            token = await repo.seconds_to_next_token(conn, self.schema, sorted(self._limited))
                            if token is not None:
                                wait = token if wait is None else min(wait, token)
            except TRANSIENT as exc:
                self._claim_errors.warning("cannot claim jobs (database unavailable?): %s", _first_line(exc))
                await self._sleep(min(self.poll_interval, 0.5 + 0.5 * self._claim_errors.count))
                continue
            except Exception:
                log.exception("claiming jobs failed; retrying")
                await self._sleep(self.poll_interval)
                continue
            self._claim_errors.reset("claiming jobs again")
            if len(jobs) == free:
                continue
            poll = self.poll_interval * random.uniform(0.9, 1.1)
            timeout = poll if wait is None else min(poll, wait)
            if not await self._sleep(timeout) and timeout == poll:
                # A poll: see whether limits changed (a lost notification costs one poll).
                self._limits_stale = True

    async def _claim(self, conn: psycopg.AsyncConnection[Row], free: int) -> list[Job]:
        """Claim up to ``free`` jobs: one statement for the queues without limits, then
        one per queue with limits (taking turns at going first), and start each at once."""
        unlimited = [q for q in self.queues if q not in self._limited]
        jobs: list[Job] = []
        if unlimited:
            jobs = await repo.claim(conn, self.schema, self.id, unlimited, free)
            # Start them before anything else awaits: until then they are
            # claimed in the database but held nowhere in this process.
            for job in jobs:
                self._start(job)
        limited = [q for q in self.queues if q in self._limited]
        if limited:
            self._limited_turn = (self._limited_turn + 1) % len(limited)
            limited = limited[self._limited_turn :] + limited[: self._limited_turn]
        for queue in limited:
            room = free - len(jobs)
            if room <= 0:
                break
            claimed = await repo.claim_limited(conn, self.schema, self.id, queue, room)
            for job in claimed:
                self._start(job)
            jobs.extend(claimed)
        return jobs

    def _slots_used(self) -> int:
        if not self._batches:
            return len(self.running)
        batched = sum(len(batch.members) for batch in self._batches)
        return len(self.running) - batched + len(self._batches)

    async def _sleep(self, timeout: float) -> bool:
        """Until a notification, a stop, or ``timeout`` seconds; True if woken."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _on_jobs(self, payload: str) -> None:
        self._wake.set()
        for batch in self._batches:
            if not batch.running:
                batch.wake.set()

    def _on_queues(self, payload: str) -> None:
        """A queue's limits changed (``set_queue``): reload them before the next claim."""
        self._limits_stale = True
        self._wake.set()

    def _on_cancel(self, payload: str) -> None:
        self._cancel_local(int(payload))

    def _cancel_local(self, job_id: int) -> None:
        running = self.running.get(job_id)
        if running is None or running.stop_reason is not None:
            return
        running.stop_reason = "cancel"
        running.ctx.cancelled = True
        self._interrupt(running)

    def _interrupt(self, running: RunningJob) -> None:
        """Stop a job whose ``stop_reason`` was just set."""
        batch = running.batch
        if batch is None:
            if running.task is not None:
                running.task.cancel()
        elif not batch.running:
            batch.wake.set()  # the waiting batch lets the job go at once
        elif not batch.interrupted and all(r.stop_reason is not None for r in batch.members):
            # One handler call serves the whole batch: it is stopped only when no job
            # of the batch still wants it; until then a cancelled job ends as the
            # handler says, except that a failure ends cancelled instead of retrying.
            batch.interrupted = True
            if batch.future is not None:
                batch.future.cancel()

    # ------------------------------------------------------------- executor

    def _start(self, job: Job) -> None:
        task = self.app.tasks.get(job.task)
        if task is not None and task.batch_size is not None:
            self._join_batch(job, task)
            return
        ctx = JobContext(job, logging.getLogger(f"pgq.job.{job.task}"))
        running = RunningJob(job, ctx)
        self.running[job.id] = running
        running.task = asyncio.create_task(self._execute(running), name=f"pgq-job-{job.id}")
        running.task.add_done_callback(lambda _: self._settle(running))
        if self.app._hooks.get("job_started"):
            self._emit(Event("job_started", job))

    # -------------------------------------------------------------- batches

    def _join_batch(self, job: Job, task: Task[Any, Any]) -> None:
        """Add a claimed job of a batch task to the waiting batch of its task and
        queue, or open one (which takes the slot the claim counted on)."""
        batch = self._collecting.get((task.name, job.queue))
        if batch is None:
            batch = Batch(task, job.queue)
            self._batches.add(batch)
            self._collecting[batch.key] = batch
            batch.future = asyncio.create_task(self._run_batch(batch), name=f"pgq-batch-{task.name}-{job.id}")
            batch.future.add_done_callback(lambda _: self._settle_batch(batch))
        self._add_member(batch, job)

    def _add_member(self, batch: Batch, job: Job) -> None:
        running = RunningJob(job, JobContext(job, logging.getLogger(f"pgq.job.{job.task}")), batch=batch)
        running.task = batch.future
        batch.members.append(running)
        self.running[job.id] = running
        if batch.full:
            self._close_batch(batch)
            batch.wake.set()
        if self.app._hooks.get("job_started"):
            self._emit(Event("job_started", job))

    def _close_batch(self, batch: Batch) -> None:
        """No more jobs join this batch: the next job of its task and queue opens another."""
        if self._collecting.get(batch.key) is batch:
            del self._collecting[batch.key]

    async def _run_batch(self, batch: Batch) -> None:
        members: list[RunningJob] = []
        try:
            await self._collect(batch)
            self._close_batch(batch)
            self._drop_stopped(batch)
            if not batch.members:
                return
            batch.running = True
            members = batch.claim_order()
            outcomes = await self.executor.run_batch(members, batch.task)
        except asyncio.CancelledError:
            outcomes = [self._stopped_outcome(running) for running in members or list(batch.members)]
        except BaseException as exc:  # the slot and the jobs must be given back whatever happened
            log.exception("batch of %s: the worker failed around its handler", batch.task.name)
            members = list(batch.members)
            outcomes = [
                failure(r.job, type(exc).__qualname__, f"worker error: {exc}", permanent=False, exc=exc)
                for r in members
            ]
        finally:
            self._close_batch(batch)
            for running in list(batch.members):
                self._release(running)
            batch.members.clear()
            self._batches.discard(batch)
            self._slot_freed.set()
        for outcome in outcomes:
            if outcome is not None:
                self.completer.add(outcome)
                self.processed += 1
                self._report(outcome)

    async def _collect(self, batch: Batch) -> None:
        """Top the batch up at once, then on each notification or short poll, until it
        is full or ``batch_wait`` has passed since its first job arrived."""
        deadline = batch.opened + batch.task.batch_wait
        while True:
            self._drop_stopped(batch)
            if self._stopping or not batch.members or batch.full:
                return
            batch.wake.clear()  # before the claim: a notification during it wakes the next wait
            await self._top_up(batch)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping or batch.full:
                return
            if await _wait(batch.wake, min(remaining, BATCH_POLL)):
                await asyncio.sleep(min(TOP_UP_GAP, max(0.0, deadline - time.monotonic())))

    async def _top_up(self, batch: Batch) -> None:
        room = batch.size - len(batch.members)
        try:
            async with self._connection() as conn:
                jobs = await repo.claim_batch(conn, self.schema, self.id, batch.queue, batch.task.name, room)
                # Held before anything else awaits, as the producer's claims are.
                for job in jobs:
                    if not batch.full:
                        self._add_member(batch, job)
                    else:
                        self._overflow(job, batch.task)
        except TRANSIENT as exc:
            self._claim_errors.warning("cannot top up a batch (database unavailable?): %s", _first_line(exc))
        except Exception:
            log.exception("topping up a batch of %s failed; it runs with the jobs it has", batch.task.name)

    def _overflow(self, job: Job, task: Task[Any, Any]) -> None:
        """A top-up job that no longer fits: the producer's claims filled the batch
        while the top-up was in flight. It joins another batch if one waits or a slot
        is free, else it goes straight back to the queue (its attempt given back)."""
        if (task.name, job.queue) in self._collecting or self._slots_used() < self.concurrency:
            self._join_batch(job, task)
        else:
            self.completer.add(Outcome(job, "return"))

    def _drop_stopped(self, batch: Batch) -> None:
        """Let go of a waiting batch's jobs that must stop (all of them when the worker
        stops: a batch whose handler has not started gives its jobs back, attempts
        uncounted), writing what became of each."""
        for running in list(batch.members):
            if self._stopping and running.stop_reason is None:
                running.stop_reason = "shutdown"
            if running.stop_reason is None:
                continue
            batch.members.remove(running)
            self._release(running)
            outcome = self._stopped_outcome(running)
            if outcome is not None:
                self.completer.add(outcome)
                self._report(outcome)

    def _settle_batch(self, batch: Batch) -> None:
        """A batch task cancelled before its first step never ran _run_batch: give its jobs
        and its slot back here."""
        if batch not in self._batches:
            return
        self._close_batch(batch)
        for running in list(batch.members):
            self._release(running)
            outcome = self._stopped_outcome(running)
            if outcome is not None:
                self.completer.add(outcome)
                self._report(outcome)
        batch.members.clear()
        self._batches.discard(batch)
        self._slot_freed.set()

    async def _execute(self, running: RunningJob) -> Outcome | None:
        outcome: Outcome | None
        try:
            if running.job.depends_on:
                async with self._connection() as conn:
                    await repo.read_parents(conn, self.schema, running.ctx, running.job.depends_on)
            outcome = await self.executor.run(running)
        except asyncio.CancelledError:
            outcome = self._stopped_outcome(running)
        except BaseException as exc:  # the slot must be freed whatever happened
            log.exception("job %s: the worker failed around its handler", running.job.id)
            outcome = failure(running.job, type(exc).__qualname__, f"worker error: {exc}", permanent=False, exc=exc)
        finally:
            self._release(running)
        if outcome is None:
            return None
        self.completer.add(outcome)
        self.processed += 1
        self._report(outcome)
        return outcome

    def _stopped_outcome(self, running: RunningJob) -> Outcome | None:
        """What to write for a job this worker stopped from outside its handler."""
        if running.stop_reason == "dead":
            return None  # the sweeper gave the job away: nothing of ours to write
        if running.stop_reason == "cancel":
            error = error_entry(running.job, "Cancelled", "cancelled by request")
            return Outcome(running.job, "cancelled", error=error)
        return Outcome(running.job, "return")

    def _release(self, running: RunningJob) -> None:
        if self.running.get(running.job.id) is running:
            del self.running[running.job.id]
            self._slot_freed.set()

    def _settle(self, running: RunningJob) -> None:
        """A job task cancelled before its first step never ran _execute: free its
        slot and write its outcome here."""
        if self.running.get(running.job.id) is not running:
            return
        self._release(running)
        outcome = self._stopped_outcome(running)
        if outcome is not None:
            self.completer.add(outcome)
            self._report(outcome)

    def _report(self, outcome: Outcome) -> None:
        if self.app._hooks.get(outcome.event):
            self._emit(
                Event(
                    outcome.event,
                    outcome.job,
                    error=outcome.error,
                    retry_in=outcome.delay,
                    duration=outcome.duration,
                    result=outcome.result_json,
                )
            )
        # The dict and the line cost a few microseconds a job: only when INFO is on
        # (failures log at WARNING and above, so they always pass).
        if outcome.kind in ("completed", "cancelled", "return") and not log.isEnabledFor(logging.INFO):
            return
        job = outcome.job
        ms = outcome.duration * 1000
        fields = {
            "event": outcome.event,
            "job_id": job.id,
            "task": job.task,
            "queue": job.queue,
            "attempt": job.attempts,
            "max_attempts": job.max_attempts,
            "duration_ms": round(ms, 3),
        }
        if outcome.kind == "completed":
            log.info("job %s %s completed in %.1f ms", job.id, job.task, ms, extra=fields)
        elif outcome.kind == "retry":
            error = outcome.error or {}
            log.warning(
                "job %s %s failed attempt %d/%d, retrying in %.1f s: %s: %s",
                job.id,
                job.task,
                job.attempts,
                job.max_attempts,
                outcome.delay or 0,
                error.get("type"),
                error.get("message"),
                extra={**fields, "retry_in": outcome.delay},
            )
        elif outcome.kind == "failed":
            error = outcome.error or {}
            log.error(
                "job %s %s failed for good after attempt %d/%d: %s: %s",
                job.id,
                job.task,
                job.attempts,
                job.max_attempts,
                error.get("type"),
                error.get("message"),
                extra=fields,
            )
        elif outcome.kind == "cancelled":
            log.info("job %s %s cancelled", job.id, job.task, extra=fields)
        else:
            log.info("job %s %s returned to the queue (shutdown)", job.id, job.task, extra=fields)

    def _emit(self, event: Event) -> None:
        for hook in self.app._hooks.get(event.name, ()):
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    hook_task = asyncio.ensure_future(_guarded(result, event))
                    self._hook_tasks.add(hook_task)  # a task nobody references may be collected mid-run
                    hook_task.add_done_callback(self._hook_tasks.discard)
            except Exception:
                log.exception("hook %r for %s raised; ignored", hook, event.name)

    async def _written(self, outcomes: list[Outcome], accepted: set[int]) -> None:
        refused = [o for o in outcomes if o.job.id not in accepted]
        for outcome in refused:
            log.warning(
                "job %s: outcome %s refused, this worker no longer owns attempt %d (the sweeper gave it away)",
                outcome.job.id,
                outcome.kind,
                outcome.job.attempts,
                extra={"event": "finish_refused", "job_id": outcome.job.id},
            )
        if any(o.kind in ("retry", "return") and (o.delay or 0) == 0 for o in outcomes):
            # Jobs back to pending now: wake idle workers (the insert trigger does not see updates).
            try:
                async with self._connection() as conn:
                    await repo.notify(conn, f"{self.schema}_jobs")
            except TRANSIENT:
                pass  # a hint only; the poll finds them
        if any(o.kind in ("retry", "return") for o in outcomes):
            self._wake.set()
        if self._limited and any(o.job.queue in self._limited for o in outcomes):
            # A slot of a queue with a concurrency limit may be free now: this worker
            # tries again, and the others are told (queues without limits pay nothing).
            self._wake.set()
            try:
                async with self._connection() as conn:
                    await repo.notify(conn, f"{self.schema}_jobs")
            except TRANSIENT:
                pass

    # ------------------------------------------------------------ heartbeat

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self._beat()
            except TRANSIENT as exc:
                self._beat_errors.warning("heartbeat failed (database unavailable?): %s", _first_line(exc))
            except Exception:
                log.exception("heartbeat failed; retrying")
            else:
                self._beat_errors.reset("heartbeats resume")

    async def _beat(self) -> None:
        try:
            async with self._connection(wait=self.heartbeat_interval) as conn:
                found = await self._beat_on(conn)
        except (PoolTimeout, TimeoutError):
            # After an outage the pool reconnects on its own backoff, which can run seconds
            # past the database's return, while the sweeper's grace after an outage is one
            # heartbeat timeout: a heartbeat does not wait for the pool, it connects itself.
            async with asyncio.timeout(self._db_deadline):
                conn = await psycopg.AsyncConnection.connect(
                    self.app.url,
                    autocommit=True,
                    row_factory=dict_row,
                    **connection_kwargs(self.app.settings, "worker heartbeat"),
                )
                async with conn:
                    found = await self._beat_on(conn)
        if found is None:
            await self._declared_dead()  # after giving the connection back: it registers on another

    async def _beat_on(self, conn: psycopg.AsyncConnection[Row]) -> str | None:
        """One heartbeat on ``conn``; the worker's status, None when it was declared dead."""
        status = "stopping" if self._stopping else "running"
        found, cancel_ids = await repo.heartbeat(conn, self.schema, self.id, status, sorted(self.running))
        if found is not None:
            for job_id in cancel_ids:
                self._cancel_local(job_id)
            owned = set(self.running) | self.completer.unflushed_ids()
            orphans = await repo.return_orphans(conn, self.schema, self.id, sorted(owned), self._orphan_grace)
            if orphans:
                log.warning("returned %d jobs whose claim answer was lost: %s", len(orphans), orphans)
                self._wake.set()
        return found

    async def _declared_dead(self) -> None:
        """The sweeper presumed this worker dead and gave its jobs away: stop working
        under that id, drop what it was running, and start again under a new one."""
        log.error(
            "worker %s was declared dead (no heartbeat for too long); abandoning %d jobs and re-registering",
            self.id,
            len(self.running),
            extra={"event": "worker_declared_dead", "worker_id": str(self.id)},
        )
        if self._stopping:
            return
        for running in list(self.running.values()):
            running.stop_reason = "dead"
            running.ctx.cancelled = True
            self._interrupt(running)
        self.id = uuid.uuid4()
        await self._register()

    # ------------------------------------------------------------- progress

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            updates = []
            for running in list(self.running.values()):
                current = (running.ctx.progress, running.ctx.progress_message)
                if current != running.written_progress and running.job.worker_id == self.id:
                    updates.append((running.job.id, running.job.queue, running.job.attempts, *current))
                    running.written_progress = current
            if not updates:
                continue
            try:
                async with self._connection() as conn:
                    await repo.write_progress(conn, self.schema, self.id, updates)
            except TRANSIENT:
                pass  # progress is best effort; the next change is written
            except Exception:
                log.exception("writing progress failed; ignored")

    # ------------------------------------------------------------- shutdown

    async def _shutdown(self, heartbeat: asyncio.Task[None]) -> None:
        tasks = [r.task for r in self.running.values() if r.task is not None]
        if tasks and not self._forced:
            log.info("shutting down: waiting up to %.0f s for %d running jobs", self.shutdown_timeout, len(tasks))
            await self._wait_for(tasks, self.shutdown_timeout)
        left = [r for r in self.running.values() if r.task is not None]
        if left:
            log.warning("returning %d unfinished jobs to the queue", len(left))
            for running in left:
                if running.stop_reason is None:  # a pending cancellation stays a cancellation
                    running.stop_reason = "shutdown"
                running.ctx.cancelled = True
                self._interrupt(running)
            await asyncio.gather(*{r.task for r in left if r.task is not None}, return_exceptions=True)
        self.completer.stop()
        if not await self.completer.drain(timeout=2.0 if self._forced else 10.0):
            log.error(
                "could not write %d outcomes before exiting; those jobs stay running until the sweeper rescues them",
                len(self.completer.unflushed_ids()),
            )
        # Heartbeats go on through the grace period (a long drain must not look
        # like a death) and end before the row says stopped: a beat after that
        # would find the row stopped and take it for a death sentence.
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        try:
            async with asyncio.timeout(3.0), self._connection() as conn:
                await repo.stop_worker(conn, self.schema, self.id)
        except (*TRANSIENT, TimeoutError) as exc:
            log.warning("could not mark the worker stopped: %s", _first_line(exc))

    async def _wait_for(self, tasks: list[asyncio.Task[Outcome | None]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(tasks)
        while pending and not self._forced:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            _, pending = await asyncio.wait(pending, timeout=min(remaining, 0.2))


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Until ``event`` is set (True) or ``timeout`` seconds pass (False)."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


async def _guarded(awaitable: Any, event: Event) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("async hook for %s raised; ignored", event.name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
