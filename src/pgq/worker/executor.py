"""Running one job: find its handler, call it, and classify what happened."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgq.context import JobContext
from pgq.errors import InvalidJob, PermanentError, Retry
from pgq.job import Job
from pgq.task import Task
from pgq.worker.backoff import MAX_DELAY, retry_delay
from pgq.worker.outcome import Outcome

if TYPE_CHECKING:
    from pgq.worker.batch import Batch

log = logging.getLogger("pgq.worker")

#: Longest traceback kept per failed attempt.
MAX_TRACEBACK = 16_000
MAX_MESSAGE = 2_000
#: Seconds a handler gets to stop once cancelled (at a timeout, a cancellation or shutdown)
#: before it is left running detached.
STOP_WAIT = 1.0


@dataclass
class RunningJob:
    """A job this worker holds, from claim to outcome."""

    job: Job
    ctx: JobContext
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[Outcome | None] | None = None
    #: Why the worker cancelled it: "cancel" (asked by a user), "shutdown", or None.
    stop_reason: str | None = None
    #: The progress last written, to write only changes.
    written_progress: tuple[float | None, str | None] = (None, None)
    #: The handler's thread (sync) or task (async), which may outlive the job's outcome.
    thread: asyncio.Future[Any] | None = None
    #: The batch this job belongs to (a batch task's job), which runs the handler for it.
    batch: Batch | None = None

    @property
    def thread_running(self) -> bool:
        return self.thread is not None and not self.thread.done()


class Executor:
    """Calls handlers: async ones on the event loop, plain ones in a thread pool."""

    def __init__(self, tasks: dict[str, Task[Any, Any]], threads: int, max_result_bytes: int) -> None:
        self.tasks = tasks
        self.threads = threads
        self.max_result_bytes = max_result_bytes
        self._pool = self._new_pool()
        self._abandoned: set[asyncio.Future[Any]] = set()

    def _new_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="pgq-job")

    def abandon_thread(self) -> None:
        """A sync handler overran its timeout: its thread cannot be killed, so
        new jobs get a fresh pool and the old one ends when its threads do."""
        old, self._pool = self._pool, self._new_pool()
        old.shutdown(wait=False)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, running: RunningJob) -> Outcome | None:
        """The job's outcome; None when there is nothing this worker may write."""
        start = time.perf_counter()
        outcome = await self._run(running)
        if outcome is not None:
            outcome.duration = time.perf_counter() - start
        return outcome

    async def _run(self, running: RunningJob) -> Outcome | None:
        job, ctx = running.job, running.ctx
        task = self.tasks.get(job.task)
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
            return (await self._run_batch([running], task))[0]
        if not isinstance(job.args, dict):
            return failure(
                job, "InvalidArgs", f"args must be a JSON object, got {type(job.args).__name__}", permanent=True
            )
        try:
            task.check_args(job.args)
        except InvalidJob as exc:
            return failure(job, "InvalidArgs", str(exc), permanent=True)

        timeout = job.timeout.total_seconds() if job.timeout else task.timeout
        call_args: tuple[Any, ...] = (ctx,) if task.pass_context else ()
        # asyncio.timeout, not wait_for: the handler runs in this task (so what
        # it raises is caught here, SystemExit included), and expired() tells
        # our deadline apart from a TimeoutError the handler raised itself.
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                if task.is_async:
                    result = await self._run_async([running], functools.partial(task.fn, *call_args, **job.args))
                else:
                    result = await self._run_sync([running], functools.partial(task.fn, *call_args, **job.args))
        except asyncio.CancelledError:
            if running.stop_reason is None:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # cancelled from outside for a reason of the caller's: not ours to swallow
                # The handler raised CancelledError itself (say, an inner task was cancelled).
                return self._failed_attempt(job, task, "CancelledError", "the handler raised CancelledError", None)
            ctx.cancelled = True
            if running.stop_reason == "cancel":
                return Outcome(job, "cancelled", error=error_entry(job, "Cancelled", "cancelled by request"))
            if running.stop_reason == "shutdown":
                return await self._returned(running)
            raise
        except TimeoutError as exc:
            if deadline.expired():
                ctx.cancelled = True
                return self._failed_attempt(job, task, "Timeout", f"attempt timed out after {timeout:g} s", None)
            return self._failed_attempt(job, task, "TimeoutError", str(exc) or "TimeoutError", exc)
        except BaseException as exc:  # a handler's SystemExit is a failed attempt, not our exit
            return self._raised(job, task, exc)
        # A handler that returns before it notices a cancellation has run: it completed.
        return Outcome(job, "completed", result_json=self._result_json(job, result))

    def _raised(self, job: Job, task: Task[Any, Any], exc: BaseException) -> Outcome:
        """The outcome of an attempt that ended in ``exc`` (raised, or returned for one job of a batch)."""
        if isinstance(exc, PermanentError):
            return failure(job, type(exc).__qualname__, str(exc), permanent=True, exc=exc)
        if isinstance(exc, Retry):
            if job.attempts >= job.max_attempts:
                return failure(job, "Retry", f"{exc} (out of attempts)", permanent=True, exc=exc)
            delay = min(exc.delay, MAX_DELAY)
            return Outcome(job, "retry", error=error_entry(job, "Retry", str(exc), exc), delay=delay)
        return self._failed_attempt(job, task, type(exc).__qualname__, str(exc), exc)

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
                    returned = await self._run_async(members, functools.partial(task.fn, jobs))
                else:
                    returned = await self._run_sync(members, functools.partial(task.fn, jobs))
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
                running.ctx.cancelled = True
            left_running = await self._left_running(members)
            return [_stopped(running, left_running) for running in members]
        except TimeoutError as exc:
            if deadline.expired():
                for running in members:
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

    async def _returned(self, running: RunningJob) -> Outcome | None:
        """A job stopped by shutdown goes back to the queue, unless its sync handler
        keeps running: then another worker could run it at the same time, so it
        stays ``running`` under this (stopping) worker and the sweeper rescues it
        once the worker is gone."""
        if await self._left_running([running]):
            return None
        return Outcome(running.job, "return")

    async def _left_running(self, holders: Sequence[RunningJob]) -> bool:
        """True if the handler these jobs share still runs after ``STOP_WAIT`` more seconds."""
        thread = holders[0].thread
        if thread is None or thread.done():
            return False
        await asyncio.wait([thread], timeout=STOP_WAIT)
        if thread.done():
            return False
        log.warning("%s: its sync handler ignores ctx.cancelled; leaving it to the sweeper", _label(holders))
        return True

    def stuck_threads(self) -> int:
        """Handlers (threads or tasks) still running after their job's outcome (timed out or stopped)."""
        self._abandoned = {future for future in self._abandoned if not future.done()}
        return len(self._abandoned)

    async def _run_async(self, holders: Sequence[RunningJob], call: Callable[[], Awaitable[Any]]) -> Any:
        """An async handler in a task of its own, so that one that swallows its
        cancellation cannot hold its slot forever: after ``STOP_WAIT`` it is left
        to run detached, like a sync handler's thread. ``holders`` are the jobs
        the call runs for (one, or a batch)."""

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

    async def _run_sync(self, holders: Sequence[RunningJob], call: Callable[[], Any]) -> Any:
        """A plain handler in the thread pool. On timeout or cancellation the thread
        cannot be stopped: ctx.cancelled asks it to, and the thread is remembered
        in ``running.thread`` so that shutdown can tell whether it still runs."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        future = loop.run_in_executor(self._pool, functools.partial(context.run, call))
        for running in holders:
            running.thread = future
        try:
            return await asyncio.shield(future)
        except (TimeoutError, asyncio.CancelledError):
            for running in holders:
                running.ctx.cancelled = True  # a sync handler can poll this and stop
            if not future.done():
                self.abandon_thread()
                self._abandoned.add(future)
                future.add_done_callback(_consume)
            raise

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


def _stopped(running: RunningJob, left_running: bool) -> Outcome | None:
    """What to write for one job of a batch whose handler the worker stopped."""
    if running.stop_reason == "dead":
        return None
    if running.stop_reason == "cancel":
        return Outcome(running.job, "cancelled", error=error_entry(running.job, "Cancelled", "cancelled by request"))
    return None if left_running else Outcome(running.job, "return")


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
    """Retrieve an abandoned thread's result so that asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
