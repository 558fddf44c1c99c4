"""Dependencies and workflows (issue 10): jobs that wait for other jobs.

Order is checked from job_history's own timestamps (a child's started_at is
after each parent's finished_at), never from wall-clock sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

import pgq
from pgq.testing import drain


def history(conn: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = conn.execute("select * from pgq.job_history where id = any(%s)", [ids]).fetchall()
    return {row["id"]: row for row in rows}


def status(conn: Any, job_id: int) -> str:
    row = conn.execute("select status from pgq.all_jobs where id = %s", [job_id]).fetchone()
    return str(row["status"])


def make_app(database_url: str) -> pgq.App:
    app = pgq.App(database_url)

    @app.task(pass_context=True)
    def step(ctx: pgq.JobContext, name: str, fail: bool = False) -> dict[str, Any]:
        if fail:
            raise pgq.PermanentError(f"{name} failed")
        return {
            "name": name,
            "parents": {str(k): v for k, v in sorted(ctx.parent_results.items())},
            "statuses": {str(k): v for k, v in sorted(ctx.parent_statuses.items())},
        }

    return app


def test_a_child_waits_blocked_until_its_parents_complete(database_url: str, conn: Any) -> None:
    app = make_app(database_url)
    try:
        a = app.enqueue("step", {"name": "a"})
        b = app.enqueue("step", {"name": "b"})
        child = app.enqueue("step", {"name": "c"}, depends_on=[a, b])
        assert status(conn, child) == "blocked"
        # The claim never sees a blocked job: only a and b run.
        ran = drain(app)
        assert [o.job.id for o in ran][:2] == [a, b]
        assert len(ran) == 3  # the child was released by b's finish and ran in the same drain
        rows = history(conn, [a, b, child])
        assert all(row["status"] == "completed" for row in rows.values())
        assert rows[child]["depends_on"] == [a, b]
        assert rows[child]["started_at"] >= max(rows[a]["finished_at"], rows[b]["finished_at"])
        assert rows[child]["result"]["parents"] == {str(a): rows[a]["result"], str(b): rows[b]["result"]}
        assert rows[child]["result"]["statuses"] == {str(a): "completed", str(b): "completed"}
        # A parent that completed before the child was enqueued: the child is due at once.
        late = app.enqueue("step", {"name": "late"}, depends_on=[a])
        assert status(conn, late) == "pending"
    finally:
        app.close()


def test_a_failed_parent_cancels_its_children_and_theirs(database_url: str, conn: Any) -> None:
    app = make_app(database_url)
    try:
        parent = app.enqueue("step", {"name": "p", "fail": True})
        child = app.enqueue("step", {"name": "c"}, depends_on=[parent])
        grandchild = app.enqueue("step", {"name": "g"}, depends_on=[child])
        runner = app.enqueue("step", {"name": "r"}, depends_on=[parent], on_parent_failure="run")
        drain(app)
        rows = history(conn, [parent, child, grandchild, runner])
        assert rows[parent]["status"] == "failed"
        assert rows[child]["status"] == "cancelled" and rows[grandchild]["status"] == "cancelled"
        error = rows[child]["errors"][-1]
        assert error["type"] == "ParentFailed" and error["parent"] == parent
        assert f"parent job {parent} ended failed" in error["message"]
        assert rows[grandchild]["errors"][-1]["parent"] == child
        # on_parent_failure="run": it ran, with no result from the failed parent, and knows it failed.
        assert rows[runner]["status"] == "completed" and rows[runner]["result"]["parents"] == {}
        assert rows[runner]["result"]["statuses"] == {str(parent): "failed"}
        # A parent that failed before the child is enqueued cancels it at once.
        orphan = app.enqueue("step", {"name": "o"}, depends_on=[parent])
        assert status(conn, orphan) == "cancelled"
    finally:
        app.close()


def test_cancelling_a_blocked_job_or_its_parent(database_url: str, conn: Any) -> None:
    app = make_app(database_url)
    try:
        parent = app.enqueue("step", {"name": "p"}, delay=3600)
        child = app.enqueue("step", {"name": "c"}, depends_on=[parent])
        other = app.enqueue("step", {"name": "o"}, depends_on=[parent])
        assert app.cancel(child) == "cancelled"
        assert app.cancel(parent) == "cancelled"
        rows = history(conn, [child, other])
        assert rows[child]["status"] == "cancelled"
        assert rows[other]["status"] == "cancelled" and rows[other]["errors"][-1]["type"] == "ParentFailed"
        assert "ended cancelled" in rows[other]["errors"][-1]["message"]
    finally:
        app.close()


def test_bad_dependencies_are_refused_and_write_nothing(app: pgq.App, conn: Any) -> None:
    parent = app.enqueue("t")
    for bad, message in [
        ("12", "depends_on must be a list of job ids"),
        ([0], "positive integers"),
        ([True], "positive integers"),
        (["7"], "positive integers"),
        (list(range(1, 1100)), "the limit is 1000"),
    ]:
        with pytest.raises(pgq.InvalidJob, match=message):
            app.enqueue("t", depends_on=bad)
    with pytest.raises(pgq.InvalidJob, match="on_parent_failure must be 'cancel' or 'run'"):
        app.enqueue("t", depends_on=[parent], on_parent_failure="ignore")
    with pytest.raises(pgq.InvalidJob, match="on_parent_failure needs depends_on"):
        app.enqueue("t", on_parent_failure="run")
    with pytest.raises(pgq.InvalidJob, match=r"depends_on names jobs that do not exist: 999998, 999999"):
        app.enqueue("t", depends_on=[parent, 999999, 999998])
    with pytest.raises(pgq.InvalidJob, match="depends_on names jobs that do not exist: 999999"):
        app.enqueue_many([pgq.JobSpec("t"), pgq.JobSpec("t", depends_on=[999999])])
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 1


def test_enqueue_many_with_parents_and_in_a_callers_transaction(database_url: str, conn: Any) -> None:
    app = make_app(database_url)
    try:
        [a, b] = app.enqueue_many([pgq.JobSpec("step", {"name": "a"}), pgq.JobSpec("step", {"name": "b"})])
        ids = app.enqueue_many(
            [
                pgq.JobSpec("step", {"name": "x"}, depends_on=[a]),
                pgq.JobSpec("step", {"name": "y"}),
                pgq.JobSpec("step", {"name": "z"}, depends_on=[a, b]),
            ]
        )
        assert [status(conn, i) for i in ids] == ["blocked", "pending", "blocked"]
        with psycopg.connect(database_url) as own:
            inner = app.enqueue("step", {"name": "i"}, depends_on=[b], connection=own)
            own.rollback()
        assert conn.execute("select count(*) as n from pgq.all_jobs where id = %s", [inner]).fetchone()["n"] == 0
        drain(app)
        rows = history(conn, [a, b, *ids])
        assert all(row["status"] == "completed" for row in rows.values())
        assert rows[ids[2]]["started_at"] >= rows[b]["finished_at"]
    finally:
        app.close()


def test_a_parent_finishing_while_a_child_is_enqueued_never_strands_it(database_url: str, conn: Any) -> None:
    """The child's enqueue locks its live parents: a finish that races it waits for the
    child's commit and then releases it. Without the lock, a child committed just after
    its parent's finish would stay blocked for ever."""
    app = make_app(database_url)
    try:
        parents = [app.enqueue("step", {"name": f"p{i}"}) for i in range(40)]
        children: list[int] = []
        barrier = threading.Barrier(2)

        def enqueue_children() -> None:
            barrier.wait()
            for parent in parents:
                children.append(app.enqueue("step", {"name": "c"}, depends_on=[parent]))

        thread = threading.Thread(target=enqueue_children)
        thread.start()
        barrier.wait()
        drain(app)
        thread.join()
        drain(app)
        left = conn.execute("select id from pgq.jobs where status = 'blocked'").fetchall()
        assert left == []
        rows = history(conn, children)
        assert len(rows) == 40 and all(row["status"] == "completed" for row in rows.values())
    finally:
        app.close()


