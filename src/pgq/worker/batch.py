"""Batch tasks in a worker: the jobs of one batch task and queue, run in one handler call.

A claimed job of a batch task joins the batch that is still collecting for
its task and queue, or opens one, which takes one slot for all its jobs. The
batch tops itself up (on each notification or a short poll) until it is full
or ``batch_wait`` has passed since its first job, then calls the handler once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgq.db import repo
from pgq.job import Job
from pgq.maintenance.service import TRANSIENT
from pgq.task import Task
from pgq.worker.executor import RunningJob, failure, stopped_outcome
from pgq.worker.outcome import Outcome

if TYPE_CHECKING:
    from pgq.worker.worker import Worker

log = logging.getLogger("pgq.worker")

#: Seconds between top-ups of a waiting batch when no notification comes.
BATCH_POLL = 0.25
#: A notification wakes a waiting batch after this many seconds, so that a burst
#: of enqueues costs one top-up claim, not one per statement.
TOP_UP_GAP = 0.02


@dataclass(eq=False)
class Batch:
    """Jobs of ``task`` in ``queue`` held by one worker, which together take one slot."""

    task: Task[Any, Any]
    queue: str
    members: list[RunningJob] = field(default_factory=list)
    #: When the first job arrived (monotonic): the wait is counted from there.
    opened: float = field(default_factory=time.monotonic)
    #: Set by a jobs notification, a stop, or a member's cancellation.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: The task that collects the batch and calls the handler.
    future: asyncio.Task[None] | None = None
    #: True once the handler is called: jobs arriving later start another batch.
    running: bool = False
    #: True once the handler call was cancelled (every member had to stop).
    interrupted: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.task.name, self.queue)

    @property
    def size(self) -> int:
        assert self.task.batch_size is not None
        return self.task.batch_size

    @property
    def full(self) -> bool:
        return len(self.members) >= self.size

    def claim_order(self) -> list[RunningJob]:
        """The members in the order a claim takes jobs: priority, then run_at, then id."""
        return sorted(self.members, key=lambda r: (-r.job.priority, r.job.run_at, r.job.id))


class Batches:
    """The batches one worker holds, and the one still collecting per (task, queue)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.collecting: dict[tuple[str, str], Batch] = {}

    def join(self, job: Job, task: Task[Any, Any]) -> None:
        """Add a claimed job of a batch task to the waiting batch of its task and
        queue, or open one (which takes the slot the claim counted on)."""
        batch = self.collecting.get((task.name, job.queue))
        if batch is None:
            batch = Batch(task, job.queue)
            self.worker.slots.open_batch(batch)
            self.collecting[batch.key] = batch
            batch.future = asyncio.create_task(self._run(batch), name=f"pgq-batch-{task.name}-{job.id}")
            batch.future.add_done_callback(lambda _: self._settle(batch))
        self._add(batch, job)

    def _add(self, batch: Batch, job: Job) -> None:
        running = RunningJob(job, batch=batch)
        running.task = batch.future
        batch.members.append(running)
        self.worker.slots.hold(running)
        if batch.full:
            self._close(batch)
            batch.wake.set()
        self.worker.reporter.started(job)

    def _close(self, batch: Batch) -> None:
        """No more jobs join this batch: the next job of its task and queue opens another."""
        if self.collecting.get(batch.key) is batch:
            del self.collecting[batch.key]

    def interrupt(self, running: RunningJob) -> None:
        """Stop a batch's job whose ``stop_reason`` was just set."""
        batch = running.batch
        assert batch is not None
        if not batch.running:
            batch.wake.set()  # the waiting batch lets the job go at once
        elif not batch.interrupted and all(r.stop_reason is not None for r in batch.members):
            # One handler call serves the whole batch: it is stopped only when no job
            # of the batch still wants it; until then a cancelled job ends as the
            # handler says, except that a failure ends cancelled instead of retrying.
            batch.interrupted = True
            if batch.future is not None:
                batch.future.cancel()

    def wake_waiting(self) -> None:
        """A notification: batches still collecting top up."""
        for batch in self.worker.slots.batches:
            if not batch.running:
                batch.wake.set()

    async def _run(self, batch: Batch) -> None:
        worker = self.worker
        members: list[RunningJob] = []
        outcomes: list[Outcome | None]
        try:
            await self._collect(batch)
            self._close(batch)
            self._drop_stopped(batch)
            if not batch.members:
                return
            batch.running = True
            members = batch.claim_order()
            outcomes = await worker.executor.run_batch(members, batch.task)
        except asyncio.CancelledError:
            outcomes = [stopped_outcome(running, called=batch.running) for running in members or list(batch.members)]
        except BaseException as exc:  # the slot and the jobs must be given back whatever happened
            log.exception("batch of %s: the worker failed around its handler", batch.task.name)
            members = list(batch.members)
            outcomes = [
                failure(r.job, type(exc).__qualname__, f"worker error: {exc}", permanent=False, exc=exc)
                for r in members
            ]
        finally:
            self._close(batch)
            for running in list(batch.members):
                worker.slots.release(running)
            batch.members.clear()
            worker.slots.close_batch(batch)
        for outcome in outcomes:
            if outcome is not None:
                worker.completer.add(outcome)
                worker.processed += 1

    def _settle(self, batch: Batch) -> None:
        """A batch task cancelled before its first step never ran _run: give its jobs
        and its slot back here."""
        if batch not in self.worker.slots.batches:
            return
        self._close(batch)
        for running in list(batch.members):
            self.worker.slots.release(running)
            outcome = stopped_outcome(running, called=False)
            if outcome is not None:
                self.worker.completer.add(outcome)
        batch.members.clear()
        self.worker.slots.close_batch(batch)

    def _drop_stopped(self, batch: Batch) -> None:
        """Let go of a waiting batch's jobs that must stop (all of them when the worker
        stops: a batch whose handler has not started gives its jobs back, attempts
        uncounted), writing what became of each."""
        worker = self.worker
        for running in list(batch.members):
            if worker.stopping and running.stop_reason is None:
                running.stop_reason = "shutdown"
            if running.stop_reason is None:
                continue
            batch.members.remove(running)
            worker.slots.release(running)
            outcome = stopped_outcome(running, called=False)
            if outcome is not None:
                worker.completer.add(outcome)

    async def _collect(self, batch: Batch) -> None:
        """Top the batch up at once, then on each notification or short poll, until it
        is full or ``batch_wait`` has passed since its first job arrived."""
        worker = self.worker
        deadline = batch.opened + batch.task.batch_wait
        while True:
            self._drop_stopped(batch)
            if worker.stopping or not batch.members or batch.full:
                return
            batch.wake.clear()  # before the claim: a notification during it wakes the next wait
            await self._top_up(batch)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or worker.stopping or batch.full:
                return
            if await _wait(batch.wake, min(remaining, BATCH_POLL)):
                await asyncio.sleep(min(TOP_UP_GAP, max(0.0, deadline - time.monotonic())))

    async def _top_up(self, batch: Batch) -> None:
        worker = self.worker
        room = batch.size - len(batch.members)
        try:
            with worker.claiming():
                async with worker.connection() as conn:
                    jobs = await repo.claim_batch(conn, worker.schema, worker.id, batch.queue, batch.task.name, room)
                    # Held before anything else awaits, as the producer's claims are.
                    for job in jobs:
                        if not batch.full:
                            self._add(batch, job)
                        else:
                            self._overflow(job, batch.task)
        except TRANSIENT as exc:
            worker.producer._errors.warning("cannot top up a batch (database unavailable?): %s", exc)
        except Exception:
            log.exception("topping up a batch of %s failed; it runs with the jobs it has", batch.task.name)

    def _overflow(self, job: Job, task: Task[Any, Any]) -> None:
        """A top-up job that no longer fits: the producer's claims filled the batch
        while the top-up was in flight. It joins another batch if one waits or a slot
        is free, else it goes straight back to the queue (its attempt given back)."""
        if (task.name, job.queue) in self.collecting or self.worker.slots.free() > 0:
            self.join(job, task)
        else:
            self.worker.completer.add(Outcome(job, "return"))


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Until ``event`` is set (True) or ``timeout`` seconds pass (False)."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True
