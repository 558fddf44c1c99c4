"""The fast lane: ``@app.task(durable=False)`` jobs, run in this process and never written down.

For short work whose loss costs nothing (warming a cache, a preview thumbnail): an
enqueue is a function call, not a transaction. The jobs of such a task wait in this
process's memory and run on a background thread's event loop, with the task's
``concurrency``, ``rate`` and ``batch_size``; a failed attempt is retried in memory
by the task's ``max_attempts`` and ``backoff``. They fire the same events as the
worker's jobs (``app.on``: ``job_started``, ``job_completed``, ``job_retrying``,
``job_failed``), so hooks, log lines and ``pgq worker --metrics-port`` count them.

**They are lost when the process ends**, crash or not: nothing of them is in the
database, no other process can run them, ``app.get_job`` does not know them. Their
ids are negative, so that they never name a row. ``app.fast_lane.drain()`` waits
until the lane is empty (a clean shutdown), ``app.close()`` stops it, dropping what waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgq.errors import ConfigurationError, PermanentError
from pgq.events import Event
from pgq.flow import parse_count, parse_rate
from pgq.job import Job

if TYPE_CHECKING:
    from pgq.app import App
    from pgq.enqueueing import PreparedJob
    from pgq.task import Task

log = logging.getLogger("pgq.fast_lane")

#: Slots of a fast-lane task that sets no ``concurrency``.
DEFAULT_CONCURRENCY = 10


@dataclass(frozen=True)
class LaneOptions:
    """How a ``durable=False`` task's jobs run: at most ``concurrency`` at once, and at most
    ``rate`` = (count, seconds) starts per period, spaced evenly."""

    concurrency: int = DEFAULT_CONCURRENCY
    rate: tuple[int, float] | None = None


class FastLane:
    """The in-process jobs of one app's ``durable=False`` tasks (``app.fast_lane``)."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._ids = itertools.count(1)
        self._guard = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lanes: dict[str, _Lane] = {}
        #: Jobs enqueued and not yet ended (waiting, delayed, running, or waiting to retry).
        self._live = 0
        #: What happened to the lane's jobs since the app started: enqueued, started, completed,
        #: retried, failed, dropped (waiting when the lane stopped).
        self.counts: Counter[str] = Counter()
        #: Async hooks running (a task nobody references may be collected mid-run).
        self._hook_tasks: set[asyncio.Future[Any]] = set()

    def submit(self, task: Task[Any, Any], params: PreparedJob, delay: float | None) -> int:
        """Queue one job of ``task`` (``params``: its checked insert parameters, as a
        durable job's); returns its id, a negative number."""
        now = datetime.now(UTC)
        job = Job(
            id=-next(self._ids),
            queue=params["queue"],
            task=task.name,
            args=json.loads(params["args"]),  # what a worker would hand over: the args after JSON
            priority=params["priority"],
            status="pending",
            attempts=0,
            max_attempts=params["max_attempts"],
            run_at=now + timedelta(seconds=delay or 0),
            created_at=now,
        )
        with self._guard:  # one lane per task, however many threads enqueue at once
            loop = self._running_loop()
            lane = self._lane(task)
            self._live += 1
            self.counts["enqueued"] += 1
        loop.call_soon_threadsafe(lane.put, job, delay or 0.0)
        return job.id

    def stats(self) -> dict[str, int]:
        """The counts, and ``live``: jobs enqueued and not yet ended."""
        with self._guard:
            return {**self.counts, "live": self._live}

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every job enqueued so far has ended (completed, or failed for good);
        False if ``timeout`` seconds passed first."""
        with self._guard:
            return self._guard.wait_for(lambda: self._live == 0, timeout)

    def close(self) -> None:
        """Stop the lane: running handlers are cancelled, waiting jobs are dropped (counted
        as ``dropped``). The next enqueue starts it again."""
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop, self._thread = None, None
            lanes, self._lanes = self._lanes, {}
            dropped = self._live
            self._live = 0
            if dropped:
                self.counts["dropped"] += dropped
            self._guard.notify_all()
        if dropped:
            log.warning("fast lane stopped: %d jobs that had not ended were dropped", dropped)
        if loop is None or thread is None:
            return

        async def shut() -> None:
            await asyncio.gather(*(lane.stop() for lane in lanes.values()), return_exceptions=True)

        with contextlib.suppress(Exception):  # a handler that ignores its cancellation: stop anyway
            asyncio.run_coroutine_threadsafe(shut(), loop).result(5.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)
        if not thread.is_alive():
            loop.close()

    # ---------------------------------------------------------------- inside

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="pgq-fast-lane", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def _lane(self, task: Task[Any, Any]) -> _Lane:
        lane = self._lanes.get(task.name)
        if lane is None:
            lane = self._lanes[task.name] = _Lane(self, task)
        return lane

    def _ended(self, outcome: str) -> None:
        with self._guard:
            self.counts[outcome] += 1
            self._live = max(self._live - 1, 0)
            if self._live == 0:
                self._guard.notify_all()

    def _count(self, what: str, n: int = 1) -> None:
        with self._guard:
            self.counts[what] += n

    def _emit(self, event: Event) -> None:
        for hook in self._app.hooks.get(event.name, ()):
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    running = asyncio.ensure_future(result)
                    self._hook_tasks.add(running)
                    running.add_done_callback(self._hook_tasks.discard)
            except Exception:
                log.exception("hook %r for %s raised; ignored", hook, event.name)


class _Lane:
    """One task's jobs, on the lane's event loop: its queue, slots and pace."""

    def __init__(self, owner: FastLane, task: Task[Any, Any]) -> None:
        self.owner = owner
        self.task = task
        self.options: LaneOptions = task.lane or LaneOptions()
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.consumers: list[asyncio.Task[None]] = []
        self.next_start = 0.0
        self.timers: set[asyncio.TimerHandle] = set()
        #: One consumer at a time fills a batch: batches are full when the jobs are there.
        self.collecting = asyncio.Lock()

    def put(self, job: Job, delay: float) -> None:
        if not self.consumers:
            self.consumers = [
                asyncio.get_running_loop().create_task(self._consume()) for _ in range(self.options.concurrency)
            ]
        if delay > 0:
            self._later(delay, job)
        else:
            self.queue.put_nowait(job)

    async def stop(self) -> None:
        for timer in self.timers:
            timer.cancel()
        for consumer in self.consumers:
            consumer.cancel()
        await asyncio.gather(*self.consumers, return_exceptions=True)

    def _later(self, delay: float, job: Job) -> None:
        def due() -> None:
            self.timers.discard(timer)
            self.queue.put_nowait(job)

        timer = asyncio.get_running_loop().call_later(delay, due)
        self.timers.add(timer)

    async def _consume(self) -> None:
        size = self.task.batch_size
        while True:
            if size:
                async with self.collecting:
                    jobs = await self._collect(size)
            else:
                jobs = [await self.queue.get()]
            await self._pace(len(jobs))
            await self._run(jobs)

    async def _collect(self, size: int) -> list[Job]:
        """A batch: the first job, then more until it is full or ``batch_wait`` has passed."""
        jobs = [await self.queue.get()]
        deadline = time.monotonic() + (self.task.batch_wait or 0.0)
        while len(jobs) < size:
            if not self.queue.empty():
                jobs.append(self.queue.get_nowait())
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return jobs

    async def _pace(self, starts: int) -> None:
        """At most ``rate`` starts per period, spaced evenly (as a queue's rate in the claim)."""
        if self.options.rate is None:
            return
        count, seconds = self.options.rate
        now = time.monotonic()
        start = max(self.next_start, now)
        self.next_start = start + starts * seconds / count
        if start > now:
            await asyncio.sleep(start - now)

    async def _run(self, jobs: list[Job]) -> None:
        owner, task = self.owner, self.task
        started_at = datetime.now(UTC)
        running = [replace(job, status="running", attempts=job.attempts + 1, started_at=started_at) for job in jobs]
        owner._count("started", len(running))
        for job in running:
            owner._emit(Event("job_started", job))
        began = time.monotonic()
        errors: list[BaseException | None]
        try:
            results = await self._call(running)
            if task.batch_size:
                if not isinstance(results, list) or len(results) != len(running):
                    raise TypeError(f"batch handler {task.name} must return a list of {len(running)} results")
                errors = [r if isinstance(r, BaseException) else None for r in results]
                values = [None if isinstance(r, BaseException) else r for r in results]
            else:
                errors, values = [None], [results]
        except Exception as exc:
            errors, values = [exc] * len(running), [None] * len(running)
        duration = time.monotonic() - began
        for job, error, value in zip(running, errors, values, strict=True):
            if error is None:
                owner._emit(Event("job_completed", replace(job, status="completed"), result=value, duration=duration))
                owner._ended("completed")
                continue
            entry = {"type": type(error).__name__, "message": str(error), "attempt": job.attempts}
            if job.attempts < job.max_attempts and not isinstance(error, PermanentError):
                from pgq.worker.backoff import retry_delay  # the worker's rule, without importing it at start

                wait = retry_delay(job.attempts, task.backoff)
                waiting = replace(job, status="pending", errors=[*job.errors, entry])
                owner._emit(Event("job_retrying", waiting, error=entry, retry_in=wait, duration=duration))
                owner._count("retried")
                self._later(wait, waiting)
            else:
                log.warning("fast-lane job %s %s failed for good: %s", job.id, task.name, error)
                owner._emit(Event("job_failed", replace(job, status="failed"), error=entry, duration=duration))
                owner._ended("failed")

    async def _call(self, jobs: list[Job]) -> Any:
        task = self.task
        fn = task.fn
        if task.batch_size:
            call: Any = (lambda: fn(jobs)) if not inspect.iscoroutinefunction(fn) else fn(jobs)
        else:
            args = jobs[0].args
            call = (lambda: fn(**args)) if not inspect.iscoroutinefunction(fn) else fn(**args)
        work = call if inspect.isawaitable(call) else asyncio.to_thread(call)
        timeout = task.timeout.total_seconds() if isinstance(task.timeout, timedelta) else task.timeout
        if timeout:
            return await asyncio.wait_for(work, timeout)
        return await work


def check_options(
    name: str,
    *,
    durable: bool,
    concurrency: Any,
    rate: Any,
    pass_context: bool,
    transactional: bool,
    encrypt: bool,
) -> LaneOptions | None:
    """A fast-lane task's options, or :class:`ConfigurationError` saying what cannot be."""
    if durable:
        if concurrency is not None or rate is not None:
            raise ConfigurationError(
                f"task {name!r}: concurrency= and rate= are for durable=False tasks; a durable task's queue "
                "takes its limits from app.set_queue (see docs/flow-control.md)"
            )
        return None
    for flag, given, why in (
        ("pass_context", pass_context, "the context is a stored job's"),
        ("transactional", transactional, "its job is in no transaction"),
        ("encrypt", encrypt, "its args are never stored"),
    ):
        if given:
            raise ConfigurationError(f"task {name!r}: durable=False cannot take {flag}=True: {why}")
    count = DEFAULT_CONCURRENCY if concurrency is None else parse_count(concurrency, "concurrency")
    assert count is not None
    return LaneOptions(concurrency=count, rate=parse_rate(rate, "rate"))
