"""The one shape every background service has.

A service does one bounded pass in :meth:`Service.run_once` and returns what
it did (tests call it directly); :meth:`Service.run` repeats it every
``interval`` seconds with ±10 % jitter, logs a failure in a bounded way and
carries on. Stopping twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import psycopg

from pgq.throttle import LogWindow

#: Errors a service waits out; anything else is logged with its traceback, and the loop still carries on.
TRANSIENT = (
    psycopg.OperationalError,
    psycopg.errors.QueryCanceled,
    psycopg.errors.AdminShutdown,
    OSError,
    TimeoutError,
)


def client_deadline(settings: Any) -> float:
    """Seconds any one piece of database work may take, seen from the client: the
    server's statement timeout plus a connect, plus slack."""
    statement = settings.statement_timeout or 30.0
    return float(statement + settings.connect_timeout + 5.0)


class Service:
    name = "service"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.log = logging.getLogger(f"pgq.{self.name}")
        self._errors = LogWindow(self.log, 30.0)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    async def run_once(self) -> Any:  # pragma: no cover - every service overrides it
        raise NotImplementedError

    def next_interval(self) -> float:
        """Seconds until the next pass; services with a better idea override it."""
        return self.interval * random.uniform(0.9, 1.1)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except TRANSIENT as exc:
                text = str(exc).strip()
                self._errors.warning(
                    "%s: database unavailable, will retry: %s",
                    self.name,
                    text.splitlines()[0] if text else type(exc).__name__,
                )
                self.on_error()
            except Exception:
                self.log.exception("%s: pass failed; retrying in %.0f s", self.name, self.interval)
                self.on_error()
            else:
                self._errors.reset(f"{self.name}: database available again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.next_interval())

    def on_error(self) -> None:
        """Called after a failed pass (the sweeper uses it to note an outage)."""

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
