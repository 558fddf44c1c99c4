"""The sweeper's metrics rows count every finished job exactly once, however far apart sweeps are.

Each row covers what finished between the previous row of any queue and its own
`at`; a queue seen for the first time, sweeps 15 s or 5 minutes apart, and
finishes that commit while a sweep reads must all add up to the history.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

import pgq
from pgq.maintenance.metrics import METRICS_LAG
from pgq.maintenance.sweeper import Sweeper
from tests.rows import add_history


def history(conn: Any, queue: str, status: str, at: datetime) -> None:
    add_history(conn, queue=queue, status=status, finished=at, run=1, wait=1)


def totals(conn: Any, table: str) -> dict[tuple[str, str], int]:
    if table == "metrics":
        rows = conn.execute(
            """select queue, 'completed' as status, sum(completed) as n from pgq.metrics group by queue
               union all select queue, 'failed', sum(failed) from pgq.metrics group by queue
               union all select queue, 'cancelled', sum(cancelled) from pgq.metrics group by queue"""
        ).fetchall()
    else:
        rows = conn.execute("select queue, status, count(*) as n from pgq.job_history group by queue, status")
    return {(r["queue"], r["status"]): int(r["n"]) for r in rows if r["n"]}


async def test_irregular_sweeps_count_every_job_once(database_url: str, conn: Any) -> None:
    """Sweeps placed 3 s, 14.7 s, 0.3 s, 42 s and 4 minutes apart; a queue first seen late."""
    now = conn.execute("select now() as now").fetchone()["now"]
    base = now - timedelta(minutes=20)
    rnd = random.Random(7)
    for i in range(250):  # 'fast': 250 jobs over 10 minutes
        history(conn, "fast", "failed" if i % 25 == 0 else "completed", base + timedelta(seconds=i * 2.4))
    for i in range(12):  # 'wf': a queue whose jobs only finish after several sweeps
        history(conn, "wf", "completed", base + timedelta(seconds=400 + i * 7.3))
    history(conn, "rare", "cancelled", base - timedelta(hours=3))  # in the first row's 24 hours

    app = pgq.App(database_url)
    sweeper = Sweeper(app)
    try:
        conn_ = await sweeper.election.connection()
        at = base - timedelta(seconds=30)
        for gap in (0.0, 3.0, 14.7, 0.3, 42.0, 240.0, 14.7, 14.7, 61.0, 300.0, 1.0, 500.0):
            at += timedelta(seconds=gap + rnd.random())
            await sweeper.metrics.run_once(conn_, now=at)
        # The last sweep is after every finish: together the rows are the history.
        assert at - timedelta(seconds=METRICS_LAG) > base + timedelta(seconds=600)
    finally:
        await sweeper.close()
        app.close()
    assert totals(conn, "metrics") == totals(conn, "job_history")
    windows = conn.execute(
        "select at, min(interval_seconds) as lo, max(interval_seconds) as hi from pgq.metrics group by at order by at"
    ).fetchall()
    assert all(w["lo"] == w["hi"] for w in windows), "every queue's row of one sweep covers the same window"
    for earlier, later in itertools.pairwise(windows):
        # each window starts where the previous one ended: no gap, no overlap
        assert later["at"] - timedelta(seconds=later["lo"]) == earlier["at"]


@pytest.mark.slow
async def test_finishes_committing_during_sweeps_are_counted_once(database_url: str, conn: Any) -> None:
    """Real clock: jobs finish in transactions that commit up to 0.4 s after their finished_at,
    while sweeps run 0.05 to 0.8 s apart."""
    stop = threading.Event()
    finished = 0

    def finisher() -> None:
        nonlocal finished
        rnd = random.Random(3)
        with psycopg.connect(database_url) as slow:
            while not stop.is_set():
                with slow.transaction():
                    slow.execute(
                        """insert into pgq.job_history (id, queue, task, args, priority, status, attempts,
                                                        max_attempts, run_at, created_at, started_at, finished_at)
                           values (nextval(pg_get_serial_sequence('pgq.jobs', 'id')), %s, 't', '{}', 0,
                                   'completed', 1, 3, now(), now(), now(), now())""",
                        [rnd.choice(["a", "b", "c"])],
                    )
                    slow.execute("select pg_sleep(%s)", [rnd.random() * 0.4])
                finished += 1

    thread = threading.Thread(target=finisher, daemon=True)
    app = pgq.App(database_url)
    sweeper = Sweeper(app)
    rnd = random.Random(11)
    try:
        sweep_conn = await sweeper.election.connection()
        thread.start()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            await sweeper.metrics.run_once(sweep_conn)
            time.sleep(0.05 + rnd.random() * 0.75)
        stop.set()
        thread.join(10)
        time.sleep(METRICS_LAG + 0.2)
        await sweeper.metrics.run_once(sweep_conn)
    finally:
        stop.set()
        await sweeper.close()
        app.close()
    assert finished > 10
    assert totals(conn, "metrics") == totals(conn, "job_history")
    assert sum(totals(conn, "metrics").values()) == finished


async def test_prometheus_window_agrees_with_the_job_counts(database_url: str, conn: Any) -> None:
    """pgq_jobs_completed_24h (the rows) and pgq_jobs{state="completed"} (the history) agree."""
    pytest.importorskip("prometheus_client")
    from pgq.web.metrics import registry_for, render

    now = conn.execute("select now() as now").fetchone()["now"]
    for i in range(30):
        history(conn, "fast", "completed", now - timedelta(minutes=30) + timedelta(seconds=i * 40))
    app = pgq.App(database_url)
    sweeper = Sweeper(app)
    try:
        sweep_conn = await sweeper.election.connection()
        await sweeper.metrics.run_once(sweep_conn, now=now - timedelta(minutes=25))  # a first row, early
        history(conn, "wf", "completed", now - timedelta(minutes=10))  # a queue the first row did not know
        await sweeper.metrics.run_once(sweep_conn)
        text = render(registry_for(app)).decode()
    finally:
        await sweeper.close()
        app.close()
    assert 'pgq_jobs_completed_24h{queue="fast"} 30.0' in text
    assert 'pgq_jobs{queue="fast",state="completed"} 30.0' in text
    assert 'pgq_jobs_completed_24h{queue="wf"} 1.0' in text
