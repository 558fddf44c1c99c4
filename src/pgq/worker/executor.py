"""Running one job: find its handler, call it, and classify what happened.

A worker gives each job one asyncio task (:meth:`Executor.start`) that calls
the handler and hands the outcome to ``on_outcome``. Everything that stops a
job from outside (its timeout, a cancellation, the shutdown, the sweeper
declaring this worker dead) goes through :meth:`Executor.interrupt`: it cancels
that task, and a handler that swallows the cancellation is left running
detached after ``STOP_WAIT`` seconds, its job settled without it. Each job is
settled exactly once, whichever comes first.

The first version ran every async handler in a second task under
``asyncio.shield`` and wrapped each call in ``asyncio.timeout``: three tasks,
a shield and a timer per job, about a third of the worker's Python time on
no-op jobs. Here the common job (no timeout, no context) costs one task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import functools
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgq.context import JobContext
from pgq.db.session import Unreadable
from pgq.encryption import DecryptionError, is_envelope, open_envelope, seal
from pgq.errors import ConfigurationError, InvalidJob, PermanentError, Retry, Snooze
from pgq.job import Job
from pgq.task import Task
from pgq.worker import isolation
from pgq.worker.backoff import MAX_DELAY, retry_delay
from pgq.worker.outcome import Outcome

if TYPE_CHECKING:
    from pgq.telemetry import Telemetry
    from pgq.worker.batch import Batch
    from pgq.worker.transactional import Transactions

log = logging.getLogger("pgq.worker")

#: Longest traceback kept per failed attempt.
MAX_TRACEBACK = 16_000
MAX_MESSAGE = 2_000
#: Seconds a handler gets to stop once cancelled (at a timeout, a cancellation or shutdown)
#: before it is left running detached.
STOP_WAIT = 1.0

#: Why a job was stopped from outside its handler.
STOP_REASONS = ("timeout", "cancel", "shutdown", "dead")


@dataclass(eq=False, slots=True)
class RunningJob:
    """A job this worker holds, from claim to outcome."""

    job: Job
    #: The handler's context: only for tasks that take one (``pass_context``).
    ctx: JobContext | None = None
    #: When it was claimed (monotonic): a batch's timeout counts from there.
    started: float = field(default_factory=time.monotonic)
    #: The task that runs it (a batch's jobs share their batch's task).
    task: asyncio.Task[Any] | None = None
    #: Why it was stopped from outside: one of STOP_REASONS, or None.
    stop_reason: str | None = None
    #: The progress last written, to write only changes.
    written_progress: tuple[float | None, str | None] = (None, None)
    #: The handler's thread (sync) or task (async of a batch), which may outlive the job's outcome.
    thread: asyncio.Future[Any] | concurrent.futures.Future[Any] | None = None
    #: The batch this job belongs to (a batch task's job), which runs the handler for it.
    batch: Batch | None = None
    #: True once its task took its first step: before that, a stop needs no cancellation.
    entered: bool = False
    #: True once its outcome was handed on (or found to be none): it happens once.
    settled: bool = False
    #: The timer of its timeout, if it has one.
    timer: asyncio.TimerHandle | None = None
    #: The handler's arguments when they are not ``job.args`` as stored (model parameters).
    args: dict[str, Any] | None = None
    #: What came of it, once settled (the attempt's span reads it).
    outcome: Outcome | None = None


OnOutcome = Callable[[RunningJob, Outcome | None], None]


@dataclass(eq=False)
class Executor:
    """Calls handlers: async ones on the event loop, plain ones in a thread pool."""

    tasks: dict[str, Task[Any, Any]]
    threads: int
    max_result_bytes: int
    #: Called once per job with its outcome (None: nothing this worker may write).
    on_outcome: OnOutcome | None = None
    #: Awaited before the handler of a job with parents whose task takes a context.
    before: Callable[[RunningJob], Awaitable[None]] | None = None
    #: Writes the lines a handler logged through ctx.log (pgq.context.JobLog) before its outcome.
    keep_log: Callable[[RunningJob], Awaitable[None]] | None = None
    #: OpenTelemetry (pgq.telemetry): a ``pgq.run`` span around each job's attempt.
    telemetry: Telemetry | None = None
    #: Runs transactional handlers (pgq.worker.transactional); without it they cannot run.
    transactions: Transactions | None = None
    #: Writes the progress a handler set after the last periodic write, before its outcome:
    #: the job keeps the handler's last word ("done"), not the step before it.
    keep_progress: Callable[[RunningJob], Awaitable[None]] | None = None
    _pool: concurrent.futures.ThreadPoolExecutor = field(init=False)
    _abandoned: set[asyncio.Future[Any] | concurrent.futures.Future[Any]] = field(default_factory=set, init=False)
    _waiters: dict[int, asyncio.Future[Outcome | None]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._pool = self._new_pool()

    def _new_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="pgq-job")

    def abandon_thread(self) -> None:
        """A sync handler outlived its job: its thread cannot be killed, so new
        jobs get a fresh pool and the old one ends when its threads do."""
        old, self._pool = self._pool, self._new_pool()
        old.shutdown(wait=False)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def stuck_threads(self) -> int:
        """Handlers (threads or tasks) still running after their job's outcome (timed out or stopped)."""
        self._abandoned = {future for future in self._abandoned if not future.done()}
        return len(self._abandoned)

    # ------------------------------------------------------------ one job

    def start(self, running: RunningJob) -> None:
        """Run ``running`` in a task of its own; its outcome goes to ``on_outcome``."""
        telemetry = self.telemetry
        if telemetry is None or not telemetry.tracing():
            body = self._body(running)
        else:
            body = self._traced(running, telemetry)
        running.task = asyncio.get_running_loop().create_task(body)

    async def run(self, running: RunningJob) -> Outcome | None:
        """Run one job and return its outcome (``pgq.testing``'s way in)."""
        waiter: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._waiters[id(running)] = waiter
        self.start(running)
        try:
            return await waiter
        finally:
            self._waiters.pop(id(running), None)

    def interrupt(self, running: RunningJob, reason: str) -> None:
        """Stop a job from outside its handler. The first reason stands, except that
        "dead" (this worker lost the job) overrides any: then nothing is written."""
        if running.settled or (running.stop_reason is not None and reason != "dead"):
            return
        running.stop_reason = reason
        if running.ctx is not None:
            running.ctx.cancelled = True  # a sync handler can poll this and stop
        task = running.task
        if running.batch is None and running.entered and task is not None and not task.done():
            task.cancel()
            asyncio.get_running_loop().call_later(STOP_WAIT, self._abandon, running)

    def _abandon(self, running: RunningJob) -> None:
        """A handler still running ``STOP_WAIT`` seconds after its cancellation: settle its
        job without it, and leave it to run detached."""
        task = running.task
        if running.settled or task is None or task.done():
            return
        log.warning("%s: its handler ignores cancellation; left running detached", _label([running]))
        self._abandoned.add(task)
        task.add_done_callback(_consume)
        self._settle(running, self._stopped(running))

    def _settle(self, running: RunningJob, outcome: Outcome | None) -> None:
        if running.settled:
            return
        running.settled = True
        running.outcome = outcome
        if running.timer is not None:
            running.timer.cancel()
        waiter = self._waiters.pop(id(running), None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(outcome)
        elif self.on_outcome is not None:
            self.on_outcome(running, outcome)

    async def _traced(self, running: RunningJob, telemetry: Telemetry) -> None:
        """:meth:`_body` inside the attempt's span, current for the handler (and its thread)."""
        span, token = telemetry.start_run(running.job)
        try:
            await self._body(running)
        finally:
            telemetry.end_run(span, token, running.outcome)

    async def _body(self, running: RunningJob) -> None:
        """The job's task: call the handler and settle the job with what came of it.
        The common job (a registered async or sync task, args that fit, no context)
        goes straight through; everything else takes :meth:`_prepare` first."""
        running.entered = True
        job = running.job
        task = self.tasks.get(job.task)
        outcome: Outcome | None = None
        try:
            if (
                running.stop_reason is not None
                or task is None
                or task.batch_size is not None
                or task.pass_context
                or task.encrypt
                or task.models is not None
                or job.depends_on
                or type(job.args) is not dict
                or not task.fits(job.args)
            ):
                outcome = await self._prepare(running, task)
                if outcome is not None or running.settled:
                    self._settle(running, outcome)
                    return
                assert task is not None
                job = running.job  # with its args decrypted, for an encrypted task
            timeout = job.timeout.total_seconds() if job.timeout else task.timeout
            if timeout is not None:
                running.timer = asyncio.get_running_loop().call_later(timeout, self.interrupt, running, "timeout")
            start = time.perf_counter()
            transacted = False
            try:
                if task.transactional:
                    # Not isolated in a child process even when suspect: the child could not
                    # share the transaction. Its attempts still count, so a crashing job ends.
                    transacted = True
                    outcome = await self._transacted(running, task)
                elif job.errors and task.batch_size is None and isolation.suspect(job, task):
                    result = await isolation.run_isolated(task, job, running.ctx)
                else:
                    args = job.args if running.args is None else running.args
                    if not task.is_async:
                        result = await self._in_thread(running, task, args)
                    elif task.pass_context:
                        result = await task.fn(running.ctx, **args)
                    else:
                        result = await task.fn(**args)
            except asyncio.CancelledError:
                outcome = self._cancelled(running, task)
            except BaseException as exc:  # a handler's SystemExit is a failed attempt, not our exit
                outcome = self._raised(job, task, exc)
            else:
                if not transacted:
                    # A handler that returns before it notices a cancellation has run: it completed.
                    outcome = self._completed(job, result)
            if outcome is not None:
                outcome.duration = time.perf_counter() - start
            ctx = running.ctx
            if ctx is not None:
                if self.keep_progress is not None and (ctx.progress, ctx.progress_message) != running.written_progress:
                    await self.keep_progress(running)
                if ctx.log_lines.lines and self.keep_log is not None:
                    await self.keep_log(running)
        except asyncio.CancelledError:
            # Cancelled from outside for a reason of the caller's (the loop closing):
            # the job goes back to the queue, and the cancellation goes on.
            self._settle(running, self._stopped(running))
            raise
        except BaseException as exc:  # the job must be settled whatever happened
            log.exception("job %s: the worker failed around its handler", job.id)
            outcome = failure(job, type(exc).__qualname__, f"worker error: {exc}", permanent=False, exc=exc)
        self._settle(running, outcome)

    async def _prepare(self, running: RunningJob, task: Task[Any, Any] | None) -> Outcome | None:
        """Before the handler of a job off the common path: the outcome of a job that is
        not to be called (stopped, unknown task, bad args; a batch task's job run alone),
        or None once its context and parents are ready."""
        job = running.job
        if running.stop_reason is not None:
            return self._stopped(running, called=False)  # stopped before its first step
        if task is None:
            known = ", ".join(sorted(self.tasks)) or "none"
            return failure(
                job,
                "UnknownTask",
                f"unknown task {job.task!r}: this worker knows {known}; deploy code that registers it",
                permanent=True,
            )
        if task.batch_size is not None:
            # Outside a worker (pgq.testing's drain and run_job), a batch task's job is a batch of one.
            return (await self.run_batch([running], task))[0]
        if isinstance(job.args, Unreadable):
            reason = f"args cannot be read as JSON by Python ({job.args.reason})"
            return failure(job, "InvalidArgs", reason, permanent=True)
        if type(job.args) is not dict:
            return failure(
                job, "InvalidArgs", f"args must be a JSON object, got {type(job.args).__name__}", permanent=True
            )
        if task.encrypt and is_envelope(job.args):
            try:
                plain = open_envelope(job.args, task.app.encryption_keys)
            except (DecryptionError, ConfigurationError) as exc:
                return failure(job, "DecryptionError", f"cannot decrypt the job's args: {exc}", permanent=True)
            if type(plain) is not dict:
                return failure(job, "InvalidArgs", "the decrypted args are not a JSON object", permanent=True)
            job = running.job = dataclasses.replace(job, args=plain)
            if running.ctx is not None:
                running.ctx.job = job
        try:
            task.check_args(job.args)
            if task.models is not None:
                running.args = task.handler_args(job.args)
        except InvalidJob as exc:
            return failure(job, "InvalidArgs", str(exc), permanent=True)
        if task.pass_context and running.ctx is None:
            running.ctx = JobContext(job)
        if job.depends_on and running.ctx is not None and self.before is not None:
            await self.before(running)
            if running.stop_reason is not None:
                return self._stopped(running, called=False)
        return None

    def _cancelled(self, running: RunningJob, task: Task[Any, Any]) -> Outcome | None:
        """The handler's await raised CancelledError: our interrupt, or the handler's own."""
        current = asyncio.current_task()
        if running.stop_reason is None:
            if current is not None and current.cancelling():
                raise asyncio.CancelledError  # cancelled from outside for a reason of the caller's
            # The handler raised CancelledError itself (say, an inner task was cancelled).
            return self._failed_attempt(running.job, task, "CancelledError", "the handler raised CancelledError", None)
        if current is not None and current.cancelling():
            current.uncancel()  # our own cancellation, handled here
        return self._stopped(running)

    def _stopped(self, running: RunningJob, *, called: bool = True) -> Outcome | None:
        """What to write for a job stopped from outside its handler (``called``: after
        the handler was called)."""
        job = running.job
        if running.stop_reason == "timeout":
            task = self.tasks.get(job.task)
            timeout = job.timeout.total_seconds() if job.timeout else (task.timeout if task else None)
            message = f"attempt timed out after {timeout or 0:g} s"
            if task is None:
                return failure(job, "Timeout", message, permanent=False)
            return self._failed_attempt(job, task, "Timeout", message, None)
        return stopped_outcome(running, called=called)

    async def _transacted(self, running: RunningJob, task: Task[Any, Any]) -> Outcome | None:
        """A transactional handler's run: its outcome, already written with its writes
        (None: refused by the fence, nothing written)."""
        if self.transactions is None:
            raise RuntimeError(
                f"task {task.name!r} is transactional, and this runner has no connections for its transactions"
            )
        job = running.job
        args = job.args if running.args is None else running.args
        completion = functools.partial(self._completed, job)
        return await self.transactions.run(running, task, args, completion, self._call_in_thread)

    def _completed(self, job: Job, result: Any) -> Outcome:
        """The outcome of a handler that returned ``result``."""
        return Outcome(job, "completed", None if result is None else self._result_json(job, result))

    async def _in_thread(self, running: RunningJob, task: Task[Any, Any], args: dict[str, Any]) -> Any:
        """A plain handler in the thread pool."""
        if task.pass_context:
            return await self._call_in_thread(running, functools.partial(task.fn, running.ctx, **args))
        return await self._call_in_thread(running, functools.partial(task.fn, **args))

    async def _call_in_thread(self, running: RunningJob, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` (a plain handler's run) in the thread pool. A thread cannot be
        stopped: on a stop the job is settled at once, ``ctx.cancelled`` asks the thread
        to end, and a thread still running is counted in :meth:`stuck_threads`."""
        context = contextvars.copy_context()
        thread = self._pool.submit(context.run, fn)
        running.thread = thread
        try:
            return await asyncio.wrap_future(thread)
        except asyncio.CancelledError:
            if not thread.done():
                self.abandon_thread()
                self._abandoned.add(thread)
                thread.add_done_callback(_consume_thread)
            raise

    # ------------------------------------------------------------ batches

    def _raised(self, job: Job, task: Task[Any, Any], exc: BaseException) -> Outcome:
        """The outcome of an attempt that ended in ``exc`` (raised, or returned for one job of a batch)."""
        if isinstance(exc, isolation.ChildRaised):
            return self._raised_in_child(job, task, exc)
        if isinstance(exc, isolation.Crashed):
            times = job.crashes + 1
            return self._failed_attempt(job, task, "Crashed", f"crashed its worker {times} times: {exc}", None)
        if isinstance(exc, PermanentError):
            return failure(job, type(exc).__qualname__, str(exc), permanent=True, exc=exc)
        if isinstance(exc, Snooze):
            return self._snoozed(job, task, exc.delay, str(exc), exc)
        if isinstance(exc, Retry):
            if job.attempts >= job.max_attempts:
                return failure(job, "Retry", f"{exc} (out of attempts)", permanent=True, exc=exc)
            delay = min(exc.delay, MAX_DELAY)
            return Outcome(job, "retry", error=error_entry(job, "Retry", str(exc), exc), delay=delay)
        return self._failed_attempt(job, task, type(exc).__qualname__, str(exc), exc)

    def _snoozed(
        self, job: Job, task: Task[Any, Any], delay: float, message: str, exc: BaseException | None
    ) -> Outcome:
        """Back to pending after ``delay`` with the attempt given back, or failed for good
        past the task's ``max_snoozes``."""
        limit = task.max_snoozes
        if limit is not None and job.snoozes >= limit:
            return failure(
                job,
                "Snooze",
                f"snoozed {job.snoozes} times, the most its task allows (max_snoozes={limit}); this snooze "
                f"({message}) fails it: raise pgq.Retry to count attempts instead, or set "
                "@app.task(max_snoozes=...) higher (None: no limit)",
                permanent=True,
                exc=exc,
            )
        return Outcome(job, "snooze", delay=min(delay, MAX_DELAY))

    def _raised_in_child(self, job: Job, task: Task[Any, Any], exc: isolation.ChildRaised) -> Outcome:
        """What :meth:`_raised` makes of the same exception raised in the worker."""
        if exc.permanent:
            outcome = failure(job, exc.kind, exc.message, permanent=True)
        elif exc.snooze_delay is not None:
            outcome = self._snoozed(job, task, exc.snooze_delay, exc.message, None)
            if outcome.error is None:
                return outcome
        elif exc.retry_delay is not None and job.attempts < job.max_attempts:
            delay = min(exc.retry_delay, MAX_DELAY)
            outcome = Outcome(job, "retry", error=error_entry(job, "Retry", exc.message), delay=delay)
        elif exc.retry_delay is not None:
            outcome = failure(job, "Retry", f"{exc.message} (out of attempts)", permanent=True)
        else:
            outcome = self._failed_attempt(job, task, exc.kind, exc.message, None)
        assert outcome.error is not None
        outcome.error["traceback"] = exc.trace
        return outcome

    async def run_batch(self, members: Sequence[RunningJob], task: Task[Any, Any]) -> list[Outcome | None]:
        """Call a batch handler once for ``members`` (in that order); one outcome per
        member, None where there is nothing this worker may write."""
        start = time.perf_counter()
        outcomes = await self._run_batch(members, task)
        duration = time.perf_counter() - start
        for outcome in outcomes:
            if outcome is not None:
                outcome.duration = duration
        return outcomes

    async def _run_batch(self, members: Sequence[RunningJob], task: Task[Any, Any]) -> list[Outcome | None]:
        jobs = [running.job for running in members]
        remaining, configured = _batch_deadline(members, task)
        timed_out = f"attempt timed out after {configured:g} s (a batch's timeout counts from its first job's claim)"
        if remaining is not None and remaining <= 0:
            # Out of time before the call (the wait used it all): calling would only start work nobody waits for.
            return [self._failed_attempt(j, task, "Timeout", timed_out, None) for j in jobs]
        deadline = asyncio.timeout(remaining)
        try:
            async with deadline:
                if task.is_async:
                    returned = await self._detachable_async(members, functools.partial(task.fn, jobs))
                else:
                    returned = await self._detachable_sync(members, functools.partial(task.fn, jobs))
        except asyncio.CancelledError:
            if all(running.stop_reason is None for running in members):
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                return [
                    self._failed_attempt(j, task, "CancelledError", "the handler raised CancelledError", None)
                    for j in jobs
                ]
            for running in members:
                if running.ctx is not None:
                    running.ctx.cancelled = True
            return [stopped_outcome(running, called=True) for running in members]
        except TimeoutError as exc:
            if deadline.expired():
                for running in members:
                    if running.ctx is not None:
                        running.ctx.cancelled = True
                return [self._failed_attempt(j, task, "Timeout", timed_out, None) for j in jobs]
            return [self._failed_attempt(j, task, "TimeoutError", str(exc) or "TimeoutError", exc) for j in jobs]
        except BaseException as exc:  # the whole call failed: so did every job's attempt
            return [self._raised(j, task, exc) for j in jobs]
        return list(self._batch_outcomes(jobs, task, returned))

    def _batch_outcomes(self, jobs: list[Job], task: Task[Any, Any], returned: Any) -> list[Outcome]:
        wanted = (
            "a batch handler returns a list with one item per job, in the order given "
            "(a result or None: completed; an exception instance: that job's attempt failed)"
        )
        problem = None
        if not isinstance(returned, list | tuple):
            got = "None (no return statement?)" if returned is None else type(returned).__name__
            problem = f"{task.name} got {len(jobs)} jobs and returned {got}; {wanted}"
        elif len(returned) != len(jobs):
            problem = f"{task.name} got {len(jobs)} jobs and returned a list of {len(returned)}; {wanted}"
        if problem is not None:
            log.error("batch of %d jobs (%s): %s", len(jobs), task.name, problem)
            return [self._failed_attempt(j, task, "InvalidBatchResult", problem, None) for j in jobs]
        return [
            self._raised(job, task, value)
            if isinstance(value, BaseException)
            else Outcome(job, "completed", result_json=self._result_json(job, value))
            for job, value in zip(jobs, returned, strict=True)
        ]

    async def _detachable_async(self, holders: Sequence[RunningJob], call: Callable[[], Awaitable[Any]]) -> Any:
        """A batch's async handler in a task of its own, so that one that swallows its
        cancellation cannot hold the batch's slot forever: after ``STOP_WAIT`` it is
        left to run detached. (A batch's jobs share one call, so the single-job
        path's interrupt, which cancels one job's task, does not fit them.)"""

        async def guarded() -> tuple[bool, Any]:
            try:
                return False, await call()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # raised in a task, SystemExit would stop the event loop
                return True, exc

        inner = asyncio.ensure_future(guarded())
        for running in holders:
            running.thread = inner
        try:
            failed, value = await asyncio.shield(inner)
        except asyncio.CancelledError:
            if not inner.done():
                inner.cancel()
                await asyncio.wait({inner}, timeout=STOP_WAIT)
                if not inner.done():
                    log.warning("%s: its handler ignores cancellation; left running detached", _label(holders))
                    self._abandoned.add(inner)
                    inner.add_done_callback(_consume)
            raise
        if failed:
            raise value
        return value

    async def _detachable_sync(self, holders: Sequence[RunningJob], call: Callable[[], Any]) -> Any:
        """A batch's plain handler in the thread pool; on a stop its thread is left to
        finish on its own (counted in :meth:`stuck_threads`)."""
        context = contextvars.copy_context()
        thread = self._pool.submit(context.run, call)
        for running in holders:
            running.thread = thread
        try:
            return await asyncio.shield(asyncio.wrap_future(thread))
        except (TimeoutError, asyncio.CancelledError):
            for running in holders:
                if running.ctx is not None:
                    running.ctx.cancelled = True
            if not thread.done():
                self.abandon_thread()
                self._abandoned.add(thread)
                thread.add_done_callback(_consume_thread)
            raise

    # ------------------------------------------------------------ outcomes

    def _failed_attempt(
        self, job: Job, task: Task[Any, Any], kind: str, message: str, exc: BaseException | None
    ) -> Outcome:
        if job.attempts >= job.max_attempts:
            return failure(job, kind, message, permanent=False, exc=exc)
        backoff = task.backoff if task.backoff is not None else job.backoff
        return Outcome(
            job, "retry", error=error_entry(job, kind, message, exc), delay=retry_delay(job.attempts, backoff)
        )

    def _result_json(self, job: Job, result: Any) -> str | None:
        if result is None:
            return None
        try:
            text = json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            log.warning("job %s (%s): result not stored, it is not JSON-serialisable: %s", job.id, job.task, exc)
            return None
        task = self.tasks.get(job.task)
        if task is not None and task.encrypt:
            try:
                text = seal(text.encode(), task.app.encryption_keys, task.name).decode()
            except ConfigurationError as exc:
                log.warning("job %s (%s): result not stored, it cannot be encrypted: %s", job.id, job.task, exc)
                return None
        if len(text.encode()) > self.max_result_bytes:
            log.warning(
                "job %s (%s): result not stored, %d bytes is over PGQ_MAX_PAYLOAD_BYTES (%d)",
                job.id,
                job.task,
                len(text.encode()),
                self.max_result_bytes,
            )
            return None
        if "\\u0000" in text:
            log.warning("job %s (%s): result not stored, it contains a NUL character", job.id, job.task)
            return None
        return text


def _label(holders: Sequence[RunningJob]) -> str:
    first = holders[0].job
    if len(holders) == 1 and first.task and holders[0].batch is None:
        return f"job {first.id} ({first.task})"
    return f"batch of {len(holders)} jobs ({first.task}, first job {first.id})"


def _batch_deadline(members: Sequence[RunningJob], task: Task[Any, Any]) -> tuple[float | None, float]:
    """Seconds left for a batch's handler, and the timeout that sets them: the tightest
    of its jobs' timeouts, each counted from the job's claim, as the sweeper counts it."""
    now = time.monotonic()
    remaining: float | None = None
    configured = 0.0
    for running in members:
        timeout = running.job.timeout.total_seconds() if running.job.timeout else task.timeout
        if timeout is None:
            continue
        left = timeout - (now - running.started)
        if remaining is None or left < remaining:
            remaining, configured = left, timeout
    return remaining, configured


def stopped_outcome(running: RunningJob, *, called: bool) -> Outcome | None:
    """What to write for a job stopped from outside its handler, other than at its timeout:
    nothing for a job this worker lost, cancelled for a cancellation, else back to the queue
    with its attempt given back (a shutdown), whether or not its handler still runs. A
    handler that was ``called`` leaves an uncharged ``Shutdown`` entry in ``errors``, so
    that its re-run shows, as an uncharged crash does (guarantee 3)."""
    job = running.job
    if running.stop_reason == "dead":
        return None
    if running.stop_reason == "cancel":
        return Outcome(job, "cancelled", error=error_entry(job, "Cancelled", "cancelled by request"))
    if not called:
        return Outcome(job, "return")
    entry = error_entry(job, "Shutdown", "stopped by its worker's shutdown; attempt given back")
    entry["charged"] = False
    return Outcome(job, "return", error=entry)


def error_entry(job: Job, kind: str, message: str, exc: BaseException | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"attempt": job.attempts, "type": kind, "message": message[:MAX_MESSAGE]}
    if exc is not None:
        text = "".join(traceback.format_exception(exc))
        entry["traceback"] = text[-MAX_TRACEBACK:]
    return entry


def failure(job: Job, kind: str, message: str, *, permanent: bool, exc: BaseException | None = None) -> Outcome:
    """The job ends ``failed``: out of attempts, or a failure retrying cannot fix."""
    entry = error_entry(job, kind, message, exc)
    if permanent:
        entry["permanent"] = True
    return Outcome(job, "failed", error=entry)


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned handler's result so that asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


def _consume_thread(future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
