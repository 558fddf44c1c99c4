"""``app.wait``: block until a job ends and return it, woken by the NOTIFY that a
move to job_history sends while someone waits (migration 0015).

The steps are one generator, :func:`wait_flow`, that yields SQL to run and pauses
to take; :func:`wait` and :func:`wait_async` run it on a session of their own,
sync or async, and always take the session's waiter rows away at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from pgq.db import store
from pgq.db.connection import Row, connect, connect_async
from pgq.errors import ConfigurationError, JobNotFound
from pgq.job import Job
from pgq.operations import job_id_of

if TYPE_CHECKING:
    from pgq.app import App

#: Seconds between look-ups while listening: no wake-up is lost, but a waiter row
#: pruned by mistake or a NOTIFY the server dropped must not make a wait endless.
BACKSTOP = 5.0
#: Seconds between look-ups without LISTEN (a transaction pooler and no PGQ_LISTEN_URL).
POLL = 0.5


@dataclass
class Pause:
    """Wait this long, or less when a NOTIFY arrives."""

    seconds: float


WaitFlow = Generator["store.Statement | Pause", list[Row] | None, Job]


def check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
        raise ConfigurationError(f"timeout is a number of seconds (or None to wait for ever), got {timeout!r}")
    if timeout < 0:
        raise ConfigurationError(f"timeout cannot be negative, got {timeout!r}")
    return float(timeout)


def wait_flow(schema: str, channel: str, job_id: int, timeout: float | None, listening: bool) -> WaitFlow:
    """The steps of a wait; the caller's session is in autocommit mode."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if listening:
        # Listen, then register, then look: a finish that commits after the look
        # saw the registration and sends a NOTIFY, which the LISTEN receives.
        yield store.listen(None, {}, channel=channel)
        yield store.job_wait_register(schema, {"id": job_id})
        lock_ms = 0 if deadline is None else max(1, int((deadline - time.monotonic()) * 1000))
        yield store.session_lock_timeout(None, {"ms": str(lock_ms)})
        try:
            yield store.job_wait_settle(schema, {"id": job_id})
        except psycopg.errors.LockNotAvailable:
            pass  # locked all along by a finish that has not committed: the deadline check below says so
    while True:
        rows = yield store.job_get(schema, {"id": job_id})
        if not rows:
            raise JobNotFound(f"no job with id {job_id}")
        job = Job.from_row(rows[0])
        if job.is_finished:
            return job
        left = math.inf if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g} s")
        yield Pause(min(left, BACKSTOP if listening else POLL))


def _target(app: App) -> tuple[str, bool]:
    direct = app.direct_url
    return (direct, True) if direct is not None else (app.url, False)


def wait(app: App, job_id: Any, timeout: float | None) -> Job:
    job_id = job_id_of(job_id)
    timeout = check_timeout(timeout)
    url, listening = _target(app)
    conn = connect(url, app.settings, "wait", direct=listening)
    try:
        flow = wait_flow(app.schema, app.settings.done_channel, job_id, timeout, listening)
        step = next(flow)
        while True:
            if isinstance(step, Pause):
                if listening:
                    for _ in conn.notifies(timeout=step.seconds, stop_after=1):
                        pass
                else:
                    time.sleep(step.seconds)
                step = flow.send(None)
                continue
            try:
                cur = conn.execute(step.sql.encode(), step.params or None)
            except psycopg.errors.LockNotAvailable as exc:
                step = flow.throw(exc)
                continue
            step = flow.send(cur.fetchall() if cur.description else [])
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        if listening:
            with contextlib.suppress(psycopg.Error):
                conn.execute(store.job_wait_unregister.sql(app.schema).encode())
        conn.close()


async def wait_async(app: App, job_id: Any, timeout: float | None) -> Job:
    job_id = job_id_of(job_id)
    timeout = check_timeout(timeout)
    url, listening = await asyncio.to_thread(_target, app)  # app.url may start the embedded server
    conn = await connect_async(url, app.settings, "wait", direct=listening)
    try:
        flow = wait_flow(app.schema, app.settings.done_channel, job_id, timeout, listening)
        step = next(flow)
        while True:
            if isinstance(step, Pause):
                await (_notified(conn, step.seconds) if listening else asyncio.sleep(step.seconds))
                step = flow.send(None)
                continue
            try:
                cur = await conn.execute(step.sql.encode(), step.params or None)
            except psycopg.errors.LockNotAvailable as exc:
                step = flow.throw(exc)
                continue
            step = flow.send(await cur.fetchall() if cur.description else [])
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        if listening:
            with contextlib.suppress(psycopg.Error):
                await conn.execute(store.job_wait_unregister.sql(app.schema).encode())
        await conn.close()


async def _notified(conn: psycopg.AsyncConnection[Row], seconds: float) -> None:
    """Until a NOTIFY arrives on ``conn``, or ``seconds`` have passed."""
    async for _ in conn.notifies(timeout=seconds, stop_after=1):
        pass
