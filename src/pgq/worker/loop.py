"""The event loop a worker process runs on: uvloop when it is there, unless told otherwise.

uvloop implements the loop, its handles and its selector in C: on no-op jobs
it took a third off the worker's Python time per job (task creation and
scheduling, and the reader registration psycopg does for every statement).
It is an optional dependency (``pgq-jobs[fast]``); without it, or with
``PGQ_EVENT_LOOP=asyncio``, the worker runs on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

from pgq.errors import ConfigurationError


def new_event_loop(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory of the loop ``choice`` names (``auto``, ``uvloop`` or ``asyncio``)."""
    if choice == "asyncio" or (choice == "auto" and importlib.util.find_spec("uvloop") is None):
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        raise ConfigurationError(
            "PGQ_EVENT_LOOP=uvloop but uvloop is not installed: pip install 'pgq-jobs[fast]', "
            "or set PGQ_EVENT_LOOP=auto (uvloop when installed) or asyncio"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
