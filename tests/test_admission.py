"""Admission per group, rejections in the metrics rows, the SQL enqueue's group,
explain's "no live worker knows its task", and pruning of queue_groups (issue 10).

The queue-wide max_pending and the other explain clauses are in tests/test_flow.py.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgq
from pgq.maintenance.sweeper import Sweeper
from tests.processes import WorkerProcess, wait_for
from tests.test_operations import assert_error, pgq_cli


def live_ids(conn: Any, queue: str, group: str | None = None) -> list[int]:
    rows = conn.execute(
        "select id from pgq.jobs where queue = %s and group_key is not distinct from %s order by id", [queue, group]
    ).fetchall()
    return [int(r["id"]) for r in rows]


# ----------------------------------------------------------- group_max_pending


def test_group_max_pending_rejects_exactly_under_8_concurrent_enqueuers(app: pgq.App, conn: Any) -> None:
    info = app.set_queue("shared", group_max_pending=10)
    assert (info.group_max_pending, info.max_pending, info.on_full) == (10, None, "reject")
    accepted: list[tuple[str | None, int]] = []
    refused: list[pgq.QueueFull] = []
    barrier = threading.Barrier(8)
    lock = threading.Lock()

    def enqueuer(group: str) -> None:
        barrier.wait()
        for n in range(17):
            wanted = None if n % 8 == 7 else group  # two jobs without a group: no group limit applies
            try:
                job_id = app.enqueue("t", queue="shared", group=wanted)
                with lock:
                    accepted.append((wanted, job_id))
            except pgq.QueueFull as exc:
                with lock:
                    refused.append(exc)

    threads = [threading.Thread(target=enqueuer, args=("a" if i % 2 else "b",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each group: 4 threads x 15 grouped enqueues, 10 admitted; 16 jobs without a group.
    assert len(live_ids(conn, "shared", "a")) == len(live_ids(conn, "shared", "b")) == 10
    assert len(live_ids(conn, "shared", None)) == 16
    assert len(accepted) == 36 and len(refused) == 100
    assert {exc.group for exc in refused} == {"a", "b"} and {exc.queue for exc in refused} == {"shared"}
    message = str(next(exc for exc in refused if exc.group == "a"))
    assert "queue shared is full for group a: 10 pending jobs of the group, group_max_pending 10" in message
    assert "--group-max-pending" in message
    assert app.get_queue("shared").rejected == 100

    # A batch over the limit of one group is refused whole, with every other job of it.
    app.set_queue("shared", group_max_pending=11)
    with pytest.raises(pgq.QueueFull, match="for group a") as caught:
        app.enqueue_many(
            [pgq.JobSpec("t", queue="shared", group="c"), *[pgq.JobSpec("t", queue="shared", group="a")] * 2]
        )
    assert caught.value.group == "a" and live_ids(conn, "shared", "c") == []
    assert app.get_queue("shared").rejected == 102  # the two jobs of group a
    assert len(app.enqueue_many([pgq.JobSpec("t", queue="shared", group=g) for g in ("a", "b", "c")])) == 3
    # A group name may hold any character; QueueFull names it exactly.
    odd = "tenant: 7 is full for group x"
    app.set_queue("shared", group_max_pending=1)
    app.enqueue("t", queue="shared", group=odd)
    with pytest.raises(pgq.QueueFull) as caught:
        app.enqueue("t", queue="shared", group=odd)
    assert caught.value.group == odd and caught.value.queue == "shared"
    # None removes the limit.
    app.set_queue("shared", group_max_pending=None)
    app.enqueue("t", queue="shared", group="a")


def test_queue_and_group_limits_together(app: pgq.App, conn: Any) -> None:
    app.set_queue("both", max_pending=3, group_max_pending=2)
    app.enqueue_many([pgq.JobSpec("t", queue="both", group="a") for _ in range(2)])
    with pytest.raises(pgq.QueueFull, match="for group a") as by_group:
        app.enqueue("t", queue="both", group="a")
    assert by_group.value.group == "a"
    app.enqueue("t", queue="both", group="b")
    with pytest.raises(pgq.QueueFull, match="queue both is full: 3 pending jobs, max_pending 3") as by_queue:
        app.enqueue("t", queue="both", group="c")
    assert by_queue.value.group is None
    assert app.get_queue("both").rejected == 2


def test_group_drop_oldest_and_a_callers_transaction(app: pgq.App, conn: Any, database_url: str) -> None:
    app.set_queue("latest", group_max_pending=2, on_full="drop_oldest")
    a = [app.enqueue("t", {"n": i}, queue="latest", group="a") for i in range(4)]
    b = [app.enqueue("t", {"n": i}, queue="latest", group="b") for i in range(2)]
    assert live_ids(conn, "latest", "a") == a[2:] and live_ids(conn, "latest", "b") == b
    for job_id in a[:2]:
        job = app.get_job(job_id)
        assert job is not None and job.status == "cancelled"
        assert job.errors[-1]["type"] == "Dropped"
        assert job.errors[-1]["message"] == (
            "dropped to admit a newer job: group a of queue latest is full (group_max_pending 2)"
        )
    assert app.get_queue("latest").rejected == 2
    batch = app.enqueue_many([pgq.JobSpec("t", queue="latest", group="a") for _ in range(2)])
    assert live_ids(conn, "latest", "a") == batch and live_ids(conn, "latest", "b") == b
    # A batch larger than the limit cannot be admitted by dropping: refused.
    with pytest.raises(pgq.QueueFull, match="for group a"):
        app.enqueue_many([pgq.JobSpec("t", queue="latest", group="a") for _ in range(3)])

    # Inside a caller's transaction: the drop is part of it, and a rollback undoes both.
    with psycopg.connect(database_url) as caller:
        app.enqueue("t", queue="latest", group="a", connection=caller)
        caller.rollback()
    assert live_ids(conn, "latest", "a") == batch
    app.set_queue("latest", on_full="reject")
    with psycopg.connect(database_url) as caller:
        with pytest.raises(pgq.QueueFull, match="queue latest is full for group a"):
            app.enqueue("t", queue="latest", group="a", connection=caller)
        caller.rollback()
        assert app.enqueue("t", queue="latest", group="new", connection=caller) > 0
        caller.commit()
    assert len(live_ids(conn, "latest", "new")) == 1


def test_sql_enqueue_takes_a_group_and_goes_through_admission(app: pgq.App, conn: Any) -> None:
    job_id = conn.execute("select pgq.enqueue('t', queue => 'r', group_key => 'g1') as id").fetchone()["id"]
    assert conn.execute("select group_key from pgq.jobs where id = %s", [job_id]).fetchone()["group_key"] == "g1"
    # The old positional form still resolves.
    conn.execute("select pgq.enqueue('t', '{}', 'r', 0, null, null, 3)")
    app.set_queue("r", group_max_pending=1)
    with pytest.raises(psycopg.Error, match="queue r is full for group g1") as refused:
        conn.execute("select pgq.enqueue('t', queue => 'r', group_key => 'g1')")
    assert refused.value.sqlstate == "PGQ01"
    assert refused.value.diag.message_hint is not None and "--group-max-pending" in refused.value.diag.message_hint
    conn.execute("select pgq.enqueue('t', queue => 'r', group_key => 'g2')")
    app.set_queue("r", max_pending=3)
    with pytest.raises(psycopg.Error, match="queue r is full: 3 pending jobs, max_pending 3"):
        conn.execute("select pgq.enqueue('t', queue => 'r')")
    app.set_queue("r", max_pending=10, on_full="drop_oldest")
    conn.execute("select pgq.enqueue('t', queue => 'r', group_key => 'g1')")
    assert live_ids(conn, "r", "g1") != [job_id] and len(live_ids(conn, "r", "g1")) == 1
    for bad in ("''", "repeat('x', 256)"):
        with pytest.raises(psycopg.Error, match="group_key must be a non-empty string of at most 255 characters"):
            conn.execute(f"select pgq.enqueue('t', group_key => {bad})")


# ------------------------------------------------------------------- metrics


async def test_rejections_appear_in_the_metrics_rows(database_url: str, conn: Any) -> None:
    app = pgq.App(database_url, metrics_interval=60)
    try:
        app.set_queue("capped", max_pending=1)
        app.enqueue("t", queue="capped")
        for _ in range(3):
            with pytest.raises(pgq.QueueFull):
                app.enqueue("t", queue="capped")
        app.set_queue("grouped", group_max_pending=1, on_full="drop_oldest")
        for _ in range(3):
            app.enqueue("t", queue="grouped", group="x")
        app.enqueue("t", queue="calm")
        sweeper = Sweeper(app)
        try:
            assert (await sweeper.run_once()).metrics_rows == 3
            rows = {r["queue"]: r for r in conn.execute("select * from pgq.metrics")}
            assert (rows["capped"]["rejected"], rows["capped"]["rejected_total"]) == (3, 3)
            assert (rows["grouped"]["rejected"], rows["grouped"]["rejected_total"]) == (2, 2)
            assert (rows["calm"]["rejected"], rows["calm"]["rejected_total"]) == (0, None)
            with pytest.raises(pgq.QueueFull):
                app.enqueue("t", queue="capped")
            # Between rows, stats add what the total gained since the latest row.
            stats = {s.queue: s for s in app.stats()}
            assert (stats["capped"].rejected_in_window, stats["capped"].rejected) == (4, 4)
            sweeper.metrics.written_at = 0.0  # the next pass writes metrics again
            await sweeper.run_once()
            latest = conn.execute(
                "select rejected, rejected_total from pgq.metrics where queue = 'capped' order by at desc limit 1"
            ).fetchone()
            assert (latest["rejected"], latest["rejected_total"]) == (1, 4)
        finally:
            await sweeper.close()
        stats = {s.queue: s for s in app.stats()}
        assert (stats["capped"].rejected_in_window, stats["grouped"].rejected_in_window) == (4, 2)
        assert stats["calm"].rejected_in_window == 0
        # Rows older than the window do not count; a total with no row to start from is unknown.
        conn.execute("update pgq.metrics set at = at - interval '2 days'")
        conn.execute("update pgq.queues set created_at = now() - interval '3 days'")
        stats = {s.queue: s for s in app.stats()}
        assert stats["capped"].rejected_in_window == 0  # the latest row's total is the current one
        conn.execute("update pgq.metrics set rejected_total = null")
        assert {s.queue: s for s in app.stats()}["capped"].rejected_in_window is None
    finally:
        app.close()


# ------------------------------------------------------------------- explain


def test_explain_names_a_task_no_live_worker_knows(
    app: pgq.App, conn: Any, start_worker: Callable[..., WorkerProcess]
) -> None:
    app.pause_queue("q")  # the worker must leave the jobs pending
    unknown = app.enqueue("no_such_task", queue="q")
    assert "no live worker serves its queue q" in app.explain(unknown)
    worker = start_worker("--queues", "q")  # tests.apps.recording: record, sleepy, ...
    row = wait_for(
        lambda: conn.execute("select tasks from pgq.workers where status = 'running'").fetchone(),
        60,
        f"the worker to register; log:\n{worker.output()}",
    )
    assert "record" in row["tasks"] and "no_such_task" not in row["tasks"]
    text = app.explain(unknown)
    assert "its queue q is paused" in text
    assert (
        "no live worker knows its task no_such_task: the 1 live worker(s) serving queue q have not registered it"
    ) in text
    assert "no live worker serves" not in text
    assert conn.execute("select pgq.explain(%s) as t", [unknown]).fetchone()["t"] == text
    known = app.enqueue("record", queue="q")
    assert "knows its task" not in app.explain(known)
    # A worker from before revision 0005 (no task list) is taken to know every task.
    conn.execute(
        "insert into pgq.workers (id, name, host, pid, queues, concurrency) "
        "values (gen_random_uuid(), 'old', 'h', 1, '{q}', 1)"
    )
    assert "knows its task" not in app.explain(unknown)


# ------------------------------------------------------------------- pruning


async def test_the_sweeper_prunes_idle_queue_groups(app: pgq.App, conn: Any) -> None:
    conn.execute(
        "insert into pgq.queue_groups (queue, group_key, rate_tat, last_served_at) values"
        " ('q', 'idle', now() - interval '2 hours', now() - interval '2 hours'),"
        " ('q', 'never', null, null),"
        " ('q', '', null, now() - interval '2 hours'),"
        " ('q', 'recent', null, now() - interval '10 minutes'),"
        " ('q', 'rated', now() + interval '1 hour', now() - interval '2 hours'),"
        " ('q', 'waiting', null, now() - interval '2 hours'),"
        " ('q', 'running', null, now() - interval '2 hours')"
    )
    app.enqueue("t", queue="q", group="waiting", delay=7200)
    # Running as claim_limited leaves a job: holding a slot of the queue's limits.
    conn.execute(
        "insert into pgq.jobs (task, queue, group_key, status, attempts, worker_id, started_at, limit_slot)"
        " values ('t', 'q', 'running', 'running', 1, %s, now(), true)",
        [uuid.uuid4()],
    )
    sweeper = Sweeper(app)
    try:
        assert (await sweeper.run_once()).pruned.groups == 3
    finally:
        await sweeper.close()
    left = conn.execute("select group_key from pgq.queue_groups order by group_key").fetchall()
    assert [r["group_key"] for r in left] == ["rated", "recent", "running", "waiting"]


# ----------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_group_max_pending_and_stats(database_url: str, app: pgq.App) -> None:
    result = pgq_cli(database_url, "queues", "set", "mail", "--group-max-pending", "1")
    assert result.returncode == 0 and result.stdout.strip() == "queue mail: group max pending 1, on full reject", result
    assert_error(
        pgq_cli(database_url, "queues", "set", "mail", "--group-max-pending", "-1"),
        "--group-max-pending must be a whole number >= 0 or none, got '-1'",
    )
    assert pgq_cli(database_url, "enqueue", "t", "--queue", "mail", "--group", "g").returncode == 0
    assert_error(
        pgq_cli(database_url, "enqueue", "t", "--queue", "mail", "--group", "g"),
        "queue mail is full for group g: 1 pending jobs of the group, group_max_pending 1",
    )
    table = pgq_cli(database_url, "queues", "list").stdout
    assert "group max pending 1 (reject, 1 rejected)" in table, table
    listing = json.loads(pgq_cli(database_url, "queues", "list", "--json").stdout)
    assert (listing[0]["group_max_pending"], listing[0]["rejected"]) == (1, 1)
    stats = pgq_cli(database_url, "stats").stdout
    assert "REJECTED WIN/ALL" in stats and "1/1" in stats, stats  # the queue's row is new: all in the window
    assert json.loads(pgq_cli(database_url, "stats", "--json").stdout)[0]["rejected_in_window"] == 1
    result = pgq_cli(database_url, "queues", "set", "mail", "--group-max-pending", "none")
    assert result.stdout.strip() == "queue mail: no limits"
