"""Claiming: as many jobs as there are free slots, in one statement, started at once.

The producer claims when a slot is free and it has reason to think a job is
ready: a notification, a claim that filled every slot (more may wait), the
poll (``PGQ_POLL_INTERVAL`` with jitter, the safety net under LISTEN), or the
moment the next delayed job or rate token is due. Queues with limits are
claimed one by one through ``claim_limited``, taking turns at going first.

A busy worker claims as its jobs finish, so the claim also writes the plain
completions waiting for the completer, in its own transaction (migration 0011;
for a queue with limits, migration 0021): one round trip and one commit where
there were two.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from pgq.db import repo
from pgq.db.session import Session
from pgq.job import Job
from pgq.maintenance.service import TRANSIENT
from pgq.throttle import LogWindow
from pgq.worker.wakeup import Wakeup

if TYPE_CHECKING:
    from pgq.worker.outcome import Outcome
    from pgq.worker.worker import Worker

log = logging.getLogger("pgq.worker")

T = TypeVar("T")


class Producer:
    def __init__(self, worker: Worker, session: Session) -> None:
        self.worker = worker
        self.session = session
        self.schema = worker.schema
        self.queues = worker.queues
        #: Set by a notification, a stop, or a job put back to pending by this worker.
        self.wake = Wakeup()
        # Which of the queues have limits (claimed by claim_limited): loaded at
        # start, again on a notification on the queues channel and at each poll.
        self.limited: set[str] = set()
        # Of those, the queues with a queue-wide limit (concurrency, rate): their claims
        # wait for this worker's outcomes of them to be written (see _claim_limited).
        self.queue_wide: set[str] = set()
        self.limits_stale = True
        self._turn = 0
        self._errors = LogWindow(log, 30.0)

    async def run(self) -> None:
        worker, slots, wake = self.worker, self.worker.slots, self.wake
        while not worker.stopping:
            free = slots.free()
            if free <= 0:
                slots.freed.clear()
                await slots.freed.wait()
                continue
            wake.clear()
            try:
                with worker.claiming():
                    claimed, wait = await self._round(free)
            except TRANSIENT as exc:
                self._errors.warning("cannot claim jobs (database unavailable?): %s", first_line(exc))
                await wake.wait(min(worker.poll_interval, 0.5 + 0.5 * self._errors.count))
                continue
            except Exception:
                log.exception("claiming jobs failed; retrying")
                await wake.wait(worker.poll_interval)
                continue
            if self._errors.count:
                self._errors.reset("claiming jobs again")
            if claimed == free:
                continue  # every slot filled: more may be ready
            poll = worker.poll_interval * random.uniform(0.9, 1.1)
            timeout = poll if wait is None else min(poll, wait)
            if not await wake.wait(timeout) and timeout == poll:
                # A poll: see whether limits changed (a lost notification costs one poll).
                self.limits_stale = True

    async def _round(self, free: int) -> tuple[int, float | None]:
        """One claim round: how many jobs it started, and when it is worth looking
        again if it found fewer than ``free`` (seconds, None for "at the next poll")."""
        session, schema, worker = self.session, self.schema, self.worker
        if self.limits_stale:
            limits = await repo.limited_queues(session, schema, self.queues)
            limited = set(limits)
            if limited - self.limited:
                # Jobs this worker claimed before it heard of the limit hold slots of it.
                await repo.mark_limit_slots(
                    session, schema, worker.id, sorted(limited - self.limited), sorted(worker.owned_ids())
                )
            self.limited = limited
            self.queue_wide = {queue for queue, wide in limits.items() if wide}
            self.limits_stale = False
        limited = self.limited
        unlimited = [q for q in self.queues if q not in limited] if limited else self.queues
        claimed = 0
        wait: float | None = None
        if unlimited:
            completer = worker.completer
            done = completer.take_completions(worker.id)
            if done:
                jobs, wait, accepted = await self._carrying(
                    repo.claim_finishing(session, schema, worker.id, unlimited, free, [outcome.job for outcome in done])
                )
            else:
                jobs, wait = await repo.claim(session, schema, worker.id, unlimited, free)
            # Start them before anything else awaits: until then they are
            # claimed in the database but held nowhere in this process.
            self._start(jobs)
            if done:
                await completer.taken_written(accepted)
            claimed = len(jobs)
            if claimed == 0:
                # A claim that returns no row cannot say when the next job is due.
                wait = await repo.seconds_to_next_job(session, schema, unlimited)
        if limited:
            given = await self._claim_limited(free, claimed)
            claimed += sum(given.values())
            empty = sorted(queue for queue, n in given.items() if n == 0)
            if empty and claimed < free:
                # Only queues that gave nothing: a queue that gave jobs is looked at
                # again when they finish (a finished job of a limited queue wakes us).
                due = await repo.seconds_to_next_due(session, schema, empty)
                if due is not None:
                    wait = due if wait is None else min(wait, due)
        return claimed, wait

    async def _claim_limited(self, free: int, claimed: int) -> dict[str, int]:
        """Claim up to ``free - claimed`` jobs of the queues with limits, one queue at a
        time (taking turns at going first), and start each at once; the jobs each queue
        gave. The first claim carries the plain completions the completer holds and
        writes them before it counts the queue's running jobs. Left out: queues not
        reached for want of slots, and, when the completer's outcomes could not be carried
        (a write in flight, a result or an error among them), queues with a queue-wide
        limit and outcomes still to be written, whose slots the database counts as taken
        until then (the write wakes this worker: a claim before it would find nothing and
        cost one more round trip asking when to look again). A queue with group limits
        alone is claimed at once: the groups of those outcomes are left out of the claim,
        the other groups serve."""
        ordered = [q for q in self.queues if q in self.limited]
        self._turn = (self._turn + 1) % len(ordered)
        completer = self.worker.completer
        # The plain completions the completer holds go with the first claim, which writes
        # them before it counts the queue's running jobs (migration 0021).
        done = completer.take_completions(self.worker.id) if free > claimed else []
        waiting = {outcome.job.queue for outcome in completer.unflushed()} & self.queue_wide if not done else set()
        given: dict[str, int] = {}
        for queue in ordered[self._turn :] + ordered[: self._turn]:
            room = free - claimed - sum(given.values())
            if room <= 0:
                break
            if queue in waiting:
                continue
            if done:
                jobs = await self._claim_finishing(queue, room, done)
                done = []
            else:
                jobs = await repo.claim_limited(self.session, self.schema, self.worker.id, queue, room)
                self._start(jobs)
            given[queue] = len(jobs)
        if done:  # no queue was claimed after all: the completer writes them
            completer.give_back()
        return given

    async def _claim_finishing(self, queue: str, room: int, done: list[Outcome]) -> list[Job]:
        """Write ``done`` (taken from the completer) and claim up to ``room`` jobs of
        ``queue``, in one transaction; the completer hears which outcomes were accepted,
        or gets them back to write itself if the claim failed."""
        jobs, accepted = await self._carrying(
            repo.claim_limited_finishing(
                self.session, self.schema, self.worker.id, queue, room, [outcome.job for outcome in done]
            )
        )
        self._start(jobs)
        woken = self.wake.is_set()
        await self.worker.completer.taken_written(accepted)
        if not woken:
            # The report of a written outcome of a limited queue wakes the producer to claim
            # into the slots it freed; this claim already did (nothing ran in between: the
            # report awaits nothing). Woken anyway, it would find the slots taken by the jobs
            # it just started and ask once more when to look again.
            self.wake.clear()
        return jobs

    async def _carrying(self, claim: Awaitable[T]) -> T:
        """Await a claim that carries completions taken from the completer, which gets
        them back to write itself if the claim fails."""
        try:
            return await claim
        except BaseException:
            self.worker.completer.give_back()
            raise

    def _start(self, jobs: list[Job]) -> None:
        start = self.worker.start
        for job in jobs:
            start(job)

    def on_jobs(self, payload: str) -> None:
        self.wake.set()

    def on_queues(self, payload: str) -> None:
        """A queue's limits changed (``set_queue``): reload them before the next claim."""
        self.limits_stale = True
        self.wake.set()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
