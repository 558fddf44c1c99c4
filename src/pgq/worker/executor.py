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
from dataclasses import dataclass, field
from typing import Any

from pgq.context import JobContext
from pgq.errors import InvalidJob, PermanentError, Retry
from pgq.job import Job
from pgq.task import Task
from pgq.worker.backoff import retry_delay
from pgq.worker.outcome import Outcome

log = logging.getLogger("pgq.worker")

#: Longest traceback kept per failed attempt.
MAX_TRACEBACK = 16_000
MAX_MESSAGE = 2_000


@dataclass
class RunningJob:
    """A job this worker holds, from claim to outcome."""

    job: Job
    ctx: JobContext
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[Outcome] | None = None
    #: Why the worker cancelled it: "cancel" (asked by a user), "shutdown", or None.
    stop_reason: str | None = None
    #: The progress last written, to write only changes.
    written_progress: tuple[float | None, str | None] = (None, None)


class Executor:
    """Calls handlers: async ones on the event loop, plain ones in a thread pool."""

    def __init__(self, tasks: dict[str, Task[Any, Any]], threads: int, max_result_bytes: int) -> None:
        self.tasks = tasks
        self.threads = threads
        self.max_result_bytes = max_result_bytes
        self._pool = self._new_pool()

    def _new_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="pgq-job")

    def abandon_thread(self) -> None:
        """A sync handler overran its timeout: its thread cannot be killed, so
        new jobs get a fresh pool and the old one ends when its threads do."""
        old, self._pool = self._pool, self._new_pool()
        old.shutdown(wait=False)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, running: RunningJob) -> Outcome:
        start = time.perf_counter()
        outcome = await self._run(running)
        outcome.duration = time.perf_counter() - start
        return outcome

    async def _run(self, running: RunningJob) -> Outcome:
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
        try:
            if task.is_async:
                result = await asyncio.wait_for(task.fn(*call_args, **job.args), timeout)
            else:
                loop = asyncio.get_running_loop()
                context = contextvars.copy_context()
                call = functools.partial(context.run, task.fn, *call_args, **job.args)
                future = loop.run_in_executor(self._pool, call)
                try:
                    result = await asyncio.wait_for(asyncio.shield(future), timeout)
                except (TimeoutError, asyncio.CancelledError):
                    ctx.cancelled = True  # a sync handler can poll this and stop
                    if not future.done():
                        self.abandon_thread()
                    raise
        except TimeoutError:
            ctx.cancelled = True
            return self._failed_attempt(job, task, "Timeout", f"attempt timed out after {timeout:g} s", None)
        except asyncio.CancelledError:
            if running.stop_reason == "cancel":
                return Outcome(job, "cancelled", error=error_entry(job, "Cancelled", "cancelled by request"))
            if running.stop_reason == "shutdown":
                return Outcome(job, "return")
            raise
        except PermanentError as exc:
            return failure(job, type(exc).__qualname__, str(exc), permanent=True, exc=exc)
        except Retry as exc:
            if job.attempts >= job.max_attempts:
                return failure(job, "Retry", f"{exc} (out of attempts)", permanent=True, exc=exc)
            return Outcome(job, "retry", error=error_entry(job, "Retry", str(exc), exc), delay=exc.delay)
        except (Exception, SystemExit) as exc:
            return self._failed_attempt(job, task, type(exc).__qualname__, str(exc), exc)
        # A handler that returns before it notices a cancellation has run: it completed.
        return Outcome(job, "completed", result_json=self._result_json(job, result))

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
