"""Every way a job leaves pgq.jobs keeps every column in pgq.job_history (issue 15 item 6).

A trigger installed by the test copies each row deleted from jobs, whole, as it was
just before it left. After each path (a worker's finish, a cancel, the sweeper's
rescue of a dead worker's job and of a job past its timeout, a full queue or group
dropping its oldest job, a parent's failure cancelling its child), the history row
must hold every column of that copy unchanged, except those the path changes by rule:
status, finished_at, result; errors gains at most one entry; a completed job's
progress becomes 1; a cancel stamps cancel_requested_at. The rows are built with a
value in every column, so a column a path forgets shows as a difference. A retry,
the way back, is checked the same way.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import pgq
from pgq.maintenance.sweeper import Sweeper
from tests.processes import wait_for
from tests.rows import add_worker

pytestmark = pytest.mark.faults

#: Columns of jobs that are bookkeeping of the live table only.
LIVE_ONLY = {"has_children", "limit_slot"}
#: Columns a move to history sets by rule (checked separately below).
RULED = {"status", "finished_at", "result", "errors", "progress", "cancel_requested_at"}

CAPTURE = """
create table test_left_jobs (id bigint, old jsonb);
create function test_capture_left() returns trigger language plpgsql as $$
begin
    insert into test_left_jobs values (old.id, to_jsonb(old));
    return null;
