"""The LISTEN connection: a hint that wakes the producer, never a source of truth.

One autocommit session per worker. When it drops it reconnects with backoff,
and every (re)LISTEN is followed by a claim, since notifications sent while
it was away are gone. When no notification has arrived for a while it sends
itself one (a probe) and reconnects if that does not come back: a half-open
socket would otherwise leave the worker waiting on its poll interval.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from pgq.db import channels
from pgq.db.connection import connection_kwargs
from pgq.db.queries import query
from pgq.settings import Settings
from pgq.throttle import LogWindow

log = logging.getLogger("pgq.worker")

#: Seconds of silence before the listener probes its connection.
PROBE_AFTER = 30.0
#: Seconds the probe may take to come back.
PROBE_TIMEOUT = 5.0


class Listener:
    def __init__(
        self,
        url: str,
        settings: Settings,
        handlers: dict[str, Callable[[str], None]],
        on_listening: Callable[[], None],
        *,
        probe_after: float = PROBE_AFTER,
    ) -> None:
        self.url = url
        self.settings = settings
        self.handlers = handlers
        self.on_listening = on_listening
        self.probe_after = probe_after
        self.probe_channel = channels.probe(settings.schema_name)
        self.listening = False
        self._stopping = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._errors = LogWindow(log, 30.0)

    async def run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                await self._listen()
                backoff = 0.5
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self.listening = False
                if self._stopping:
                    break
                self._errors.warning(
                    "listener: connection lost (%s); polling every %.1f s until it is back",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    self.settings.poll_interval,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                self.listening = False
                await self._close()

    async def _listen(self) -> None:
        kwargs = connection_kwargs(self.settings, "listener", direct=True)
        self._conn = conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, **kwargs)
        for channel in [*self.handlers, self.probe_channel]:
            await conn.execute(query("listen", channel=channel))
        self.listening = True
        self._errors.reset("listener: connected again; notifications resume")
        self.on_listening()
        while not self._stopping:
            heard = False
            async for notify in conn.notifies(timeout=self.probe_after):
                heard = True
                self._dispatch(notify.channel, notify.payload)
            if not heard and not self._stopping:
                await self._probe(conn)

    def _dispatch(self, channel: str, payload: str) -> None:
        handler = self.handlers.get(channel)
        if handler is None:
            return
        try:
            handler(payload)
        except Exception:  # a malformed payload is ignored, the listener carries on
            log.exception("listener: ignoring notification on %s with payload %r", channel, payload[:100])

    async def _probe(self, conn: psycopg.AsyncConnection[Any]) -> None:
        token = uuid.uuid4().hex
        await asyncio.wait_for(
            conn.execute(query("notify"), {"channel": self.probe_channel, "payload": token}), PROBE_TIMEOUT
        )
        async for notify in conn.notifies(timeout=PROBE_TIMEOUT):
            if notify.channel == self.probe_channel and notify.payload == token:
                return
            self._dispatch(notify.channel, notify.payload)
        raise TimeoutError(f"no answer to the listener's probe within {PROBE_TIMEOUT:g} s")

    async def stop(self) -> None:
        self._stopping = True
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (psycopg.Error, OSError, TimeoutError):
                pass