# ---------------------------------------------------------------- workflows


def test_task_options_build_a_spec(app: pgq.App) -> None:
    @app.task(pass_context=True)
    def callback(ctx: pgq.JobContext, batch: int) -> None: ...

    spec = callback.options(on_parent_failure="run", queue="slow", depends_on=[4]).spec(batch=7)
    assert spec == pgq.JobSpec("callback", {"batch": 7}, queue="slow", depends_on=[4], on_parent_failure="run")
    with pytest.raises(pgq.InvalidJob, match="connection cannot go on a JobSpec"):
        callback.options(connection=None).spec(batch=1)


def test_workflow_shapes_and_bad_steps() -> None:
    a, b, c, d = (pgq.JobSpec("t", {"n": i}) for i in range(4))
    from pgq.workflow import flatten

    nodes = flatten(pgq.chain(a, pgq.group([b, c]), d))
    assert [n.parents for n in nodes] == [(), (0,), (0,), (1, 2)]
    assert [n.depth for n in nodes] == [0, 1, 1, 2]
    nodes = flatten(pgq.group([a, pgq.chain(b, c)]).then(d))
    assert [n.parents for n in nodes] == [(), (), (1,), (0, 2)]
    with pytest.raises(pgq.InvalidJob, match="at least one step"):
        pgq.chain()
    with pytest.raises(pgq.InvalidJob, match="group\\(\\[a, b\\]\\), not group\\(a, b\\)"):
        pgq.group(a)  # type: ignore[arg-type]
    with pytest.raises(pgq.InvalidJob, match="step 1 of the chain is 'send'"):
        pgq.chain(a, "send")  # type: ignore[arg-type]


