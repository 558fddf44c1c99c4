"""Retry delays."""

from __future__ import annotations

import random
from collections.abc import Callable

DEFAULT_BACKOFF = 2.0
#: No retry waits longer than a day, however many attempts came before.
MAX_DELAY = 24 * 3600.0


def retry_delay(attempt: int, backoff: float | Callable[[int], float] | None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (counting from 1).

    A number is the first delay, doubled each attempt, with ±20 % jitter so
    that jobs failing together do not retry together. A callable gets the
    attempt and returns the delay itself.
    """
    if callable(backoff):
        return max(0.0, min(float(backoff(attempt)), MAX_DELAY))
    base = DEFAULT_BACKOFF if backoff is None else float(backoff)
    delay = base * 2.0 ** min(max(attempt - 1, 0), 30)
    return min(delay * random.uniform(0.8, 1.2), MAX_DELAY)
