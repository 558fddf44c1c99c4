"""Enqueueing on pgq's own connections: defaults, options, keys, batches, reads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import pgq


def test_enqueue_by_name_uses_defaults(app: pgq.App, conn: psycopg.Connection[Any]) -> None:
    job_id = app.enqueue("send_welcome", {"user_id": 7, "email": "a@example.com"})
    row = conn.execute("select * from pgq.jobs where id = %s", [job_id]).fetchone()
    assert row is not None
    assert row["task"] == "send_welcome"
    assert row["args"] == {"user_id": 7, "email": "a@example.com"}
    assert (row["queue"], row["priority"], row["status"]) == ("default", 0, "pending")
    assert (row["attempts"], row["max_attempts"]) == (0, 3)
    assert row["run_at"] == row["created_at"]


def test_task_defaults_and_sugar(app: pgq.App, conn: psycopg.Connection[Any]) -> None:
    @app.task(queue="emails", priority=5, max_attempts=7, backoff=1.5, timeout=30)
    def send_welcome(user_id: int, email: str) -> None: ...

    job_id = send_welcome.enqueue(user_id=7, email="a@example.com")
    row = conn.execute("select * from pgq.jobs where id = %s", [job_id]).fetchone()
    assert row is not None
    assert (row["queue"], row["priority"], row["max_attempts"]) == ("emails", 5, 7)
    assert row["timeout"] == timedelta(seconds=30)
    assert row["backoff"] == 1.5
    # Per-job options win over the task's.
    other = send_welcome.options(queue="urgent", priority=9).enqueue(user_id=8, email="b@example.com")
    row = conn.execute("select queue, priority from pgq.jobs where id = %s", [other]).fetchone()
    assert row == {"queue": "urgent", "priority": 9}
    # Calling the task runs the function itself.
    assert send_welcome(user_id=1, email="x") is None


def test_delay_uses_database_clock(app: pgq.App, conn: psycopg.Connection[Any]) -> None:
    job_id = app.enqueue("later", delay=timedelta(minutes=5))
    row = conn.execute("select run_at - created_at as wait from pgq.jobs where id = %s", [job_id]).fetchone()
    assert row is not None and row["wait"] == timedelta(minutes=5)
    job_id = app.enqueue("later", delay=90)
    row = conn.execute("select run_at - created_at as wait from pgq.jobs where id = %s", [job_id]).fetchone()
    assert row is not None and row["wait"] == timedelta(seconds=90)


def test_run_at(app: pgq.App) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    job = app.get_job(app.enqueue("later", run_at=when))
    assert job is not None and job.run_at == when


def test_key_returns_existing_live_job(app: pgq.App, conn: psycopg.Connection[Any]) -> None:
    first = app.enqueue("welcome", {"user_id": 1}, key="welcome:1")
    assert app.enqueue("welcome", {"user_id": 1}, key="welcome:1") == first
    # Keys are unique per queue, not across queues.
    other_queue = app.enqueue("welcome", {"user_id": 1}, key="welcome:1", queue="other")
    assert other_queue != first
    # Once the holder is finished (moved to history), the key is free again.
    conn.execute(
        """with d as (delete from pgq.jobs where id = %s returning *)
           insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,
                                        run_at, created_at, key)
           select id, queue, task, args, priority, 'completed', 1, max_attempts, run_at, created_at, key from d""",
        [first],
    )
    again = app.enqueue("welcome", {"user_id": 1}, key="welcome:1")
    assert again not in (first, other_queue)
    finished = app.get_job(first)
    assert finished is not None and finished.status == "completed"


def test_eight_threads_same_key_create_one_job(database_url: str, conn: psycopg.Connection[Any]) -> None:
    app = pgq.App(database_url, pool_max_size=8)
    barrier = threading.Barrier(8)
    ids: list[int] = []
    errors: list[BaseException] = []

    def enqueue() -> None:
        try:
            barrier.wait()
            for _ in range(20):
                ids.append(app.enqueue("charge", {"order": 1}, key="charge:order-1"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    app.close()
    assert not errors
    assert len(ids) == 160 and len(set(ids)) == 1
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone() == {"n": 1}


def test_enqueue_many_ten_thousand(app: pgq.App, conn: psycopg.Connection[Any]) -> None:
    specs = [pgq.JobSpec("bulk", {"i": i}, priority=i % 3) for i in range(10_000)]
    ids = app.enqueue_many(specs)
    assert len(ids) == 10_000 and len(set(ids)) == 10_000
    rows = conn.execute("select id, args->>'i' as i, priority from pgq.jobs").fetchall()
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == 10_000
    # ids come back in the order of the specs
    for i, job_id in enumerate(ids):
        assert by_id[job_id]["i"] == str(i)
        assert by_id[job_id]["priority"] == i % 3


def test_enqueue_many_with_keys(app: pgq.App) -> None:
    held = app.enqueue("k", {"n": 0}, key="a")
    ids = app.enqueue_many(
        [
            pgq.JobSpec("k", {"n": 1}, key="a"),  # held by a live job
            pgq.JobSpec("k", {"n": 2}),
            pgq.JobSpec("k", {"n": 3}, key="b"),
            pgq.JobSpec("k", {"n": 4}, key="b"),  # same key twice in one batch
            pgq.JobSpec("k", {"n": 5}, key="a", queue="q2"),
            pgq.JobSpec("k", {"n": 6}, delay=30),
        ]
    )
    assert ids[0] == held
    assert ids[2] == ids[3]
    assert len({ids[1], ids[2], ids[4], ids[5], held}) == 5
    jobs = {job_id: app.get_job(job_id) for job_id in ids}
    assert jobs[ids[1]].args == {"n": 2}  # type: ignore[union-attr]
    assert jobs[ids[2]].args == {"n": 3}  # type: ignore[union-attr]
    assert jobs[ids[4]].queue == "q2"  # type: ignore[union-attr]
    assert app.enqueue_many([]) == []


def test_get_job_and_list_jobs(app: pgq.App) -> None:
    ids = [app.enqueue("a" if i % 2 else "b", {"i": i}, queue="q1" if i < 3 else "q2") for i in range(6)]
    assert app.get_job(999_999) is None
    job = app.get_job(ids[0])
    assert job is not None and job.args == {"i": 0} and job.status == "pending" and not job.is_finished
    assert [j.id for j in app.list_jobs()] == ids[::-1]
    assert [j.id for j in app.list_jobs(queue="q1")] == ids[:3][::-1]
    assert [j.id for j in app.list_jobs(task="a")] == [ids[5], ids[3], ids[1]]
    page = app.list_jobs(limit=2)
    assert [j.id for j in page] == [ids[5], ids[4]]
    assert [j.id for j in app.list_jobs(limit=2, before_id=page[-1].id)] == [ids[3], ids[2]]
    with pytest.raises(pgq.ConfigurationError, match="status must be one of"):
        app.list_jobs(status="done")


async def test_enqueue_async(app: pgq.App) -> None:
    @app.task
    async def resize(url: str) -> dict[str, str]:
        return {"url": url}

    first = await resize.enqueue_async(url="a.png")
    second = await app.enqueue_async("resize", {"url": "b.png"}, key="b")
    assert await app.enqueue_async("resize", {"url": "b.png"}, key="b") == second
    ids = await app.enqueue_many_async([pgq.JobSpec("resize", {"url": "c.png"})])
    assert len({first, second, *ids}) == 3
    await app.aclose()


def test_a_misspelt_option_is_an_error_naming_it_and_writes_nothing(app: pgq.App) -> None:
    # The options are declared once (pgq.EnqueueOptions, pgq.bulk.JobFilterOptions) and
    # taken as **options: a name that is not one of them must still fail loudly.
    with pytest.raises(
        TypeError, match=r"^enqueue\(\) got an unexpected keyword argument 'qeue'; its options: queue, "
    ):
        app.enqueue("t", {}, qeue="emails")  # type: ignore[call-arg]
    with pytest.raises(
        TypeError, match=r"^list_jobs\(\) got an unexpected keyword argument 'stauts'; its options: status"
    ):
        app.list_jobs(stauts="failed")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^bulk\(\) got an unexpected keyword argument 'stauts'"):
        app.bulk("cancel", stauts="pending")  # type: ignore[call-arg]
    assert app.list_jobs() == []
