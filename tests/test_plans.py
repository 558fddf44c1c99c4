"""The worker's hot statements stay O(batch) whatever the table went through.

A finish once found its rows through ``jobs_worker_idx`` (gone since migration
0022), which kept an entry for every job the worker claimed until vacuum: each
batch scanned thousands of dead entries and a drain at concurrency 100 fell to a few hundred jobs/s. These
tests put a worker's history of dead entries in place (autovacuum off) and count
the buffers each statement touches, in the generic plan the worker's prepared
statements end up with and in a custom one. Buffer counts, not timings: the
bound holds on any machine.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg
import pytest

import pgq
from pgq.db.queries import query

HISTORY = 3000  # jobs the worker ran before the measured batch
BATCH = 100
BACKLOG = 20_000  # pending jobs behind them: a scan of the table is not cheap
# A finish of BATCH rows by primary key touches a few buffers per row (heap,
# index, history). The plan this guards against touched one per dead index entry
# per row: HISTORY * BATCH.
MAX_BUFFERS = 20 * BATCH


def positional(sql: str) -> tuple[str, list[str]]:
    """The named query with $n parameters, for PREPARE, and the names in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)[sb]", number, sql), names


def claim(conn: psycopg.Connection[Any], worker_id: uuid.UUID, limit: int) -> list[dict[str, Any]]:
    return conn.execute(
        query("job_claim", "pgq"), {"worker_id": worker_id, "queues": ["default"], "limit": limit}
    ).fetchall()


def outcomes(rows: list[dict[str, Any]], worker_id: uuid.UUID) -> dict[str, Any]:
    """The parameters of job_finish_many, and of job_finish_completed (which reads the first four)."""
    return {
        "worker_id": worker_id,
        "id": [r["id"] for r in rows],
        "queue": [r["queue"] for r in rows],
        "attempt": [r["attempts"] for r in rows],
        "kind": ["completed"] * len(rows),
        "result": [None] * len(rows),
        "error": [None] * len(rows),
        "delay": [None] * len(rows),
    }


#: The worker's two finishes: any outcomes (finish_jobs), plain completions (finish_completed).
FINISHES = {"job_finish_many": "finish_jobs", "job_finish_completed": "finish_completed"}


def total_buffers(plan_lines: list[str]) -> int:
    """Shared buffers hit and read by the whole statement (the top node's line)."""
    for line in plan_lines:
        if "Buffers:" in line:
            hit = re.search(r"hit=(\d+)", line)
            read = re.search(r"read=(\d+)", line)
            return int(hit.group(1) if hit else 0) + int(read.group(1) if read else 0)
    raise AssertionError("no Buffers line in the plan:\n" + "\n".join(plan_lines))


def explained(conn: psycopg.Connection[Any], name: str, params: dict[str, Any], **identifiers: str) -> list[str]:
    """The lines of EXPLAIN (ANALYZE, BUFFERS) of named query ``name`` run with ``params``."""
    sql = "explain (analyze, buffers, costs off) " + query(name, "pgq", **identifiers)
    return [row["QUERY PLAN"] for row in psycopg.ClientCursor(conn).execute(sql, params).fetchall()]


def explained_prepared(conn: psycopg.Connection[Any], name: str, params: dict[str, Any]) -> list[str]:
    """The lines of EXPLAIN (ANALYZE, BUFFERS) of named query ``name`` prepared (with $n
    parameters, so that the session's plan_cache_mode decides between a generic and a
    custom plan) and executed with ``params``."""
    sql, names = positional(query(name, "pgq"))
    conn.execute(f"prepare {name} as {sql}")
    # Bound on the client: EXECUTE's arguments are literals, typed by the PREPARE.
    return [
        row["QUERY PLAN"]
        for row in psycopg.ClientCursor(conn)
        .execute(
            f"explain (analyze, buffers, costs off) execute {name}({', '.join(['%s'] * len(names))})",
            [params[n] for n in names],
        )
        .fetchall()
    ]


