"""Cron with three workers whose clocks are skewed by -90 s, 0 and +90 s (libfaketime).

pgq takes every time from the database, so the skew must change nothing: one
job per tick, one catch-up job after downtime, and a schedule edited at run
time takes effect."""

from __future__ import annotations

import glob
import itertools
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import pgq
from tests.processes import WorkerProcess, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

LIBFAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)
CRON_APP = "tests.apps.cron:app"


def skewed(offset: str) -> dict[str, str]:
    assert LIBFAKETIME is not None
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def ticks(db: Any) -> list[Any]:
    return [row["run_at"] for row in db.execute("select run_at from pgq.all_jobs order by run_at")]


def stop(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(30) == 0, worker.output()[-2000:]


def test_skewed_clocks_change_nothing(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess], reliability: Callable[..., None]
) -> None:
    if LIBFAKETIME is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    offsets = ("-90", "+0", "+90")
    workers = [start_worker(app=CRON_APP, env=skewed(offset)) for offset in offsets]
    # The skew is real: each process's own clock is off by its offset.
    time.sleep(12)
    stop(workers)
    first = ticks(db)
    assert len(first) == len(set(first)) and 4 <= len(first) <= 7, first
    assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(first))

    stopped_at = db.execute("select now() as now").fetchone()["now"]
    time.sleep(8)  # four ticks missed
    workers = [start_worker(app=CRON_APP, env=skewed(offset)) for offset in offsets]
    wait_for(lambda: len(ticks(db)) >= len(first) + 3, 30, "ticks after the restart")
    caught_up = [t for t in ticks(db)[len(first) :] if t <= stopped_at + timedelta(seconds=8)]
    assert len(caught_up) == 1, caught_up

    # Edit the schedule at run time: every 5 seconds from now on.
    app = pgq.App(database_url)
    app.add_schedule("every_two_seconds", "*/5 * * * * *", "every_two_seconds")
    edited_at = db.execute("select now() as now").fetchone()["now"]
    time.sleep(12)
    stop(workers)
    later = [t for t in ticks(db) if t > edited_at]
    assert len(later) == len(set(later)) >= 2, later
    assert all(t.second % 5 == 0 for t in later), later
    reliability(clock_offsets=list(offsets), ticks=len(ticks(db)), duplicate_ticks=len(ticks(db)) - len(set(ticks(db))))
    app.close()
