"""Writing outcomes in batches: one statement for many finished jobs.

An outcome is written as soon as no other write is in flight; outcomes that
arrive while one is join the next, so a busy worker writes hundreds per
statement and an idle one loses no time waiting for company. A crash before
a write loses nothing but that write: the job is still ``running`` under this
worker, and the sweeper gives it another attempt. While the database is away,
outcomes stay queued and are written when it is back; a retried write is
harmless because every write is fenced.

What follows a write (events, log lines, waking other workers) is the
``on_written`` callback's, called only with what the database accepted.

A busy worker's claim takes the queued plain completions along and writes them
in its own transaction (:meth:`Completer.take_completions`): one statement and
one commit instead of two. They count as unwritten until it has, and come back
to the queue if it fails.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgq.throttle import LogWindow
from pgq.worker.outcome import Outcome

log = logging.getLogger("pgq.worker")

#: Errors that mean "this row", not "this connection": retried one by one, then written as failures.
BAD_ROW = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)

#: The most outcomes a claim takes along (take_completions). Carried, a batch's write
#: costs no statement, commit or backend wake-up of its own, but it no longer runs beside
#: the claim on a second backend: measured on PostgreSQL 15 (no-op jobs, alternating
#: pairs), carrying 10 took the drain at concurrency 10 from 9,336-9,550 to 9,762-10,242
#: jobs/s, and CPU a job from 124 to 90 us (client and server); carrying up to 20 at
#: concurrency 20 cost 4-8 % (15,026-15,732 -> 13,884-15,121 jobs/s), and up to 100 at
#: concurrency 100 cost 12 %.
CARRY_LIMIT = 10

#: Writes a batch of one worker id's outcomes, given as columns; returns the ids accepted.
Write = Callable[[uuid.UUID, Sequence[list[Any] | None]], Awaitable[set[int]]]


class Completer:
    def __init__(
        self,
        write: Write,
        *,
        batch_size: int = 1000,
        on_written: Callable[[list[Outcome], set[int]], Awaitable[None]] | None = None,
    ) -> None:
        self.write = write
        self.batch_size = batch_size
        self.on_written = on_written
        self._queue: list[Outcome] = []
        #: Outcomes a claim took along (take_completions) and has not written yet.
        self._taken: list[Outcome] = []
        self._ready = asyncio.Event()
        self._errors = LogWindow(log, 10.0)
        self._stopping = False
        # run() and drain() may both flush at shutdown: one batch at a time.
        self._flushing = asyncio.Lock()

    def add(self, outcome: Outcome) -> None:
        self._queue.append(outcome)
        if not self._ready.is_set():
            self._ready.set()

    def unflushed_ids(self) -> set[int]:
        return {outcome.job.id for outcome in self._queue} | {outcome.job.id for outcome in self._taken}

    def unflushed(self) -> list[Outcome]:
        """The outcomes not written yet (those being written included)."""
        return self._queue + self._taken

    def pending(self) -> int:
        return len(self._queue) + len(self._taken)

    def take_completions(self, owner: uuid.UUID) -> list[Outcome]:
        """Every queued outcome, for a claim to write in its transaction, when they are
        at most ``CARRY_LIMIT``, all plain completions (no result) of jobs held under
        ``owner``, and no write is in flight; else none. Hand them back with
        :meth:`taken_written` or :meth:`give_back`."""
        queue = self._queue
        if not queue or self._taken or self._flushing.locked() or len(queue) > CARRY_LIMIT:
            return []
        for outcome in queue:
            if outcome.kind != "completed" or outcome.result_json is not None or outcome.job.worker_id != owner:
                return []
        self._taken, self._queue = queue, []
        self._ready.clear()
        return queue

    async def taken_written(self, accepted: set[int]) -> None:
        """The claim wrote the taken outcomes; ``accepted``: the ids its fence let through."""
        batch, self._taken = self._taken, []
        await self._after_write(batch, accepted)

    def give_back(self) -> None:
        """The claim failed: the taken outcomes are written by this completer, first."""
        if self._taken:
            self._queue[:0] = self._taken
            self._taken = []
            self._ready.set()

    async def run(self) -> None:
        """Flush until stopped; call :meth:`drain` to write what is left."""
        while not self._stopping:
            await self._ready.wait()
            # One turn of the loop first: the jobs finishing in this one join the batch.
            await asyncio.sleep(0)
            try:
                await self._flush_once()
            except Exception:  # this loop must outlive any bug: its outcomes are the jobs' fate
                log.exception("writing job outcomes failed; retrying")
                await asyncio.sleep(1.0)

    async def drain(self, timeout: float) -> bool:
        """Write everything queued; False if the database would not take it in time."""
        try:
            async with asyncio.timeout(timeout):
                while self._queue:
                    await self._flush_once()
            return True
        except TimeoutError:
            return False

    def stop(self) -> None:
        self._stopping = True
        self._ready.set()

    async def _flush_once(self) -> None:
        async with self._flushing:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        batch = self._queue[: self.batch_size]
        if not batch:
            self._ready.clear()
            return
        try:
            accepted = await self._write(batch)
        except BAD_ROW as exc:
            # A row the server refuses (say, a value out of range) must not block the rest.
            log.error("writing %d outcomes failed, writing them one by one: %s", len(batch), exc)
            accepted = await self._write_singly(batch)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            # Connection lost, server shutting down, read-only primary, ...: keep them and retry.
            self._errors.warning("cannot write %d job outcomes yet (will retry): %s", len(batch), exc)
            await asyncio.sleep(min(1.0, 0.1 + 0.1 * self._errors.count))
            return
        self._errors.reset()
        del self._queue[: len(batch)]
        if not self._queue:
            self._ready.clear()
        await self._after_write(batch, accepted)

    async def _after_write(self, batch: list[Outcome], accepted: set[int]) -> None:
        if self.on_written is not None:
            try:
                await self.on_written(batch, accepted)
            except Exception:
                log.exception("after writing outcomes: ignored")

    async def _write(self, batch: list[Outcome]) -> set[int]:
        owner = batch[0].job.worker_id
        if all(outcome.job.worker_id == owner for outcome in batch):
            assert owner is not None
            return await self.write(owner, columns(batch))
        # Claimed under an id this worker had before it was declared dead: each id apart.
        accepted: set[int] = set()
        by_worker: dict[uuid.UUID, list[Outcome]] = {}
        for outcome in batch:
            assert outcome.job.worker_id is not None
            by_worker.setdefault(outcome.job.worker_id, []).append(outcome)
        for worker_id, outcomes in by_worker.items():
            accepted |= await self.write(worker_id, columns(outcomes))
        return accepted

    async def _write_singly(self, batch: list[Outcome]) -> set[int]:
        """Write outcomes one by one; one the server refuses is written as a failure
        (without its result or delay), so that the job still ends. Errors other
        than a refused row propagate: the batch stays queued."""
        accepted: set[int] = set()
        for outcome in batch:
            try:
                accepted |= await self._write([outcome])
                continue
            except BAD_ROW as exc:
                log.error("job %s: outcome %s could not be written: %s", outcome.job.id, outcome.kind, exc)
                outcome.error = {
                    "attempt": outcome.job.attempts,
                    "type": "OutcomeNotStored",
                    "message": f"its {outcome.kind} outcome was refused by the database: {exc}"[:2000],
                }
            outcome.kind, outcome.result_json, outcome.delay = "failed", None, None
            accepted |= await self._write([outcome])
        return accepted


def columns(outcomes: Sequence[Outcome]) -> list[list[Any] | None]:
    """The outcomes as the finish statement's columns: ids, queues, attempts, kinds,
    results, errors, delays. A batch of plain completions (the common one) sends
    None for the last four, which the statement reads as "completed, no result":
    four arrays fewer to build, send and unpack."""
    jobs = [outcome.job for outcome in outcomes]
    plain = all(o.kind == "completed" and o.result_json is None for o in outcomes)
    return [
        [job.id for job in jobs],
        [job.queue for job in jobs],
        [job.attempts for job in jobs],
        None if plain else [outcome.kind for outcome in outcomes],
        None if plain else [outcome.result_json for outcome in outcomes],
        None if plain else [None if outcome.error is None else Jsonb(outcome.error) for outcome in outcomes],
        None if plain else [outcome.delay for outcome in outcomes],
    ]


def as_row(outcome: Outcome) -> dict[str, Any]:
    """One outcome as the named parameters of one row (``repo.finish_many``)."""
    return {
        "id": outcome.job.id,
        "queue": outcome.job.queue,
        "attempt": outcome.job.attempts,
        "kind": outcome.kind,
        "result": outcome.result_json,
        "error": Jsonb(outcome.error) if outcome.error is not None else None,
        "delay": outcome.delay,
    }