@pytest.fixture
def worker_with_history(app: pgq.App, conn: psycopg.Connection[Any]) -> tuple[uuid.UUID, list[dict[str, Any]]]:
    """A registered worker that claimed and finished HISTORY jobs (their index
    entries left dead: no vacuum) and now holds BATCH running jobs, with the
    statistics of before it started (as when a fresh backlog is drained): they
    say few rows are running, so an index on running rows looks cheap."""
    conn.execute("alter table pgq.jobs set (autovacuum_enabled = false)")
    worker_id = uuid.uuid4()
    conn.execute(
        query("worker_register", "pgq"),
        {
            "id": worker_id,
            "name": "t",
            "host": "h",
            "pid": 1,
            "queues": ["default"],
            "concurrency": 1,
            "version": "t",
            "tasks": None,
        },
    )

    @app.task(name="noop")
    def noop() -> None: ...

    app.enqueue_many([pgq.JobSpec("noop") for _ in range(HISTORY + BATCH + BACKLOG)])
    conn.execute("analyze pgq.jobs")
    finish = query("job_finish_many", "pgq")
    for _ in range(HISTORY // BATCH):
        conn.execute(finish, outcomes(claim(conn, worker_id, BATCH), worker_id))
    running = claim(conn, worker_id, BATCH)
    assert len(running) == BATCH
    return worker_id, running


@pytest.mark.parametrize("finish", list(FINISHES))
@pytest.mark.parametrize("plan_mode", ["force_generic_plan", "force_custom_plan"])
def test_finish_and_progress_go_by_primary_key(
    conn: psycopg.Connection[Any],
    worker_with_history: tuple[uuid.UUID, list[dict[str, Any]]],
    plan_mode: str,
    finish: str,
) -> None:
    worker_id, running = worker_with_history
    finish_params = outcomes(running, worker_id)
    progress_params = {
        "worker_id": worker_id,
        "id": finish_params["id"],
        "queue": finish_params["queue"],
        "attempt": finish_params["attempt"],
        "progress": [0.5] * BATCH,
        "message": ["half"] * BATCH,
    }
    conn.execute(f"set plan_cache_mode = {plan_mode}")
    for name, params in (("job_progress_many", progress_params), (finish, finish_params)):
        plan = explained_prepared(conn, name, params)
        # Functions (the finishes) show no inner plan: the buffers are what bound them.
        assert "Seq Scan on jobs" not in "\n".join(plan), "\n".join(plan)
        assert total_buffers(plan) <= MAX_BUFFERS, "\n".join(plan)
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone() == {"n": BACKLOG}  # the batch finished


@pytest.mark.parametrize("plan_mode", ["force_generic_plan", "force_custom_plan"])
def test_a_transactional_handlers_finish_goes_by_primary_key(
    conn: psycopg.Connection[Any], worker_with_history: tuple[uuid.UUID, list[dict[str, Any]]], plan_mode: str
) -> None:
    worker_id, running = worker_with_history
    job = running[0]
    params = {
        "id": job["id"],
        "queue": job["queue"],
        "worker_id": worker_id,
        "attempt": job["attempts"],
        "result": '{"ok": true}',
        "channel": "pgq_jobs",
    }
    conn.execute(f"set plan_cache_mode = {plan_mode}")
    plan = explained_prepared(conn, "job_finish_in_transaction", params)
    assert "jobs_pkey" in "\n".join(plan) and "Seq Scan on jobs" not in "\n".join(plan), "\n".join(plan)
    assert total_buffers(plan) <= 40, "\n".join(plan)  # one job: its heap page, index and history
    moved = conn.execute("select status, result from pgq.job_history where id = %s", [job["id"]]).fetchone()
    assert moved == {"status": "completed", "result": {"ok": True}}


@pytest.mark.parametrize("plan_mode", ["force_generic_plan", "force_custom_plan"])
def test_the_sweepers_rescue_reads_running_jobs_not_the_backlog(
    conn: psycopg.Connection[Any], worker_with_history: tuple[uuid.UUID, list[dict[str, Any]]], plan_mode: str
) -> None:
    """Every sweep looks for jobs overrunning their timeout, and for running jobs of
    gone workers when there are some (migration 0022). With none gone, behind a
    backlog of pending jobs and running ones without a timeout, that must stay a read
    of jobs_timeout_idx, which holds none of them: the scan for gone workers' jobs is
    skipped whole, in a generic plan too."""
    conn.execute("analyze pgq.jobs")  # with fresh statistics too: BATCH running rows of BACKLOG + BATCH
    params = {
        "heartbeat_timeout": 30.0,
        "timeout_grace": 30.0,
        "claim_grace": 5.0,
        "batch": 500,
        "channel": "x",
        "gone": [],
    }
    conn.execute(f"set plan_cache_mode = {plan_mode}")
    plan = explained_prepared(conn, "sweep_rescue_jobs", params)
    text = "\n".join(plan)
    assert "jobs_timeout_idx" in text and "One-Time Filter" in text, text
    assert total_buffers(plan) <= 10, text


def test_an_idle_workers_next_wake_up_reads_one_entry_per_priority(conn: psycopg.Connection[Any], app: pgq.App) -> None:
    """After every claim that finds fewer jobs than free slots, and at every idle
    poll, the worker asks when the next delayed job is due. Behind a big delayed
    backlog that must stay a few index probes, and be right across priorities."""
    conn.execute(
        """insert into pgq.jobs (task, run_at, priority)
           select 'later', now() + interval '1 hour' + g * interval '1 ms', g %% 3
             from generate_series(1, %s) g""",
        [BACKLOG],
    )
    conn.execute("insert into pgq.jobs (task, run_at, priority) values ('soonest', now() + interval '10 minutes', -5)")
    conn.execute("insert into pgq.jobs (task, run_at, priority) values ('due', now() - interval '1 minute', 7)")
    conn.execute(
        "insert into pgq.jobs (task, run_at, queue) values ('elsewhere', now() + interval '1 minute', 'other')"
    )
    conn.execute("analyze pgq.jobs")
    sql, params = query("job_next_run_at", "pgq"), {"queues": ["default"]}
    wait = conn.execute(sql, params).fetchone()["wait"]  # type: ignore[index]
    assert 590 < float(wait) <= 600  # the 'soonest' job, though its priority is the lowest
    plan = explained(conn, "job_next_run_at", params)
    text = "\n".join(plan)
    assert "Seq Scan on jobs" not in text, text
    assert total_buffers(plan) <= 200, text


@pytest.mark.parametrize("finish", list(FINISHES))
@pytest.mark.parametrize("statistics", ["never analysed", "analysed while every job was pending", "analysed empty"])
def test_the_finish_is_driven_by_its_outcomes_whatever_the_statistics(
    app: pgq.App, conn: psycopg.Connection[Any], statistics: str, finish: str
) -> None:
    """finish_jobs() and finish_completed() pin their plans (migrations 0006 and 0009). Each way the statistics can
    mislead is set up on a backlog that a scan would make expensive; the plan of
    the statement inside the function (auto_explain, sent back as notices) must
    reach jobs by primary key only, and touch a few buffers per outcome."""
    conn.execute("alter table pgq.jobs set (autovacuum_enabled = false)")
    if statistics == "analysed empty":
        conn.execute("analyze pgq.jobs")
    worker_id = uuid.uuid4()
    conn.execute(
        query("worker_register", "pgq"),
        {
            "id": worker_id,
            "name": "t",
            "host": "h",
            "pid": 1,
            "queues": ["default"],
            "concurrency": 1,
            "version": "t",
            "tasks": None,
        },
    )

    @app.task(name="noop")
    def noop() -> None: ...

    app.enqueue_many([pgq.JobSpec("noop") for _ in range(BACKLOG + 5 * BATCH)])
    if statistics == "analysed while every job was pending":
        conn.execute("analyze pgq.jobs")
    running = claim(conn, worker_id, 5 * BATCH)
    assert len(running) == 5 * BATCH
    notices: list[str] = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    conn.execute("load 'auto_explain'")
    for setting, value in (
        ("log_min_duration", "0"),
        ("log_nested_statements", "on"),
        ("log_analyze", "on"),
        ("log_buffers", "on"),
        ("log_level", "notice"),
    ):
        conn.execute(f"set auto_explain.{setting} = {value}")
    conn.execute("set client_min_messages = notice")
    refused = conn.execute(query(finish, "pgq"), outcomes(running, worker_id)).fetchall()
    conn.execute("set auto_explain.log_min_duration = -1")
    assert refused == []
    inner = next(n for n in notices if "Delete on jobs" in n)
    lines = inner.splitlines()
    assert not any("Seq Scan on jobs" in line for line in lines), inner
    # Every index read of jobs is a probe of the primary key with a condition: no
    # scan of a whole index (what a planner without sequential scans fell back to).
    probes = [i for i, line in enumerate(lines) if re.search(r"Index Scan (using|on) jobs_\w+", line)]
    assert probes, inner
    for index in probes:
        assert "jobs_pkey" in lines[index], inner
        assert "Index Cond" in "\n".join(lines[index + 1 : index + 3]), inner
    top = next(n for n in notices if FINISHES[finish] in n and "ProjectSet" in n)
    assert total_buffers(top.splitlines()) <= 20 * 5 * BATCH, top
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone() == {"n": BACKLOG}


def _nested_plans(conn: psycopg.Connection[Any]) -> list[str]:
    """Turn on auto_explain for ``conn``, sending each nested statement's plan back as a notice."""
    notices: list[str] = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    conn.execute("load 'auto_explain'")
    for setting, value in (
        ("log_min_duration", "0"),
        ("log_nested_statements", "on"),
        ("log_analyze", "on"),
        ("log_buffers", "on"),
        ("log_level", "notice"),
    ):
        conn.execute(f"set auto_explain.{setting} = {value}")
    conn.execute("set client_min_messages = notice")
    return notices


@pytest.mark.parametrize("path", ["claim_jobs", "claim_limited"])
def test_a_claim_planned_on_a_small_table_stays_a_probe_when_it_grows(
    app: pgq.App, conn: psycopg.Connection[Any], path: str
) -> None:
    """A worker often starts before the jobs: its claims are planned while jobs is
    tiny (claim_jobs keeps that generic plan for the session; claim_limited plans
    each call, with statistics taken while the table was empty). Once a backlog
    has arrived, the claim of a batch must still read the claim index in order
    and update its rows by primary key, not scan the table once per chosen row."""
    conn.execute("alter table pgq.jobs set (autovacuum_enabled = false)")
    if path == "claim_limited":
        app.set_queue("default", concurrency=10 * BATCH)
    worker_id = uuid.uuid4()
    conn.execute(
        query("worker_register", "pgq"),
        {
            "id": worker_id,
            "name": "t",
            "host": "h",
            "pid": 1,
            "queues": ["default"],
            "concurrency": 1,
            "version": "t",
            "tasks": None,
        },
    )

    @app.task(name="noop")
    def noop() -> None: ...

    def take(limit: int) -> list[Any]:
        if path == "claim_jobs":
            return conn.execute("select * from pgq.claim_jobs(%s, '{default}', %s)", [worker_id, limit]).fetchall()
        return conn.execute("select * from pgq.claim_limited(%s, 'default', %s)", [worker_id, limit]).fetchall()

    app.enqueue_many([pgq.JobSpec("noop") for _ in range(8)])
    conn.execute("analyze pgq.jobs")
    for _ in range(8):  # one job at a time, past the custom plans a prepared statement starts with
        take(1)
    app.enqueue_many([pgq.JobSpec("noop") for _ in range(BACKLOG)])
    notices = _nested_plans(conn)
    assert len(take(BATCH)) == BATCH
    conn.execute("set auto_explain.log_min_duration = -1")
    inner = next(n for n in notices if "Update on jobs" in n)
    lines = inner.splitlines()
    assert not any("Seq Scan on jobs" in line for line in lines), inner
    for index, line in enumerate(lines):
        if re.search(r"Index Scan (using|on) jobs_\w+", line):
            assert "Index Cond" in "\n".join(lines[index + 1 : index + 3]), inner
    assert total_buffers(lines) <= MAX_BUFFERS, inner


def test_the_history_row_is_inlined_where_a_job_leaves(conn: psycopg.Connection[Any], app: pgq.App) -> None:
    """history_row() (migration 0012) is one SQL expression so that the planner inlines it:
    each column is then read from the deleted row. Not inlined, ``(history_row(...)).*``
    would call it once per column of job_history, for every job that leaves."""
    for error in ("null", "jsonb_build_object('attempt', j.attempts, 'at', now(), 'type', 'Dropped')"):
        plan = conn.execute(
            "explain (verbose, costs off) with gone as ("
            " delete from pgq.jobs j where j.id = 1"
            f" returning (pgq.history_row(j, 'cancelled', null, {error})).*)"
            " insert into pgq.job_history select * from gone"
        ).fetchall()
        text = "\n".join(row["QUERY PLAN"] for row in plan)
        assert "history_row" not in text, text
        assert "COALESCE(j.cancel_requested_at, now())" in text, text


def test_the_newest_jobs_are_read_from_both_primary_keys(conn: psycopg.Connection[Any], app: pgq.App) -> None:
    """The job list (dashboard, API, CLI) reads all_jobs newest first: the union of jobs and
    job_history must stay one of the same column types (migration 0014), or the planner
    appends both tables whole and sorts them (734 ms at a million jobs)."""
    conn.execute(
        "insert into pgq.jobs (task, tags) select 't', case when i % 100 = 0 then array['rare'] end"
        "  from generate_series(1, 20000) i"
    )
    conn.execute(
        "insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts, run_at,"
        " created_at, finished_at) select 100000 + i, 'default', 't', '{}', 0, 'completed', 1, 3, now(), now(), now()"
        " from generate_series(1, 20000) i"
    )
    conn.execute("analyze pgq.jobs")
    conn.execute("analyze pgq.job_history")
    sql, names = positional(query("job_list", "pgq"))
    conn.execute(f"prepare newest as {sql}")
    values = ", ".join("50" if name == "limit" else "null" for name in names)
    plan = "\n".join(row["QUERY PLAN"] for row in conn.execute(f"explain (costs off) execute newest({values})"))
    assert "Merge Append" in plan and "Seq Scan" not in plan, plan
    tagged = "\n".join(
        row["QUERY PLAN"]
        for row in conn.execute(
            "explain (costs off) select * from pgq.all_jobs where tags @> array['rare'] order by id desc limit 50"
        )
    )
    # The rows are in the partition of the history from before partitions (0018).
    assert "jobs_tags_idx" in tagged and "job_history_legacy_tags_idx" in tagged, tagged


def test_a_prune_with_nothing_expired_reads_no_history(conn: psycopg.Connection[Any]) -> None:
    """Every sweep runs the prune; when fewer than a batch of rows have expired it must
    stop at the shortest retention, not walk the whole history in finished_at order
    looking for more (it took 2 s a sweep with 10 million rows)."""
    conn.execute(
        """insert into pgq.job_history (id, queue, task, args, priority, status, attempts,
               max_attempts, run_at, created_at, started_at, finished_at)
           select -g, 'default', 'old', '{}', 0, case when g %% 10 = 0 then 'failed' else 'completed' end,
                  1, 3, now(), now(), now(), now() - interval '1 hour' + g * interval '1 ms'
             from generate_series(1, %s) g""",
        [BACKLOG],
    )
    conn.execute("analyze pgq.job_history")
    params = {"completed": 86400.0, "failed": 30 * 86400.0, "cancelled": 86400.0, "batch": 1000}
    # Completed and cancelled jobs go row by row everywhere (failed ones are kept longer);
    # every status in the partitions that are never dropped whole while they take rows.
    plans = [
        explained(conn, "sweep_prune_history", {**params, "statuses": ["completed", "cancelled"], "shortest": 86400.0}),
        explained(conn, "sweep_prune_history_in", params, table="job_history_legacy"),
        explained(conn, "sweep_prune_history_in", params, table="job_history_default"),
    ]
    for plan in plans:
        text = "\n".join(plan)
        # The default partition is empty here: reading its no pages in a row is its cheapest plan.
        scans = [
            line
            for line in plan
            if "Seq Scan on job_history" in line and "(never executed)" not in line and "_default" not in line
        ]
        assert scans == [], text
        assert total_buffers(plan) <= 20, text


def test_a_grouped_claim_locks_the_jobs_it_chose_by_primary_key(conn: psycopg.Connection[Any], app: pgq.App) -> None:
    """claim_group_walk() (migration 0019) ended by locking its chosen jobs with the queue and
    ``status = 'pending'`` among the conditions, which jobs_claim_idx fits too: planned while
    the freshly filled table had no statistics, the lock read every pending job of the queue
    (20,000 rows for 20 ids), and on PostgreSQL 18 the walk's probe sorted the claim index
    once per group. Since 0020 both follow their index, whatever the statistics."""
    conn.execute("alter table pgq.jobs set (autovacuum_enabled = false)")
    app.set_queue("default", group_concurrency=1)
    app.enqueue_many([pgq.JobSpec("noop", group=f"g{i % 50}") for i in range(BACKLOG)])
    notices = _nested_plans(conn)
    for _ in range(7):  # past the custom plans a plpgsql statement starts with
        notices.clear()
        conn.execute("begin")
        taken = conn.execute("select * from pgq.claim_group_walk('default', '', null, now(), '{}', 20)").fetchall()
        conn.execute("rollback")
        assert len(taken) == 20
    conn.execute("set auto_explain.log_min_duration = -1")
    walk = next(n for n in notices if "LockRows" in n and "Recursive Union" in n)
    lock = walk[walk.index("LockRows") :]
    assert "Index Scan using jobs_pkey" in lock and "jobs_claim_idx" not in lock, walk
    assert total_buffers(walk.splitlines()) <= 20 * 20, walk


def test_the_finish_keeps_one_plan_for_every_batch_size(conn: psycopg.Connection[Any], app: pgq.App) -> None:
    """finish_completed() made a custom plan for every call whose batch was smaller than the
    generic plan's guess: planning the delete that moves rows into the partitioned history
    cost 1.5-2 ms of server time, and a worker at concurrency 5 drained at 1,700 jobs/s
    (4,100-4,300 with one plan). Since migration 0020 it keeps the generic plan (its ids a
    parameter, not constants), as claim_jobs() does; the plan itself is the one
    test_the_finish_is_driven_by_its_outcomes_whatever_the_statistics reads."""
    worker_id = uuid.uuid4()
    conn.execute(
        query("worker_register", "pgq"),
        {"id": worker_id, "name": "t", "host": "h", "pid": 1, "queues": ["default"], "concurrency": 5,
         "version": "t", "tasks": None},
    )  # fmt: skip
    conn.execute("alter table pgq.jobs set (autovacuum_enabled = false)")
    app.enqueue_many([pgq.JobSpec("noop") for _ in range(BACKLOG)])  # a fresh queue: no statistics yet
    notices = _nested_plans(conn)
    for _ in range(8):  # past the custom plans a plpgsql statement starts with
        notices.clear()
        rows = conn.execute("select * from pgq.claim_jobs(%s, '{default}', 5)", [worker_id]).fetchall()
        refused = conn.execute(
            "select * from pgq.finish_completed(%s, %s, %s, %s)",
            [worker_id, [r["id"] for r in rows], [r["queue"] for r in rows], [r["attempts"] for r in rows]],
        ).fetchall()
        assert len(rows) == 5 and refused == []
    conn.execute("set auto_explain.log_min_duration = -1")
    finish = next(n for n in notices if "Delete on jobs" in n)
    assert re.search(r"id = ANY \(\$\d+\)", finish), finish
