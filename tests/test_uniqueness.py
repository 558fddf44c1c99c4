"""Keys beyond the live job (issue 10): unique_for and debounce.

Both are decided under a row lock on the key's row in pgq.job_keys (a primary
key, never an advisory lock), so concurrent enqueuers of one key take turns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgq
from pgq.testing import drain


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Call fn(i) from n threads released together; return the results (or exceptions)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_unique_for_holds_after_the_job_finished(app: pgq.App, conn: Any) -> None:
    @app.task
    def report(day: str) -> str:
        return day

    first = app.enqueue("report", {"day": "mon"}, key="daily", unique_for=timedelta(hours=1))
    assert app.enqueue("report", {"day": "tue"}, key="daily", unique_for=3600) == first
    drain(app)
    assert conn.execute("select status from pgq.job_history where id = %s", [first]).fetchone()["status"] == "completed"
    # Finished, but younger than the period: still the same job, nothing new.
    assert app.enqueue("report", {"day": "wed"}, key="daily", unique_for=3600) == first
    assert app.enqueue_many([pgq.JobSpec("report", {"day": "thu"}, key="daily", unique_for=3600)]) == [first]
    # A plain key (no unique_for) only looks at live jobs: it makes a new one.
    plain = app.enqueue("report", {"day": "fri"}, key="daily")
    assert plain != first
    # The period has passed (made so in the database): a new job takes the key.
    drain(app)
    conn.execute("update pgq.job_keys set expires_at = now() - interval '1 s'")
    second = app.enqueue("report", {"day": "sat"}, key="daily", unique_for=3600)
    assert second not in (first, plain)
    # Keys are per queue.
    assert app.enqueue("report", {"day": "sun"}, key="daily", unique_for=3600, queue="other") != second


def test_unique_for_under_8_concurrent_enqueuers(app: pgq.App, conn: Any) -> None:
    for round_ in range(3):
        key = f"k{round_}"
        ids = race(8, lambda i, key=key: app.enqueue("t", {"i": i}, key=key, unique_for=60))
        assert all(isinstance(i, int) for i in ids), ids
        assert len(set(ids)) == 1
        # The winner runs and finishes; a second race still gets it.
        drain(app)
        again = race(8, lambda i, key=key: app.enqueue("t", {"i": i}, key=key, unique_for=60))
        assert set(again) == set(ids)
    assert conn.execute("select count(*) as n from pgq.all_jobs").fetchone()["n"] == 3
    # The same through enqueue_many, each batch naming the key twice.
    batches = race(
        8,
        lambda i: app.enqueue_many(
            [pgq.JobSpec("t", {"i": i}, key="m", unique_for=60), pgq.JobSpec("t", {"i": i}, key="m", unique_for=60)]
        ),
    )
    assert len({job_id for batch in batches for job_id in batch}) == 1, batches
    assert conn.execute("select count(*) as n from pgq.all_jobs where key = 'm'").fetchone()["n"] == 1


def test_debounce_replaces_args_and_pushes_run_at(app: pgq.App, conn: Any) -> None:
    first = app.enqueue("t", {"n": 1}, key="search-index", debounce=30)
    row = conn.execute("select args, run_at - now() as wait from pgq.jobs where id = %s", [first]).fetchone()
    assert row["args"] == {"n": 1} and timedelta(seconds=25) < row["wait"] <= timedelta(seconds=30)
    conn.execute("update pgq.jobs set run_at = now() + interval '5 s' where id = %s", [first])
    assert app.enqueue("t", {"n": 2}, key="search-index", debounce=timedelta(seconds=60)) == first
    row = conn.execute("select args, run_at - now() as wait from pgq.jobs where id = %s", [first]).fetchone()
    assert row["args"] == {"n": 2} and row["wait"] > timedelta(seconds=55)
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 1
    # A running holder gives its key up: the next enqueue makes a new job.
    conn.execute("update pgq.jobs set status = 'running', attempts = 1 where id = %s", [first])
    second = app.enqueue("t", {"n": 3}, key="search-index", debounce=1)
    assert second != first
    keys = conn.execute("select id, key from pgq.jobs order by id").fetchall()
    assert keys == [{"id": first, "key": None}, {"id": second, "key": "search-index"}]


def test_debounce_under_8_concurrent_enqueuers(app: pgq.App, conn: Any) -> None:
    ids = race(8, lambda i: app.enqueue("t", {"i": i}, key="d", debounce=60))
    assert all(isinstance(i, int) for i in ids), ids
    assert len(set(ids)) == 1
    rows = conn.execute("select args from pgq.jobs where key = 'd'").fetchall()
    assert len(rows) == 1
    # The args are those of the enqueuer that went last (whichever it was).
    assert rows[0]["args"]["i"] in range(8)
    batches = race(8, lambda i: app.enqueue_many([pgq.JobSpec("t", {"i": i}, key="d", debounce=60)]))
    assert {b[0] for b in batches} == set(ids)
    assert conn.execute("select count(*) as n from pgq.all_jobs").fetchone()["n"] == 1


def test_keys_in_a_callers_transaction_wait_for_it(database_url: str, app: pgq.App, conn: Any) -> None:
    import time

    with psycopg.connect(database_url) as own:
        mine = app.enqueue("t", key="tx", unique_for=60, connection=own)
        # Another enqueuer of the key waits on the key's row lock until this
        # transaction ends, then finds its job.
        other: list[Any] = []
        thread = threading.Thread(target=lambda: other.append(app.enqueue("t", key="tx", unique_for=60)))
        thread.start()
        for _ in range(400):
            waiting = conn.execute(
                "select count(*) as n from pg_stat_activity"
                " where wait_event_type = 'Lock' and datname = current_database()"
            ).fetchone()["n"]
            if waiting:
                break
            time.sleep(0.05)
        assert waiting == 1 and not other
        own.commit()
        thread.join(timeout=30)
    assert other == [mine]


def test_bad_key_options_are_refused(app: pgq.App, conn: Any) -> None:
    for kwargs, message in [
        ({"unique_for": 60}, "unique_for needs a key"),
        ({"debounce": 5}, "debounce needs a key"),
        ({"key": "k", "unique_for": 0}, "more than 0 s"),
        ({"key": "k", "unique_for": -1}, "more than 0 s"),
        ({"key": "k", "unique_for": "1h"}, "seconds \\(a number\\) or a timedelta"),
        ({"key": "k", "debounce": timedelta(days=4000)}, "at most ten years"),
        ({"key": "k", "unique_for": 5, "debounce": 5}, "give unique_for or debounce, not both"),
        ({"key": "k", "debounce": 5, "delay": 3}, "debounce sets the job's run time"),
    ]:
        with pytest.raises(pgq.InvalidJob, match=message):
            app.enqueue("t", **kwargs)
    assert conn.execute("select count(*) as n from pgq.all_jobs").fetchone()["n"] == 0