def test_a_diamond_runs_each_node_once_in_order_and_passes_results(database_url: str, conn: Any) -> None:
    app = make_app(database_url)

    async def run() -> list[int]:
        ids = await app.enqueue_workflow_async(
            pgq.chain(
                pgq.JobSpec("step", {"name": "top"}),
                pgq.group([pgq.JobSpec("step", {"name": "left"}), pgq.JobSpec("step", {"name": "right"})]),
                pgq.JobSpec("step", {"name": "bottom"}),
            )
        )
        async with app.worker(concurrency=4, poll_interval=0.2) as worker:
            for _ in range(600):
                if worker.processed >= 4:
                    break
                await asyncio.sleep(0.05)
        return ids

    try:
        top, left, right, bottom = asyncio.run(run())
        rows = history(conn, [top, left, right, bottom])
        assert all(row["status"] == "completed" and row["attempts"] == 1 for row in rows.values())
        assert rows[left]["depends_on"] == [top] and rows[right]["depends_on"] == [top]
        assert sorted(rows[bottom]["depends_on"]) == [left, right]
        for child, parents in [(left, [top]), (right, [top]), (bottom, [left, right])]:
            for parent in parents:
                assert rows[child]["started_at"] >= rows[parent]["finished_at"]
        assert set(rows[bottom]["result"]["parents"]) == {str(left), str(right)}
        assert rows[bottom]["result"]["parents"][str(left)]["parents"] == {str(top): rows[top]["result"]}
        # Each node ran once: one attempt each, and nothing else was made.
        assert conn.execute("select count(*) as n from pgq.all_jobs").fetchone()["n"] == 4
    finally:
        app.close()


