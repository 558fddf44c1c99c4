"""Transactional handlers (``@app.task(transactional=True)``): the handler's writes and
its job's completion commit in one transaction, once, or not at all.

The handler gets ``ctx.connection``, a connection of a pool of its own (so a
handler holding it for seconds never starves the worker's claims and
finishes), in an open transaction. When it returns, the job is finished in that
transaction (``job_finish_in_transaction``) with the completer's fence: this
worker's id, this attempt, status ``running``. Then one commit.

- The handler raised: the transaction rolls back, and the attempt is a failure
  written by the completer as for any task (retried or failed for good).
- The fence refused (the sweeper gave the job away while it ran, and another
  worker may be running it): the transaction rolls back, the handler's writes
  with it, and nothing is written for this attempt. Effects land once, from the
  run that owned the job when it committed.
- A stop (timeout, cancel, shutdown) cancels an async handler: the transaction
  rolls back and the connection goes back to the pool. A plain handler's thread
  cannot be stopped; its late completion meets the fence like any late finish
  (refused once the stop's outcome is written). With a timeout, the
  transaction's ``idle_in_transaction_session_timeout`` is the timeout + 5 s, so
  a stuck thread cannot hold it open for ever (without one, pgq's 60 s applies).

The job's row is not locked while the handler runs: the finish's DELETE takes
the lock at the end. A frozen worker's job is therefore rescued by the sweeper
as any other, and a rescue that commits first makes the late finish match no
row (PostgreSQL re-reads the row after the lock wait), so it is refused.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pgq.db import store
from pgq.db.connection import Pools
from pgq.worker import lent_session
from pgq.worker.outcome import Outcome

if TYPE_CHECKING:
    from pgq.settings import Settings
    from pgq.task import Task
    from pgq.worker.executor import RunningJob

log = logging.getLogger("pgq.worker")

#: Builds the completed outcome of a handler's return value (its result JSON, sealed if need be).
Completion = Callable[[Any], Outcome]
#: Runs a plain function in the executor's thread pool, for ``running``.
InThread = Callable[["RunningJob", Callable[[], Any]], Awaitable[Any]]


class Refused(Exception):
    """The fence refused the completion: roll the handler's transaction back."""


class Transactions:
    """Runs the transactional handlers of one worker (or of ``pgq.testing``'s runs)."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        schema: str,
        worker_id: Callable[[], uuid.UUID],
        slots: int,
        purpose: str,
    ) -> None:
        # A connection per running transactional handler, opened as needed: up to twice the
        # slots, since a stopped plain handler's thread keeps its connection until it ends
        # (bounded by the transaction's idle timeout) while a new job takes its slot.
        sized = settings.model_copy(update={"pool_min_size": 0, "pool_max_size": 2 * max(slots, 1)})
        self._pools = Pools(url, sized, purpose=f"{purpose} handlers")
        self.worker_id = worker_id
        self._finish = store.job_finish_in_transaction.sql(schema)
        self._channel = settings.notify_channel

    def _params(self, outcome: Outcome) -> store.JobFinishInTransaction:
        job = outcome.job
        return {
            "id": job.id,
            "queue": job.queue,
            "worker_id": self.worker_id(),
            "attempt": job.attempts,
            "result": outcome.result_json,
            "channel": self._channel,
        }

    async def run(
        self,
        running: RunningJob,
        task: Task[Any, Any],
        args: dict[str, Any],
        completion: Completion,
        in_thread: InThread,
    ) -> Outcome | None:
        """Call the handler in a transaction that completes its job; returns the outcome,
        already written (None when the fence refused it). The handler's exception
        propagates once its transaction has rolled back."""
        try:
            if task.is_async:
                outcome = await self._run_async(running, task, args, completion)
            else:
                outcome = await in_thread(running, lambda: self._run_sync(running, task, args, completion))
        except Refused:
            job = running.job
            log.warning(
                "job %s %s: attempt %d's transaction rolled back, this worker no longer owns the job (the sweeper "
                "gave it away); its writes were not committed",
                job.id,
                job.task,
                job.attempts,
                extra={"event": "finish_refused", "job_id": job.id},
            )
            return None
        outcome.written = True
        return outcome

    async def _run_async(
        self, running: RunningJob, task: Task[Any, Any], args: dict[str, Any], completion: Completion
    ) -> Outcome:
        ctx = running.ctx
        assert ctx is not None
        pool = await self._pools.async_pool()
        async with pool.connection() as conn:
            try:
                async with conn.transaction():
                    if running.job.timeout or task.timeout:
                        await conn.execute(_IDLE_LIMIT, _idle_limit(running, task))
                    ctx.connection = conn
                    ctx.new_session = lent_session.new_async_session
                    lent_session.lent.set(conn)
                    result = await task.fn(ctx, **args)
                    if ctx.opened_session is not None:
                        await ctx.opened_session.commit()
                        await ctx.opened_session.close()
                    outcome = completion(result)
                    cursor = await conn.execute(self._finish, self._params(outcome))
                    if await cursor.fetchone() is None:
                        raise Refused
            finally:
                ctx.connection = ctx.new_session = ctx.opened_session = None
        return outcome

    def _run_sync(
        self, running: RunningJob, task: Task[Any, Any], args: dict[str, Any], completion: Completion
    ) -> Outcome:
        ctx = running.ctx
        assert ctx is not None
        with self._pools.sync_pool().connection() as conn:
            try:
                with conn.transaction():
                    if running.job.timeout or task.timeout:
                        conn.execute(_IDLE_LIMIT, _idle_limit(running, task))
                    ctx.connection = conn
                    ctx.new_session = lent_session.new_session
                    lent_session.lent.set(conn)
                    result = task.fn(ctx, **args)
                    if ctx.opened_session is not None:
                        ctx.opened_session.commit()
                        ctx.opened_session.close()
                    outcome = completion(result)
                    if conn.execute(self._finish, self._params(outcome)).fetchone() is None:
                        raise Refused
            finally:
                ctx.connection = ctx.new_session = ctx.opened_session = None
        return outcome

    async def close(self) -> None:
        await self._pools.aclose()
        await asyncio.to_thread(self._pools.close)


_IDLE_LIMIT = store.transaction_idle_limit.sql()


def _idle_limit(running: RunningJob, task: Task[Any, Any]) -> store.ByMs:
    """The attempt's timeout, plus a margin, in milliseconds: past it the server ends a
    transaction left idle by a handler that was stopped but whose thread runs on."""
    timeout = running.job.timeout.total_seconds() if running.job.timeout else (task.timeout or 0)
    return {"ms": str(int((timeout + 5) * 1000))}
