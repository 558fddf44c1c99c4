"""What a worker process runs on: its event loop, and its garbage collector's pace.

uvloop implements the loop, its handles and its selector in C: on no-op jobs
it took about 2 us off the worker's time per job (task creation and
scheduling, and the reader registration psycopg does for every statement).
It is an optional dependency (``pgq-jobs[fast]``); without it, or with
``PGQ_EVENT_LOOP=asyncio``, the worker runs on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import gc
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


#: Allocations between two collections of the youngest generation (CPython's default: 700).
GC_THRESHOLD = 50_000


def tune_gc() -> None:
    """Set the garbage collector's pace for a process that is a worker and nothing else.

    Each job allocates a few dozen objects (a task, its coroutine, the Job, the
    outcome), so at CPython's default a young collection ran every few dozen
    jobs, and older ones scanned every object the imports had made. Measured
    on the executor's path for a no-op job: 10.4 us at the default, 5.9 us with
    a young generation of 50,000. Objects alive now (modules, the app) are
    moved out of the collector's sight first (``gc.freeze``): they live as long
    as the process. Called by ``App.run_worker`` (``pgq worker``) only: a
    worker inside your own process leaves your collector alone.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, middle, old)
