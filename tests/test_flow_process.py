"""Flow control with real `pgq worker` processes. Every limit is checked from
job_history's own timestamps (started_at is the claim, finished_at the
finish: exactly the span in which a job counts as running), never from
wall-clock sleeps in the test."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

import pgq
from tests.processes import WorkerProcess, count, wait_for

pytestmark = pytest.mark.slow


def spans(db: Any, queue: str, group: str | None = None) -> list[tuple[datetime, datetime, int]]:
    rows = db.execute(
        "select started_at, finished_at, id from pgq.job_history"
        " where queue = %s and status = 'completed' and (cast(%s as text) is null or group_key = %s)"
        " order by started_at, id",
        [queue, group, group],
    ).fetchall()
    return [(r["started_at"], r["finished_at"], r["id"]) for r in rows]


def most_at_once(intervals: list[tuple[datetime, datetime, int]]) -> int:
    """The most intervals open at one instant (an end at t comes before a start at t)."""
    events = sorted([(s, 1) for s, _, _ in intervals] + [(f, -1) for _, f, _ in intervals])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def completed(db: Any, queue: str) -> int:
    return count(db, "select count(*) as n from pgq.job_history where queue = %s and status = 'completed'", queue)


def test_three_workers_with_a_global_limit_of_2(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = pgq.App(database_url)
    app.set_queue("limited", concurrency=2)
    for _ in range(3):
        start_worker("--queues", "limited", "--concurrency", "4")
    wait_for(lambda: count(db, "select count(*) as n from pgq.workers where status = 'running'") == 3, 30, "3 workers")
    app.enqueue_many([pgq.JobSpec("sleepy", {"seconds": 0.2}, queue="limited") for _ in range(12)])
    wait_for(lambda: completed(db, "limited") == 12, 60, "12 completed jobs")
    intervals = spans(db, "limited")
    assert most_at_once(intervals) == 2, intervals
    app.close()


def test_a_rate_of_10_per_second(db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]) -> None:
    app = pgq.App(database_url)
    app.set_queue("rated", rate="10/s")
    app.enqueue_many([pgq.JobSpec("record", queue="rated") for _ in range(30)])
    for _ in range(3):
        start_worker("--queues", "rated", "--concurrency", "4")
    wait_for(lambda: completed(db, "rated") == 30, 60, "30 completed jobs")
    starts = [s for s, _, _ in spans(db, "rated")]
    # Never more than 10 starts in any 1 s window: the 11th start after any start is >= 1 s later.
    for first, eleventh in zip(starts, starts[10:], strict=False):
        assert (eleventh - first).total_seconds() >= 1.0, starts
    # Evenly spaced (no burst at a period's edge), and still about 10/s overall.
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.1, gaps
    rate = (len(starts) - 1) / (starts[-1] - starts[0]).total_seconds()
    assert rate >= 7.0, (rate, gaps)
    app.close()


def test_a_small_group_is_not_starved_by_a_big_one(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = pgq.App(database_url)
    app.set_queue("tenants", group_concurrency=100)
    app.enqueue_many([pgq.JobSpec("record", queue="tenants", group="big") for _ in range(1000)])
    small = app.enqueue_many([pgq.JobSpec("record", queue="tenants", group="small") for _ in range(10)])
    start_worker("--queues", "tenants", "--concurrency", "8")
    wait_for(
        lambda: count(db, "select count(*) as n from pgq.job_history where id = any(%s)", small) == 10,
        60,
        "the small group's 10 jobs",
    )
    last_small = db.execute("select max(finished_at) as t from pgq.job_history where id = any(%s)", [small]).fetchone()
    big_before = count(
        db,
        "select count(*) as n from pgq.job_history where group_key = 'big' and started_at <= %s",
        last_small["t"],
    )
    # Oldest first would run all 1,000 of the big group first; round-robin gives the
    # small group a slot in every claim.
    assert big_before < 200, big_before
    app.close()


def test_a_group_at_concurrency_1_keeps_enqueue_order(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = pgq.App(database_url)
    app.set_queue("ordered", group_concurrency=1)
    specs = []
    for i in range(20):
        specs += [pgq.JobSpec("record", {"n": i}, queue="ordered", group=g) for g in ("a", "b")]
    ids = app.enqueue_many(specs)
    for _ in range(2):
        start_worker("--queues", "ordered", "--concurrency", "4")
    wait_for(lambda: completed(db, "ordered") == 40, 60, "40 completed jobs")
    for group, offset in (("a", 0), ("b", 1)):
        intervals = spans(db, "ordered", group)
        assert [job_id for _, _, job_id in intervals] == ids[offset::2]
        assert most_at_once(intervals) == 1, intervals
    assert most_at_once(spans(db, "ordered")) == 2  # the two groups did run side by side
    app.close()


def test_limits_changed_at_run_time_apply_without_a_restart(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = pgq.App(database_url)
    app.set_queue("live", concurrency=1)
    app.enqueue_many([pgq.JobSpec("sleepy", {"seconds": 0.3}, queue="live") for _ in range(15)])
    for _ in range(3):
        start_worker("--queues", "live", "--concurrency", "4", "--poll-interval", "30")
    wait_for(lambda: completed(db, "live") >= 3, 60, "3 completed jobs")
    app.set_queue("live", concurrency=3)
    changed = db.execute("select updated_at from pgq.queues where name = 'live'").fetchone()["updated_at"]
    wait_for(lambda: completed(db, "live") == 15, 60, "15 completed jobs")
    intervals = spans(db, "live")
    before = [i for i in intervals if i[0] < changed]
    after = [i for i in intervals if i[0] >= changed]
    assert most_at_once(before) == 1
    # Only the notification can have told the workers (they poll every 30 s).
    assert most_at_once(after) == 3, intervals
    app.close()
