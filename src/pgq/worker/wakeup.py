"""A flag a loop sleeps on, with a timeout, in one event-loop hop.

``asyncio.wait_for(event.wait(), t)`` wraps the wait in a task of its own: a
wake-up then costs two scheduling rounds and two allocations before the waiter
runs again. The producer sleeps and wakes once per claim, and a notification's
latency is what users see, so it gets a plain future and a timer instead.
"""

from __future__ import annotations

import asyncio


class Wakeup:
    """Set from callbacks (a notification, a freed slot, a stop); awaited by one loop."""

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float | None = None) -> bool:
        """Until set (True, and it stays set until cleared) or ``timeout`` seconds pass (False)."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return self._set


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
