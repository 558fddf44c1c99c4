"""The fast lane (``@app.task(durable=False)``): jobs in this process, never in the database."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import pgq
from pgq.events import Event


def overlap_probe(app: pgq.App, concurrency: int, seconds: float) -> tuple[Any, Callable[[], int]]:
    """A fast-lane task ``slow`` that sleeps ``seconds``, and the most of its jobs seen running at once."""
    running = 0
    most = 0
    lock = threading.Lock()

    @app.task(durable=False, concurrency=concurrency, name="slow")
    def slow() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(seconds)
        with lock:
            running -= 1

    return slow, lambda: most


def test_fast_jobs_run_in_process_and_never_touch_the_database(app: pgq.App, conn: Any) -> None:
    done: list[int] = []
    seen: list[tuple[str, int]] = []

    @app.task(durable=False, concurrency=3)
    def warm(page: int) -> int:
        done.append(page)
        return page * 2

    for name in ("job_started", "job_completed"):
        app.on(name, lambda event: seen.append((event.name, event.job.id)))
    ids = [warm.enqueue(page=n) for n in range(20)]
    assert all(job_id < 0 for job_id in ids) and len(set(ids)) == 20  # they name no row
    assert app.fast_lane.drain(10)
    assert sorted(done) == list(range(20))
    assert sorted(i for name, i in seen if name == "job_completed") == sorted(ids)
    assert app.fast_lane.stats() == {"enqueued": 20, "started": 20, "completed": 20, "live": 0}
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 0
    assert conn.execute("select count(*) as n from pgq.job_history").fetchone()["n"] == 0
    assert app.get_job(ids[0]) is None


def test_concurrency_rate_and_batches() -> None:
    app = pgq.App("postgresql://nobody@127.0.0.1:1/nothing")  # no database at all
    starts: list[float] = []
    batches: list[int] = []
    slow, most = overlap_probe(app, concurrency=2, seconds=0.05)

    @app.task(durable=False, concurrency=1, rate="20/s")
    async def paced() -> None:
        starts.append(time.monotonic())

    @app.task(durable=False, batch_size=5, batch_wait=0.2)
    def thumbnails(jobs: list[pgq.Job]) -> list[Any]:
        batches.append(len(jobs))
        return [job.args["n"] for job in jobs]

    try:
        for _ in range(8):
            slow.enqueue()
        for _ in range(5):
            paced.enqueue()
        for n in range(12):
            thumbnails.enqueue(n=n)
        assert app.fast_lane.drain(10)
        assert most() == 2
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert len(starts) == 5 and min(gaps) >= 0.04  # 20 a second: one start every 50 ms
        assert sum(batches) == 12 and max(batches) == 5
    finally:
        app.close()


def test_retries_in_memory_then_failed_for_good() -> None:
    app = pgq.App("postgresql://nobody@127.0.0.1:1/nothing")
    events: list[tuple[str, int]] = []
    attempts = 0

    @app.task(durable=False, max_attempts=3, backoff=0.01)
    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("cache server away")

    @app.task(durable=False, timeout=0.05)
    async def stuck() -> None:
        await asyncio.sleep(5)

    def record(event: Event) -> None:
        events.append((event.name, event.job.attempts))

    for name in ("job_retrying", "job_failed"):
        app.on(name, record)
    try:
        flaky.enqueue()
        assert app.fast_lane.drain(10)
        assert attempts == 3 and events == [("job_retrying", 1), ("job_retrying", 2), ("job_failed", 3)]
        stuck.enqueue()
        assert app.fast_lane.drain(10)
        stats = app.fast_lane.stats()
        assert stats["failed"] == 2 and stats["retried"] == 4 and stats["live"] == 0  # stuck: 3 timeouts
    finally:
        app.close()


def test_what_a_fast_task_cannot_take() -> None:
    app = pgq.App("postgresql://nobody@127.0.0.1:1/nothing")

    def fn() -> None: ...

    with pytest.raises(pgq.ConfigurationError, match="durable=False cannot take pass_context=True"):
        app.task(durable=False, pass_context=True, name="a")(fn)
    with pytest.raises(pgq.ConfigurationError, match="durable=False cannot take transactional=True"):
        app.task(durable=False, transactional=True, name="b")(fn)
    with pytest.raises(pgq.ConfigurationError, match="concurrency= and rate= are for durable=False tasks"):
        app.task(concurrency=3, name="c")(fn)
    with pytest.raises(pgq.ConfigurationError, match="rate"):
        app.task(durable=False, rate="often", name="d")(fn)
    fast = app.task(durable=False, name="fast")(fn)
    with pytest.raises(pgq.ConfigurationError, match="take no key"):
        app.enqueue("fast", key="k")
    with pytest.raises(pgq.ConfigurationError, match="take no connection"):
        app.enqueue("fast", connection=object())
    with pytest.raises(pgq.ConfigurationError, match="enqueue_many writes jobs to the database"):
        app.enqueue_many([fast.spec()])
    with pytest.raises(pgq.ConfigurationError, match="a schedule's ticks are jobs in the database"):
        app.periodic(cron="* * * * *")(fast)
    with pytest.raises(pgq.InvalidJob, match="unexpected keyword argument"):
        app.enqueue("fast", {"nope": 1})  # args are checked as for a durable task
    app.close()


def test_close_drops_what_waits_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    app = pgq.App("postgresql://nobody@127.0.0.1:1/nothing")

    @app.task(durable=False)
    def later() -> None: ...

    app.enqueue("later", delay=60)
    app.close()
    assert app.fast_lane.stats()["dropped"] == 1 and "1 jobs that had not ended were dropped" in caplog.text
    later.enqueue()  # the next enqueue starts the lane again
    assert app.fast_lane.drain(10)
    app.close()


def test_many_threads_enqueue_into_one_lane_per_task() -> None:
    app = pgq.App("postgresql://nobody@127.0.0.1:1/nothing")
    slow, most = overlap_probe(app, concurrency=2, seconds=0.02)

    def enqueue() -> None:
        for _ in range(10):
            slow.enqueue()

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert app.fast_lane.drain(20)
        assert app.fast_lane.stats()["completed"] == 80 and most() == 2  # the task's concurrency, not twice it
    finally:
        app.close()