def test_a_workflow_is_one_transaction(database_url: str, conn: Any) -> None:
    app = make_app(database_url)
    try:
        wf = pgq.group([pgq.JobSpec("step", {"name": "a"}), pgq.JobSpec("step", {"name": "b"})]).then(
            pgq.JobSpec("step", {"name": "c"}, queue="bad queue!")
        )
        with pytest.raises(pgq.InvalidJob, match="job 2 of the batch: queue must be"):
            app.enqueue_workflow(wf)
        # A failure in the database half-way (a missing parent named by a later
        # step) rolls back the steps already inserted.
        wf = pgq.chain(pgq.JobSpec("step", {"name": "a"}), pgq.JobSpec("step", {"name": "b"}, depends_on=[424242]))
        with pytest.raises(pgq.InvalidJob, match="do not exist: 424242"):
            app.enqueue_workflow(wf)
        assert conn.execute("select count(*) as n from pgq.all_jobs").fetchone()["n"] == 0
        # In the caller's transaction: nothing exists until it commits.
        with psycopg.connect(database_url) as own:
            ids = app.enqueue_workflow(
                pgq.chain(pgq.JobSpec("step", {"name": "a"}), pgq.JobSpec("step", {"name": "b"})), connection=own
            )
            assert conn.execute("select count(*) as n from pgq.all_jobs").fetchone()["n"] == 0
        assert [status(conn, i) for i in ids] == ["pending", "blocked"]
        drain(app)
        assert [status(conn, i) for i in ids] == ["completed", "completed"]
    finally:
        app.close()


def test_cli_enqueue_with_parents_and_keys(database_url: str, app: pgq.App, conn: Any) -> None:
    from tests.test_bad_input import run_cli

    parent = app.enqueue("t", delay=3600)
    result = run_cli(
        "enqueue", "t", "--depends-on", f"{parent}", "--on-parent-failure", "run", "--database-url", database_url
    )
    assert result.returncode == 0, result.stderr
    child = int(result.stdout)
    row = conn.execute("select status, depends_on, on_parent_failure from pgq.jobs where id = %s", [child]).fetchone()
    assert row == {"status": "blocked", "depends_on": [parent], "on_parent_failure": "run"}
    shown = run_cli("jobs", "show", str(child), "--database-url", database_url).stdout
    assert f"  waits for   {parent}  (runs even if one fails)" in shown, shown
    first = run_cli("enqueue", "t", "--key", "k", "--unique-for", "60", "--database-url", database_url)
    again = run_cli("enqueue", "t", "--key", "k", "--unique-for", "60", "--database-url", database_url)
    assert first.returncode == again.returncode == 0 and first.stdout == again.stdout


def test_explain_names_the_parents_a_blocked_job_waits_for(app: pgq.App, conn: Any) -> None:
    first = app.enqueue("t", delay=3600)
    second = app.enqueue("t")
    child = app.enqueue("t", depends_on=[first, second])
    text = app.explain(child)
    assert text == (
        f"job {child} is blocked; held back by:\n"
        f"- its parents are not done: job {first} is pending, job {second} is pending"
    )
    assert conn.execute("select pgq.explain(%s) as t", [child]).fetchone()["t"] == text


def test_sql_enqueue_with_parents(app: pgq.App, conn: Any) -> None:
    app.task(name="t")(lambda: None)
    parent = app.enqueue("t")
    child = conn.execute(
        "select pgq.enqueue('t', depends_on => array[%s]::bigint[], on_parent_failure => 'run') as id", [parent]
    ).fetchone()["id"]
    row = conn.execute("select status, depends_on, on_parent_failure from pgq.jobs where id = %s", [child]).fetchone()
    assert row == {"status": "blocked", "depends_on": [parent], "on_parent_failure": "run"}
    with pytest.raises(psycopg.Error, match="do not exist: 424242"):
        conn.execute("select pgq.enqueue('t', depends_on => array[424242]::bigint[])")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="on_parent_failure must be 'cancel' or 'run'"):
        conn.execute("select pgq.enqueue('t', depends_on => array[%s]::bigint[], on_parent_failure => 'x')", [parent])
    drain(app)
    assert status(conn, parent) == status(conn, child) == "completed"
