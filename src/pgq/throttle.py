"""Bounded logging: while the database is away, one line per window, not per try."""

from __future__ import annotations

import logging
import time
from typing import Any


class LogWindow:
    """Logs the first failure at once, then at most one line per ``window`` seconds
    with the number of failures in between; :meth:`reset` logs the recovery."""

    def __init__(self, logger: logging.Logger, window: float) -> None:
        self.logger = logger
        self.window = window
        self.count = 0
        self._last = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        self.count += 1
        now = time.monotonic()
        if self.count == 1 or now - self._last >= self.window:
            extra = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
            self.logger.warning(message + extra, *args)
            self._last = now
            self._suppressed = 0
        else:
            self._suppressed += 1

    def reset(self, recovered: str | None = None) -> None:
        if self.count and recovered:
            self.logger.warning(recovered)
        self.count = 0
        self._suppressed = 0
