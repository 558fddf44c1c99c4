"""The LISTEN connection: a hint that wakes its owner, never a source of truth.

One autocommit session per owner: a worker (its producer claims when woken) and
a dashboard (its live ticker reads when woken). When it drops it reconnects with
backoff, and every (re)LISTEN calls ``on_listening``, since notifications sent
while it was away are gone: the owner reads (or claims) then. When no
notification has arrived for a while it sends itself one (a probe) and
reconnects if that does not come back: a half-open socket would otherwise leave
the owner waiting on its poll interval.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
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


@dataclass(eq=False)
class Listener:
    # Both kept out of repr: they hold the database password.
    url: str = field(repr=False)
    settings: Settings = field(repr=False)
    handlers: dict[str, Callable[[str], None]]
    on_listening: Callable[[], None]
    _: KW_ONLY
    probe_after: float = PROBE_AFTER
    logger: logging.Logger = log
    purpose: str = "listener"
    probe_channel: str = field(init=False)
    listening: bool = field(default=False, init=False)
    _stopping: bool = field(default=False, init=False)
    _conn: psycopg.AsyncConnection[Any] | None = field(default=None, init=False)
    _errors: LogWindow = field(init=False)

    def __post_init__(self) -> None:
        self.probe_channel = channels.probe(self.settings.schema_name)
        self._errors = LogWindow(self.logger, 30.0)

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
                    "%s: LISTEN connection lost (%s); reading on a timer until it is back",
                    self.purpose,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                self.listening = False
                await self._close()

    async def _listen(self) -> None:
        kwargs = connection_kwargs(self.settings, self.purpose, direct=True)
        self._conn = conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, **kwargs)
        for channel in [*self.handlers, self.probe_channel]:
            await conn.execute(query("listen", channel=channel))
        self.listening = True
        self._errors.reset(f"{self.purpose}: LISTEN connected again; notifications resume")
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
            self.logger.exception(
                "%s: ignoring notification on %s with payload %r", self.purpose, channel, payload[:100]
            )

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