end $$;
create trigger test_capture_left after delete on pgq.jobs for each row execute function test_capture_left();
"""


@pytest.fixture
def captured(request: pytest.FixtureRequest, conn: Any, reliability: Callable[..., None]) -> Iterator[Any]:
    conn.execute(CAPTURE)
    yield conn
    # For --reliability-report: how many jobs left by this path, each compared column by column.
    moved = conn.execute("select count(*) as n from test_left_jobs").fetchone()["n"]
    reliability(case=request.node.name, jobs_moved=moved, columns=len(job_columns(conn, "jobs")))


def job_columns(conn: Any, table: str) -> list[str]:
    rows = conn.execute(
        "select column_name from information_schema.columns where table_schema = 'pgq' and table_name = %s",
        [table],
    ).fetchall()
    return [row["column_name"] for row in rows]


def test_history_has_every_column_of_jobs(conn: Any) -> None:
    """A column added to jobs must be added to history (or declared live-only here)."""
    missing = set(job_columns(conn, "jobs")) - set(job_columns(conn, "job_history")) - LIVE_ONLY
    assert not missing, f"jobs columns without a job_history column: {sorted(missing)}"


def check_moved(conn: Any, job_id: int, status: str, *, cancelled: bool = False) -> dict[str, Any]:
    """The history row of ``job_id`` against the row it was in jobs; returns the history row."""
    left = conn.execute("select old from test_left_jobs where id = %s", [job_id]).fetchall()
    assert len(left) == 1, f"job {job_id} left jobs {len(left)} times"
    old = left[0]["old"]
    new = conn.execute("select to_jsonb(h) as new from pgq.job_history h where id = %s", [job_id]).fetchone()["new"]
    assert new["status"] == status
    for column in set(old) - LIVE_ONLY - RULED:
        assert new[column] == old[column], f"job {job_id} ({status}): {column} was {old[column]!r}, is {new[column]!r}"
    assert new["errors"][: len(old["errors"])] == old["errors"] and len(new["errors"]) - len(old["errors"]) <= 1
    assert new["progress"] == (1 if status == "completed" else old["progress"])
    if not (cancelled and old["cancel_requested_at"] is None):
        assert new["cancel_requested_at"] == old["cancel_requested_at"]
    assert new["finished_at"] is not None
    return dict(new)


def filled(conn: Any, **values: Any) -> dict[str, Any]:
    """The columns of a live job, every one with a value (unless overridden)."""
    parent = conn.execute(
        """insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,
                                        run_at, created_at, finished_at)
           values (nextval('pgq.jobs_id_seq'), 'q', 'parent', '{}', 0, 'completed', 1, 3, now(), now(), now())
           returning id"""
    ).fetchone()["id"]
    row = {
        "queue": "q",
        "task": "work",
        "args": json.dumps({"user": 7, "tags": ["a", "b"]}),
        "priority": 7,
        "status": "pending",
        "attempts": 1,
        "max_attempts": 5,
        "key": f"key-{uuid.uuid4().hex[:8]}",
        "group_key": "tenant:42",
        "progress": 0.25,
        "progress_message": "a quarter",
        "errors": json.dumps([{"attempt": 1, "type": "Boom", "message": "first try"}]),
        "timeout": timedelta(seconds=30),
        "backoff": 1.5,
        "depends_on": [parent],
        "on_parent_failure": "run",
        "snoozes": 3,
        "tags": ["tenant:42", "import"],
        "meta": json.dumps({"requested_by": "ops", "ticket": 12}),
    }
    row.update(values)
    return row


def insert(conn: Any, row: dict[str, Any]) -> int:
    columns = ", ".join(row)
    marks = ", ".join(f"%({name})s" for name in row)
    return int(conn.execute(f"insert into pgq.jobs ({columns}) values ({marks}) returning id", row).fetchone()["id"])


def test_worker_finishes_keep_every_column(app: pgq.App, captured: Any) -> None:
    conn = captured
    tries: dict[str, int] = {}

    @app.task(name="ok", queue="q", timeout=30, backoff=0.01, max_attempts=5, pass_context=True)
    async def ok(ctx: pgq.JobContext, n: int) -> dict[str, int]:
        tries[f"ok{n}"] = tries.get(f"ok{n}", 0) + 1
        if tries[f"ok{n}"] == 1:
            raise RuntimeError("first try fails")  # so that errors holds an entry
        return {"n": n}

    @app.task(name="bad", queue="q", timeout=30, backoff=0.01, max_attempts=5)
    async def bad(n: int) -> None:
        raise pgq.PermanentError("no")

    @app.task(name="plain", queue="q", timeout=30, backoff=0.01, max_attempts=5)
    async def plain(n: int) -> None:
        return None  # a plain completion: written by finish_completed(), not finish_jobs()

    parent = app.enqueue("ok", {"n": 0}, priority=3)
    done = app.enqueue(
        "ok", {"n": 1}, priority=7, key="k1", group="tenant:1", depends_on=[parent], on_parent_failure="run"
    )
    failed = app.enqueue("bad", {"n": 2}, priority=5, key="k2", group="tenant:2", depends_on=[parent])
    completed = app.enqueue("plain", {"n": 3}, priority=4, key="k3", group="tenant:3", depends_on=[parent])

    async def run() -> None:
        async with app.worker(queues=["q"], concurrency=2, poll_interval=0.05, scheduler=False, sweeper=False):
            for _ in range(400):
                if all(j is not None and j.is_finished for j in map(app.get_job, (parent, done, failed, completed))):
                    break
                await asyncio.sleep(0.05)

    asyncio.run(run())
    assert check_moved(conn, done, "completed")["depends_on"] == [parent]
    row = check_moved(conn, failed, "failed")
    assert row["depends_on"] == [parent] and row["group_key"] == "tenant:2" and row["key"] == "k2"
    assert check_moved(conn, parent, "completed")["result"] == {"n": 0}
    row = check_moved(conn, completed, "completed")
    assert row["result"] is None and row["key"] == "k3" and row["depends_on"] == [parent] and row["progress"] == 1


def test_cancel_keeps_every_column(app: pgq.App, captured: Any) -> None:
    conn = captured
    pending = insert(conn, filled(conn))
    blocked_parent = insert(conn, filled(conn, depends_on=None, on_parent_failure=None))
    blocked = insert(conn, filled(conn, status="blocked", depends_on=[blocked_parent]))
    assert app.cancel(pending) == "cancelled"
    assert app.cancel(blocked) == "cancelled"
    assert check_moved(conn, pending, "cancelled", cancelled=True)["on_parent_failure"] == "run"
    assert check_moved(conn, blocked, "cancelled", cancelled=True)["depends_on"] == [blocked_parent]


def test_sweeper_rescues_keep_every_column(app: pgq.App, captured: Any) -> None:
    conn = captured
    dead = add_worker(conn, queues=["q"], heartbeat_age=600)
    alive = add_worker(conn, queues=["q"], heartbeat_age=0)
    died = insert(
        conn, filled(conn, status="running", attempts=5, worker_id=dead, started_at=None, key=None)
    )  # its worker died on its last attempt, and not for the first time (two crashes are given back)
    crashed_before = [
        {"attempt": 3, "type": "WorkerDied", "message": "worker died", "charged": False},
        {"attempt": 4, "type": "Crashed", "message": "crashed its worker 2 times"},
    ]
    conn.execute("update pgq.jobs set errors = errors || %s::jsonb where id = %s", [json.dumps(crashed_before), died])
    conn.execute("update pgq.jobs set started_at = now() - interval '10 minutes' where id = %s", [died])
    overran = insert(conn, filled(conn, status="running", attempts=5, worker_id=alive, timeout=timedelta(seconds=1)))
    conn.execute("update pgq.jobs set started_at = now() - interval '10 minutes' where id = %s", [overran])

    async def sweep() -> None:
        sweeper = Sweeper(app, worker_name="test")
        try:
            await sweeper.run_once()
        finally:
            await sweeper.close()

    asyncio.run(sweep())
    assert check_moved(conn, died, "failed")["worker_id"] == str(dead)
    assert check_moved(conn, overran, "failed")["depends_on"] is not None


@pytest.mark.parametrize("limit", ["max_pending", "group_max_pending"])
def test_drop_oldest_keeps_every_column(app: pgq.App, captured: Any, limit: str) -> None:
    """The path of migrations 0003 and 0005, which wrote history without depends_on and
    on_parent_failure until 0007."""
    conn = captured
    app.set_queue("q", **{limit: 1}, on_full="drop_oldest")
    parent = app.enqueue("t", queue="q")
    conn.execute("delete from pgq.jobs where id = %s", [parent])  # moved by hand: the parent is done
    conn.execute(
        """insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,
                                        run_at, created_at, finished_at)
           values (%s, 'q', 't', '{}', 0, 'completed', 1, 3, now(), now(), now())""",
        [parent],
    )
    conn.execute("delete from test_left_jobs")
    oldest = app.enqueue(
        "t", {"a": 1}, queue="q", key="old", group="tenant:1", depends_on=[parent], on_parent_failure="run"
    )
    assert app.get_job(oldest).status == "pending"  # type: ignore[union-attr]  # released: its parent completed
    app.enqueue("t", {"a": 2}, queue="q", group="tenant:1")  # admitted by dropping the oldest
    row = check_moved(conn, oldest, "cancelled", cancelled=True)
    assert row["depends_on"] == [parent] and row["on_parent_failure"] == "run"
    assert row["errors"][-1]["type"] == "Dropped"


def test_a_failed_parent_cancels_its_child_with_every_column(app: pgq.App, captured: Any) -> None:
    conn = captured
    parent = insert(conn, filled(conn, depends_on=None, on_parent_failure=None, status="running", attempts=5))
    child = insert(conn, filled(conn, status="blocked", depends_on=[parent], on_parent_failure="cancel"))
    conn.execute("update pgq.jobs set has_children = true where id = %s", [parent])
    # The parent fails for good (as a worker's finish would move it).
    conn.execute(
        """with gone as (delete from pgq.jobs where id = %s returning *)
           insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts, run_at,
                                        created_at, finished_at)
           select id, queue, task, args, priority, 'failed', attempts, max_attempts, run_at, created_at, now()
             from gone""",
        [parent],
    )
    wait_for(lambda: app.get_job(child).status == "cancelled", 10, "the child to be cancelled")  # type: ignore[union-attr]
    assert check_moved(conn, child, "cancelled", cancelled=True)["depends_on"] == [parent]


@pytest.mark.parametrize("how", ["one", "bulk", "failed"])
def test_retry_brings_every_column_back(app: pgq.App, captured: Any, how: str) -> None:
    """app.retry(id), app.bulk("retry", ...) and app.retry_failed() (two queries)."""
    conn = captured
    job_id = insert(conn, filled(conn))
    app.cancel(job_id)
    if how == "failed":
        conn.execute("update pgq.job_history set status = 'failed' where id = %s", [job_id])
    before = conn.execute("select to_jsonb(h) as row from pgq.job_history h where id = %s", [job_id]).fetchone()["row"]
    if how == "one":
        app.retry(job_id)
    elif how == "bulk":
        assert app.bulk("retry", key=before["key"]).count == 1
    else:
        assert app.retry_failed(queue="q") == 1
    after = conn.execute("select to_jsonb(j) as row from pgq.jobs j where id = %s", [job_id]).fetchone()["row"]
    # A retry starts a fresh run: these are reset by rule; it also gets one more attempt if it used them all.
    reset = {"status", "run_at", "started_at", "worker_id", "progress", "progress_message", "cancel_requested_at"}
    for column in set(after) - LIVE_ONLY - reset - {"max_attempts"}:
        assert after[column] == before[column], f"{column} was {before[column]!r}, is {after[column]!r}"
    assert after["max_attempts"] == max(before["max_attempts"], before["attempts"] + 1)
    assert after["status"] == "pending" and after["depends_on"] == before["depends_on"]
