"""One worker process's engine, put together: claim, run, finish, heartbeat, listen.

- the :class:`~pgq.worker.producer.Producer` claims exactly as many jobs as
  there are free slots, in one statement, on a session of its own;
- the :class:`~pgq.worker.executor.Executor` runs each job in one task and
  classifies what came of it;
- the :class:`~pgq.worker.completer.Completer` writes outcomes in batches on
  another session, and only then are events fired and lines logged
  (:class:`~pgq.worker.reporter.Reporter`);
- :class:`~pgq.worker.heartbeat.Heartbeat` and
  :class:`~pgq.worker.heartbeat.ProgressWriter` are periodic services;
- the :class:`~pgq.db.listener.Listener` turns notifications into wake-ups.

Database errors never stop the worker: each loop logs a bounded number of
lines, waits, and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgq.context import JobContext
from pgq.db import channels, repo, store
from pgq.db.connection import Pools, Row
from pgq.db.listener import Listener
from pgq.db.session import Session, Silence
from pgq.job import Job
from pgq.maintenance.scheduler import Scheduler
from pgq.maintenance.service import TRANSIENT, client_deadline
from pgq.maintenance.sweeper import Sweeper
from pgq.task import Task
from pgq.throttle import LogWindow
from pgq.worker import isolation
from pgq.worker.batch import Batches
from pgq.worker.completer import Completer
from pgq.worker.executor import STOP_WAIT, Executor, RunningJob
from pgq.worker.heartbeat import Heartbeat, ProgressWriter
from pgq.worker.outcome import Outcome
from pgq.worker.producer import Producer, first_line
from pgq.worker.reporter import Reporter
from pgq.worker.slots import Slots
from pgq.worker.transactional import Transactions

if TYPE_CHECKING:
    from pgq.app import App

log = logging.getLogger("pgq.worker")

#: Slots of a worker whose tasks are all async, when no concurrency is set.
ASYNC_CONCURRENCY = 100
#: Slots of a worker with a plain (sync) task, when no concurrency is set.
SYNC_CONCURRENCY = 10


def default_concurrency(tasks: Mapping[str, Task[Any, Any]]) -> int:
    """A worker's slots when neither ``concurrency=``, ``--concurrency`` nor
    ``PGQ_CONCURRENCY`` says: async slots are cheap (River runs 100 by default),
    while each plain handler holds a thread, and in most apps a database
    connection of its own, so 100 of them would exhaust a typical pool."""
    return ASYNC_CONCURRENCY if all(task.is_async for task in tasks.values()) else SYNC_CONCURRENCY


#: Seconds a shutdown may take past its grace (``shutdown_timeout``) in all:
#: stopping handlers, writing the last outcomes, saying the worker stopped,
#: closing connections. With the database gone, each of those gives up in time.
SHUTDOWN_SLACK = 4.5


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
        from pgq.errors import ConfigurationError
        from pgq.queue_names import check_queue_name

        settings = app.settings
        self.app = app
        self.schema = app.schema
        self.queues = list(queues if queues is not None else settings.queues)
        if not self.queues:
            raise ConfigurationError("a worker needs at least one queue (--queues or PGQ_QUEUES)")
        for queue in self.queues:
            check_queue_name(queue)
        self._concurrency_given = concurrency is not None or settings.concurrency is not None
        if concurrency is None:
            concurrency = settings.concurrency if settings.concurrency is not None else default_concurrency(app.tasks)
        self.concurrency = concurrency
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be an integer >= 1, got {self.concurrency!r}")
        self.poll_interval = poll_interval if poll_interval is not None else settings.poll_interval
        self.heartbeat_interval = heartbeat_interval if heartbeat_interval is not None else settings.heartbeat_interval
        self.shutdown_timeout = shutdown_timeout if shutdown_timeout is not None else settings.shutdown_timeout
        for label, value in (("poll_interval", self.poll_interval), ("heartbeat_interval", self.heartbeat_interval)):
            if value <= 0:
                raise ConfigurationError(f"{label} must be positive, got {value!r}")
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.id = uuid.uuid4()
        #: Jobs finished by this worker (their outcome handed to the completer).
        self.processed = 0
        self.stopping = False
        self._forced = False
        self._started = False
        self._stopped = asyncio.Event()
        # When a shutdown must be over (set once the grace has passed): the steps
        # after it share what is left.
        self._hard_deadline = float("inf")
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] | None = None
        self._pools: Pools | None = None
        self._errors = LogWindow(log, 30.0)
        # A claim older than this that no slot holds lost its answer: longer than
        # the slowest claim that can still answer (statement timeout + connect).
        self.orphan_grace = settings.claim_settle
        #: monotonic time of the last claim whose answer may have been lost (it failed
        #: after it was sent), until the heartbeat's scan for orphans has covered it
        self.claim_lost_at: float | None = None
        self.db_deadline = client_deadline(settings)
        url = app.url
        self.slots = Slots(self.concurrency)
        self.reporter = Reporter(app.hooks, self.name, app.telemetry)
        self.executor = Executor(
            app.tasks,
            self.concurrency,
            settings.max_payload_bytes,
            on_outcome=self._settled,
            before=self._read_parents,
            keep_log=self._keep_log,
            keep_progress=lambda running: self.progress.flush(running),
            telemetry=app.telemetry,
            transactions=(
                Transactions(url, settings, app.schema, lambda: self.id, self.concurrency, f"worker {self.name}")
                if any(task.transactional for task in app.tasks.values())
                else None
            ),
        )
        if app.telemetry is not None:
            app.telemetry.watch(app)
        silence = Silence()
        self._claims = Session(url, settings, f"worker {self.name} claims", self.db_deadline, silence)
        self._finishes = Session(url, settings, f"worker {self.name} finishes", self.db_deadline, silence)
        self.completer = Completer(self._write, on_written=self._written)
        self.producer = Producer(self, self._claims)
        self.batches = Batches(self)
        self.heartbeat = Heartbeat(self)
        self.progress = ProgressWriter(self)
        self.listener: Listener | None = None
        self.run_scheduler = scheduler
        self.run_sweeper = sweeper
        self.scheduler: Scheduler | None = None
        self.sweeper: Sweeper | None = None

    @property
    def running(self) -> dict[int, RunningJob]:
        """The jobs this worker holds, by id."""
        return self.slots.jobs

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run until :meth:`stop` is called (or a signal arrives in ``run_worker``)."""
        if self._started:
            raise RuntimeError("a Worker runs once; create another")
        self._started = True
        await self._check_schema()
        self._pools = Pools(self.app.url, self.app.settings, purpose=f"worker {self.name}")
        self._pool = await self._pools.async_pool()
        await self._register()
        await self._warm_up()
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
            direct or self.app.url,
            self.app.settings,
            {
                channels.jobs(self.schema): self._on_jobs,
                channels.cancel(self.schema): self._on_cancel,
                channels.queues(self.schema): self.producer.on_queues,
            },
            self.producer.wake.set,
        )
        loop = asyncio.get_running_loop()
        log.info(
            "worker %s (%s) started: queues %s, concurrency %d%s, event loop %s",
            self.name,
            self.id,
            ",".join(self.queues),
            self.concurrency,
            "" if self._concurrency_given else " (the default for its tasks; set --concurrency to change)",
            "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio",
            extra={"event": "worker_started", "worker_id": str(self.id)},
        )
        heartbeat = asyncio.create_task(self.heartbeat.run(), name="pgq-heartbeat")
        loops = [
            heartbeat,
            asyncio.create_task(self.completer.run(), name="pgq-completer"),
            asyncio.create_task(self.progress.run(), name="pgq-progress"),
        ]
        if direct is not None:
            loops.append(asyncio.create_task(self.listener.run(), name="pgq-listener"))
        if self.run_scheduler:
            self.scheduler = Scheduler(self.app, self.connection)
            loops.append(asyncio.create_task(self.scheduler.run(), name="pgq-scheduler"))
        if self.run_sweeper:
            self.sweeper = Sweeper(self.app, worker_name=self.name)
            loops.append(asyncio.create_task(self.sweeper.run(), name="pgq-sweeper"))
        for loop_task in loops:
            loop_task.add_done_callback(self._loop_ended)
        try:
            await self.producer.run()
            await self._shutdown(heartbeat)
        finally:
            await self._close(loops)
            log.info(
                "worker %s stopped after %d jobs",
                self.name,
                self.processed,
                extra={"event": "worker_stopped", "worker_id": str(self.id)},
            )

    async def _close(self, loops: Sequence[asyncio.Task[Any]]) -> None:
        """Let go of everything by the shutdown's hard deadline: with the database gone,
        a connection that will not close in time is left for the process's exit."""
        assert self.listener is not None and self._pools is not None
        self.reporter.summary()
        if self.scheduler is not None:
            self.scheduler.stop()
        self.completer.stop()
        self.heartbeat.stop()
        self.progress.stop()
        for loop_task in loops:
            loop_task.cancel()
        if self._hard_deadline == float("inf"):  # ended without a shutdown (a failure at start)
            self._hard_deadline = time.monotonic() + SHUTDOWN_SLACK
        try:
            async with asyncio.timeout(max(0.5, self._hard_deadline - time.monotonic())):
                await self.listener.stop()
                if self.sweeper is not None:
                    await self.sweeper.close()
                await asyncio.gather(*loops, return_exceptions=True)
                await self._claims.close()
                await self._finishes.close()
                await self._pools.aclose()
                if self.executor.transactions is not None:
                    await self.executor.transactions.close()
        except TimeoutError:
            log.warning("closing the worker's connections took too long; leaving them to the process's exit")
        finally:
            await isolation.close_children()  # idle ones: a running suspect was killed with its job
            self.executor.shutdown()
            self._stopped.set()

    def _loop_ended(self, task: asyncio.Task[Any]) -> None:
        """The background loops catch everything; one that ends anyway is a bug that
        would silently stop heartbeats or finishes: say so loudly and stop the worker."""
        if self.stopping or task.cancelled():
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
        self.stopping = True
        self.producer.wake.set()
        self.slots.freed.set()
        for batch in self.slots.batches:
            batch.wake.set()  # a waiting batch gives its jobs back at once

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    @contextlib.asynccontextmanager
    async def connection(self, wait: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        """A pooled connection for one piece of work, bounded in time on this side:
        behind a half-open socket the server's statement_timeout never reaches
        us, and TCP may still be acknowledged by a middlebox. A connection whose
        work runs out of time is returned mid-query, so the pool discards it."""
        assert self._pool is not None
        async with asyncio.timeout(self.db_deadline), self._pool.connection(timeout=wait) as conn:
            yield conn

    async def _check_schema(self) -> None:
        """Check (or create, for the embedded database) pgq's schema before the first claim.
        A database that is restarting, or a session terminated under the check, must not stop
        a worker at start any more than later: it is retried like registration. A missing or
        outdated schema is not transient and raises NotMigrated at once."""
        from pgq.errors import DatabaseUnavailable

        while True:
            try:
                await asyncio.to_thread(self.app.db.ensure_migrated)
                return
            except (*TRANSIENT, DatabaseUnavailable) as exc:
                if self.stopping:
                    raise
                self._errors.warning("cannot check pgq's schema yet (database unavailable?): %s", first_line(exc))
                await asyncio.sleep(1.0)

    async def _register(self) -> None:
        from pgq import __version__

        while True:
            try:
                async with self.connection() as conn:
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
                        tasks=self.app.tasks.names(),
                    )
                return
            except TRANSIENT as exc:
                if self.stopping:
                    return
                self._errors.warning("cannot register the worker yet: %s", exc)
                await asyncio.sleep(1.0)

    async def _warm_up(self) -> None:
        """Open the claims and finishes sessions and write an empty batch of completions on
        each, before the first job. A worker started under load otherwise opened a session
        and planned the finish function's statements (a server session caches them) at its
        first finish, and a backlog built meanwhile: at 16,000 jobs/s arriving, p99 from
        commit to start was 14.9 ms cold and 8.5 ms warmed (medians of 5 alternating runs).
        The claims session finishes plain completions too (riding on its claims)."""
        for session in (self._claims, self._finishes):
            try:
                await repo.finish(session, self.schema, self.id, [[], [], [], None, None, None, None])
            except TRANSIENT:
                pass  # the first real statement opens it again, with its own retries

    # ------------------------------------------------------------- jobs

    def start(self, job: Job) -> None:
        """Hold a claimed job and start it (the producer calls this for each, before it awaits)."""
        task = self.app.tasks.get(job.task)
        if task is not None and task.batch_size is not None:
            self.batches.join(job, task)
            return
        running = RunningJob(job, JobContext(job) if task is not None and task.pass_context else None)
        self.slots.hold(running)
        self.executor.start(running)
        self.reporter.started(job)

    def _settled(self, running: RunningJob, outcome: Outcome | None) -> None:
        """A job's handler is done (or given up on): free its slot, queue its outcome."""
        self.slots.release(running)
        if outcome is not None:
            self.processed += 1
            if outcome.written:  # a transactional handler's, committed with its writes
                self._report([outcome], {outcome.job.id})
            else:
                self.completer.add(outcome)
                limited = self.producer.limited
                if limited and outcome.job.queue in limited:
                    # Its slot of the queue's limit frees once the outcome is written: the
                    # next claim of the queue writes it first (migration 0021), in one round
                    # trip where waiting for the completer's write took two.
                    self.producer.wake.set()

    async def _keep_log(self, running: RunningJob) -> None:
        """Write the lines the handler logged through ctx.log, before its outcome is queued:
        lost lines are a pity, not a reason to hold the job back, so a failure is logged."""
        assert running.ctx is not None
        rows = running.ctx.log_lines.rows()
        params: store.JobLogInsert = {
            "job_id": running.job.id,
            "attempt": running.job.attempts,
            "at": [row[0] for row in rows],
            "level": [row[1] for row in rows],
            "message": [row[2].replace("\x00", "\\0") for row in rows],
        }
        try:
            async with self.connection(wait=5.0) as conn:
                await store.job_log_insert.fetch_async(conn, self.app.schema, params)
        except Exception as exc:
            log.warning("job %s: its %d log lines were not stored: %s", running.job.id, len(rows), exc)

    async def _read_parents(self, running: RunningJob) -> None:
        assert running.ctx is not None and running.job.depends_on
        async with self.connection() as conn:
            await repo.read_parents(conn, self.schema, running.ctx, running.job.depends_on)

    def _on_jobs(self, payload: str) -> None:
        self.producer.wake.set()
        self.batches.wake_waiting()

    def _on_cancel(self, payload: str) -> None:
        self.cancel_local(int(payload))

    def cancel_local(self, job_id: int) -> None:
        running = self.slots.jobs.get(job_id)
        if running is not None and running.stop_reason is None:
            self._interrupt(running, "cancel")

    def _interrupt(self, running: RunningJob, reason: str) -> None:
        if running.batch is None:
            self.executor.interrupt(running, reason)
            return
        if running.stop_reason is None or reason == "dead":
            running.stop_reason = reason
            self.batches.interrupt(running)

    async def _write(self, worker_id: uuid.UUID, columns: Sequence[list[Any] | None]) -> set[int]:
        return await repo.finish(self._finishes, self.schema, worker_id, columns)

    async def _written(self, outcomes: list[Outcome], accepted: set[int]) -> None:
        self._report(outcomes, accepted)

    def _report(self, outcomes: list[Outcome], accepted: set[int]) -> None:
        self.reporter.written(outcomes, accepted)
        # A job back to pending, or a freed slot of a queue with limits, may be claimable
        # now: this worker looks again (finish_jobs() has notified the others).
        limited = self.producer.limited
        for outcome in outcomes:
            if outcome.kind in ("retry", "return", "snooze") or (limited and outcome.job.queue in limited):
                self.producer.wake.set()
                break

    @contextlib.contextmanager
    def claiming(self) -> Iterator[None]:
        """Around a claim: if it fails, after it may have reached the database, its jobs
        may be running under this worker's id without being held here. The heartbeat
        looks for them once the claim has surely ended."""
        try:
            yield
        except BaseException:
            self.claim_lost_at = time.monotonic()
            raise

    def owned_ids(self) -> set[int]:
        """Ids of the jobs this worker holds as running in the database: started here, or
        done with the outcome not yet written."""
        return set(self.slots.jobs) | self.completer.unflushed_ids()

    # ------------------------------------------------------------ death

    async def declared_dead(self) -> None:
        """The sweeper presumed this worker dead and gave its jobs away: stop working
        under that id, drop what it was running, and start again under a new one."""
        log.error(
            "worker %s was declared dead (no heartbeat for too long); abandoning %d jobs and re-registering",
            self.id,
            len(self.slots.jobs),
            extra={"event": "worker_declared_dead", "worker_id": str(self.id)},
        )
        if self.stopping:
            return
        for running in list(self.slots.jobs.values()):
            self._interrupt(running, "dead")
        self.id = uuid.uuid4()
        await self._register()

    # ------------------------------------------------------------- shutdown

    async def _shutdown(self, heartbeat: asyncio.Task[None]) -> None:
        """Give running jobs their grace, return the rest without consuming their attempts,
        write the last outcomes and say the worker stopped: all of it, and closing the
        connections after (:meth:`_close`), within ``shutdown_timeout`` plus
        ``SHUTDOWN_SLACK`` seconds whatever the database does."""
        deadline = time.monotonic() + (0 if self._forced else self.shutdown_timeout)
        busy = self._busy()
        if busy and not self._forced:
            log.info("shutting down: waiting up to %.0f s for %d running jobs", self.shutdown_timeout, len(busy))
            await self._wait_for(busy, deadline)
        self._hard_deadline = hard = max(deadline, time.monotonic()) + SHUTDOWN_SLACK
        left = [r for r in self.slots.jobs.values() if not r.settled]
        if left:
            log.warning("returning %d unfinished jobs to the queue", len(left))
            for running in left:
                self._interrupt(running, "shutdown")
            # Cooperative handlers stop at once; the others are given up on after STOP_WAIT.
            await self._wait_for(self._busy(), time.monotonic() + STOP_WAIT + 0.5, forced_too=True)
        self.completer.stop()
        drained = await self.completer.drain(timeout=max(0.3, hard - 2.0 - time.monotonic()))
        if not drained:
            log.error(
                "could not write %d outcomes before exiting; those jobs stay running until the sweeper rescues them",
                self.completer.pending(),
            )
        # Heartbeats go on through the grace period (a long drain must not look
        # like a death) and end before the row says stopped: a beat after that
        # would find the row stopped and take it for a death sentence.
        self.heartbeat.stop()
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        try:
            async with asyncio.timeout(max(0.3, hard - 1.0 - time.monotonic())), self.connection(wait=0.5) as conn:
                # Released: nothing of this worker is left running in the database (every
                # job it held settled and written, no claim answer lost), so the sweeper
                # need not scan the jobs for its id (migration 0022).
                unsettled = any(not running.settled for running in self._held())
                released = drained and not unsettled and self.claim_lost_at is None
                await repo.stop_worker(conn, self.schema, self.id, released)
        except (*TRANSIENT, TimeoutError, Exception) as exc:
            log.warning("could not mark the worker stopped: %s", first_line(exc))

    def _busy(self) -> list[asyncio.Future[Any]]:
        """The tasks of the jobs (and batches) not settled yet."""
        tasks = {r.task for r in self.slots.jobs.values() if r.task is not None and not r.settled}
        return [task for task in tasks if not task.done()]

    async def _wait_for(self, tasks: list[asyncio.Future[Any]], deadline: float, forced_too: bool = False) -> None:
        pending = set(tasks)
        while pending and (forced_too or not self._forced):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            _, pending = await asyncio.wait(pending, timeout=min(remaining, 0.2))
            pending = {task for task in pending if any(r.task is task and not r.settled for r in self._held())}

    def _held(self) -> list[RunningJob]:
        return list(self.slots.jobs.values())
