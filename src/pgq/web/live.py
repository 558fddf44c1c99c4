"""Live updates: one ticker per dashboard feeds every browser through Server-Sent Events.

The ticker LISTENs on the installation's jobs channel through
:class:`pgq.db.listener.Listener` (on the primary, past any pooler: a NOTIFY
follows every insert into ``jobs``) and re-reads at most once per ``tick``
seconds otherwise, because claims, finishes and progress writes send no
notification. Its reads go where the pages read (``app.reader``). Each read is
one statement (``dashboard_live``) whatever the number of browsers: the live
counts, the running jobs with their progress, and the state of every job some
browser has on its screen. Finished counts (``App.stats()``, the last 24 hours)
are re-read when the live counts change, at most every ``finished_every``
seconds, and every 30 seconds otherwise.
Browsers never poll: they keep one EventSource open.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgq.db import store
from pgq.db.listener import Listener
from pgq.redaction import Redactor
from pgq.web.data import finished_counts, merge_counts, totals

if TYPE_CHECKING:
    from pgq.app import App

log = logging.getLogger("pgq.web")

#: Jobs one browser may watch (a page of the jobs list is at most this long).
WATCH_LIMIT = 200
#: Seconds between SSE comments that keep proxies from closing an idle stream.
KEEPALIVE = 15.0
#: Seconds before a stream ends and the browser reconnects (see stream()).
STREAM_LIFETIME = 300.0


@dataclass(eq=False)
class Subscriber:
    ids: frozenset[int]
    event: asyncio.Event = field(default_factory=asyncio.Event)
    message: str | None = None


class LiveHub:
    """The shared ticker; started by the first subscriber, stopped after the last leaves."""

    def __init__(self, app: App, redact: Redactor, tick: float = 1.0, finished_every: float = 2.0) -> None:
        self.app = app
        self.redact = redact
        self.tick = tick
        self.finished_every = finished_every
        self.subscribers: set[Subscriber] = set()
        self.reads = 0  # statements run by the ticker, for tests and curiosity
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._common: dict[str, Any] | None = None
        self._finished: list[dict[str, Any]] = []
        self._finished_at = 0.0
        self._live_seen: Any = None
        self._finished_stale = True
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backoff = 0.5

    # ------------------------------------------------------------ browsers

    async def stream(self, ids: frozenset[int]) -> AsyncIterator[str]:
        """The SSE body for one browser: a ``snapshot`` event whenever its view changes."""
        sub = Subscriber(frozenset(itertools.islice(ids, WATCH_LIMIT)))
        self._loop = asyncio.get_running_loop()
        self.subscribers.add(sub)
        self._ensure_running()
        if self._common is not None:
            sub.message = self._message(sub, self._common, {})
            sub.event.set()
        self._wake.set()  # read now: this browser wants the jobs it watches
        last = None
        # A stream ends after STREAM_LIFETIME and the browser reconnects on its own: a
        # user's server, with the dashboard mounted, can then shut down gracefully
        # without waiting for a tab that stays open.
        ends = time.monotonic() + STREAM_LIFETIME
        try:
            yield "retry: 2000\n\n"
            while time.monotonic() < ends:
                try:
                    await asyncio.wait_for(sub.event.wait(), KEEPALIVE)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                sub.event.clear()
                if self._closing:
                    return  # the server is shutting down: end the stream (the browser reconnects)
                message = sub.message
                if message is not None and message != last:
                    last = message
                    yield f"event: snapshot\ndata: {message}\n\n"
        finally:
            self.subscribers.discard(sub)

    def close_streams(self) -> None:
        """End every open stream (from any thread): a server can then shut down without waiting for them."""

        def close() -> None:
            self._closing = True
            for sub in list(self.subscribers):
                sub.event.set()

        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(close)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="pgq-dashboard-live")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --------------------------------------------------------------- ticker

    async def _run(self) -> None:
        listener = self._listener()
        listening = asyncio.create_task(listener.run(), name="pgq-dashboard-listen") if listener else None
        try:
            while self.subscribers:
                try:
                    await self._read()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("dashboard live updates: %s; retrying in %.1f s", exc, self._backoff)
                    await self._publish_error(str(exc))
                    await asyncio.sleep(self._backoff)
                    # At most a few seconds: the pages' banner goes as soon as the database is back.
                    self._backoff = min(self._backoff * 2, 4.0)
                    continue
                await self._wait()
            # Set before any await, so that a browser arriving now starts a new ticker.
            self._task = None
        finally:
            if listener is not None and listening is not None:  # both or neither
                await listener.stop()
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listening

    def _listener(self) -> Listener | None:
        """LISTEN on the primary, past any pooler (notifications reach neither a pooler's
        transaction nor a standby); without a direct URL the ticker reads on its timer alone."""
        direct = self.app.direct_url
        if direct is None:
            return None
        return Listener(
            direct,
            self.app.settings,
            {self.app.settings.notify_channel: lambda _: self._wake.set()},
            self._wake.set,
            logger=log,
            purpose="dashboard",
        )

    async def _wait(self) -> None:
        """Until the next tick, or sooner (but not before a quarter tick) after a NOTIFY or a new browser."""
        started = time.monotonic()
        deadline = started + self.tick
        earliest = started + self.tick / 4
        woken = False
        while self.subscribers:
            now = time.monotonic()
            if now >= deadline or (woken and now >= earliest):
                return
            if self._wake.is_set():
                self._wake.clear()
                woken = True
                continue
            step = min(deadline - now, 0.1 if not woken else earliest - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(step, 0.01))

    async def _read(self) -> None:
        """One read of everything the pages show live, where the pages read (``app.reader``: the
        replica of PGQ_READ_URL when set), on pgq's pool in a thread."""
        from starlette.concurrency import run_in_threadpool

        ids = sorted(set().union(*(s.ids for s in self.subscribers))) if self.subscribers else []
        reads = self.app.reader
        rows = await run_in_threadpool(lambda: store.dashboard_live.run(reads.db, {"ids": ids}))
        row = rows[0] if rows else None
        self.reads += 1
        self._backoff = 0.5
        if row is None:  # pragma: no cover - one row always
            return
        now = time.monotonic()
        live_key = json.dumps(row["live"], sort_keys=True)
        if live_key != self._live_seen:
            self._live_seen = live_key
            self._finished_stale = True  # a job may have finished: count again, within finished_every
        due = now - self._finished_at >= (self.finished_every if self._finished_stale else 30.0)
        if due or not self._finished_at:
            self._finished = finished_counts(await run_in_threadpool(reads.stats))
            self.reads += 1
            self._finished_at = now
            self._finished_stale = False
        table = merge_counts(row["live"], self._finished)
        common = {
            "counts": table,
            "totals": totals(table),
            "paused": row["paused"],
            "running": [
                {
                    "id": r["id"],
                    "queue": r["queue"],
                    "task": r["task"],
                    "attempts": r["attempts"],
                    "progress": r["progress"],
                    "message": r["progress_message"],
                    "started_at": r["started_at"],
                }
                for r in row["running"]
            ],
            "newest_live_id": row["newest_live_id"],
            "workers": [
                {
                    "id": str(w["id"]),
                    "status": w["status"],
                    "last_heartbeat": w["last_heartbeat"],
                    "busy": w["busy"],
                    "concurrency": w["concurrency"],
                }
                for w in row["workers"]
            ],
            "error": None,
        }
        self._common = common
        watched = {int(w["id"]): w for w in row["watched"]}
        for sub in list(self.subscribers):
            sub.message = self._message(sub, common, watched)
            sub.event.set()

    def _message(self, sub: Subscriber, common: dict[str, Any], watched: dict[int, dict[str, Any]]) -> str:
        jobs = {}
        for job_id in sub.ids:
            entry = watched.get(job_id)
            if entry is None:
                continue
            state = entry["status"]
            if state == "pending" and not entry["ready"]:
                state = "delayed"
            jobs[str(job_id)] = {
                "status": state,
                "attempts": entry["attempts"],
                "max_attempts": entry["max_attempts"],
                "progress": entry["progress"],
                "message": entry["progress_message"],
            }
        return json.dumps({**common, "jobs": jobs}, separators=(",", ":"), default=str)

    async def _publish_error(self, text: str) -> None:
        """Tell every page the database is gone: they show a banner over figures that stopped moving."""
        reason = text.splitlines()[0] if text else "error"
        message = json.dumps({"error": f"database unreachable ({reason})", "database": False})
        # A browser that arrives now must not be handed the last good figures as if they were
        # fresh: the 503 page would take them for "the database is back" and reload into the
        # same 503, using up its reload before the database returned.
        self._common = None
        for sub in list(self.subscribers):
            sub.message = message
            sub.event.set()
