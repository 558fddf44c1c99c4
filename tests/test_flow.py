"""Flow control (issue 10): limits declared per queue, enforced inside the claim.

These tests call the claim statements directly on a real database, so each
claim's outcome is exact; tests/test_flow_process.py runs real worker
processes and checks the limits from job_history's own timestamps.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

import pgq
from pgq.db.queries import query
from pgq.db.session import Session
from pgq.flow import parse_rate
from pgq.job import Job
from pgq.migrate_support import earlier_sql
from pgq.settings import Settings
from pgq.worker.completer import Completer
from pgq.worker.outcome import Outcome
from pgq.worker.producer import Producer
from tests.processes import ROOT
from tests.rows import add_worker
from tests.test_operations import assert_error, pgq_cli


def claim_limited(conn: psycopg.Connection[Any], worker_id: uuid.UUID, queue: str, limit: int) -> list[dict[str, Any]]:
    return conn.execute(
        query("job_claim_limited", "pgq"), {"worker_id": worker_id, "queue": queue, "limit": limit}
    ).fetchall()


def claim(conn: psycopg.Connection[Any], worker_id: uuid.UUID, queues: list[str], limit: int) -> list[dict[str, Any]]:
    return conn.execute(
        query("job_claim", "pgq"), {"worker_id": worker_id, "queues": queues, "limit": limit}
    ).fetchall()


def finish(conn: psycopg.Connection[Any], worker_id: uuid.UUID, rows: list[dict[str, Any]]) -> None:
    conn.execute(
        query("job_finish_many", "pgq"),
        {
            "worker_id": worker_id,
            "id": [r["id"] for r in rows],
            "queue": [r["queue"] for r in rows],
            "attempt": [r["attempts"] for r in rows],
            "kind": ["completed"] * len(rows),
            "result": [None] * len(rows),
            "error": [None] * len(rows),
            "delay": [None] * len(rows),
        },
    )


# ------------------------------------------------------------------ settings


def test_rates_parse() -> None:
    assert parse_rate("10/s") == (10, 1.0)
    assert parse_rate("100/min") == (100, 60.0)
    assert parse_rate("5/h") == (5, 3600.0)
    assert parse_rate("2/30s") == (2, 30.0)
    assert parse_rate("3 / 2 minutes") == (3, 120.0)
    assert parse_rate((7, timedelta(seconds=2))) == (7, 2.0)
    assert parse_rate(None) is None and parse_rate("none") is None


def test_set_queue_before_any_job_and_read_it_back(app: pgq.App, conn: Any) -> None:
    info = app.set_queue("mail", concurrency=3, rate="10/s", group_concurrency=1, group_rate="5/min")
    assert (info.concurrency, info.rate, info.group_concurrency, info.group_rate) == (3, "10/s", 1, "5/min")
    assert app.get_queue("mail") == info
    assert [q.rate for q in app.list_queues() if q.name == "mail"] == ["10/s"]
    # Only the options given change; None removes a limit.
    info = app.set_queue("mail", rate=None, concurrency=5)
    assert (info.concurrency, info.rate, info.group_concurrency, info.group_rate) == (5, None, 1, "5/min")
    info = app.set_queue("mail", rate=(2, 30))
    assert info.rate == "2/30s"
    assert app.get_queue("nothing-yet").concurrency is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number >= 1 or none, got 0"),
        ({"concurrency": "many"}, "concurrency must be a whole number >= 1 or none"),
        ({"concurrency": True}, "concurrency must be a whole number"),
        ({"rate": "10 per second"}, "write it like 10/s, 100/min, 5/h"),
        ({"rate": "0/s"}, "the count must be at least 1"),
        ({"rate": "10/fortnight"}, "is not a rate"),
        ({"group_rate": (1, -5)}, "the period must be between 1 ms and a year"),
        ({"group_concurrency": -1}, "group_concurrency must be a whole number >= 1"),
        ({"max_pending": -1}, "max_pending must be a whole number >= 0"),
        ({"on_full": "block"}, "on_full must be 'reject' or 'drop_oldest'"),
    ],
)
def test_bad_limits_are_refused_and_change_nothing(
    app: pgq.App, conn: Any, options: dict[str, Any], message: str
) -> None:
    app.set_queue("q", concurrency=2)
    with pytest.raises(pgq.ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        app.set_queue("q", **options)
    assert app.get_queue("q").concurrency == 2
    assert conn.execute("select count(*) as n from pgq.queues").fetchone()["n"] == 1


def test_bad_queue_name_and_group(app: pgq.App) -> None:
    with pytest.raises(pgq.ConfigurationError, match="queue must be 1-128"):
        app.set_queue("no spaces", concurrency=1)
    for group in ("", "x" * 256, 42):
        with pytest.raises(pgq.InvalidJob, match="group must be a non-empty string of at most 255"):
            app.enqueue("t", group=group)  # type: ignore[arg-type]
    job = app.get_job(app.enqueue("t", group="tenant:42"))
    assert job is not None and job.group_key == "tenant:42"
    ids = app.enqueue_many([pgq.JobSpec("t", group="a"), pgq.JobSpec("t"), pgq.JobSpec("t", group="b")])
    assert [app.get_job(i).group_key for i in ids] == ["a", None, "b"]  # type: ignore[union-attr]


# --------------------------------------------------------------------- claim


def test_concurrency_limit_counts_running_jobs(app: pgq.App, conn: Any) -> None:
    app.set_queue("q", concurrency=2)
    app.enqueue_many([pgq.JobSpec("t", queue="q") for _ in range(5)])
    worker = add_worker(conn, queues=["q"], concurrency=10)
    # The claim of queues without limits leaves a limited queue alone.
    assert claim(conn, worker, ["q"], 10) == []
    first = claim_limited(conn, worker, "q", 10)
    assert len(first) == 2 and all(app.get_job(r["id"]).status == "running" for r in first)  # type: ignore[union-attr]
    assert claim_limited(conn, worker, "q", 10) == []
    finish(conn, worker, first[:1])
    assert len(claim_limited(conn, worker, "q", 10)) == 1
    # Removing the limit: the rest may run.
    app.set_queue("q", concurrency=None)
    assert len(claim_limited(conn, worker, "q", 10)) == 2


def test_jobs_running_before_a_limit_is_set_count_against_it(app: pgq.App, conn: Any) -> None:
    """Unlimited claims write no entry of jobs_running_idx (limit_slot stays null): set_queue
    marks the jobs already running when it sets a concurrency limit, so they count."""
    app.enqueue_many([pgq.JobSpec("t", queue="q") for _ in range(5)])
    worker = add_worker(conn, queues=["q"], concurrency=10)
    early = claim(conn, worker, ["q"], 2)
    assert len(early) == 2
    assert conn.execute("select count(*) as n from pgq.jobs where limit_slot").fetchone()["n"] == 0
    app.set_queue("q", concurrency=2)
    assert claim_limited(conn, worker, "q", 10) == []  # the two early jobs fill it
    finish(conn, worker, early[:1])
    assert len(claim_limited(conn, worker, "q", 10)) == 1
    # A worker that hears of the limit marks its own running jobs too (a claim in flight
    # while set_queue marked them): the query it runs.
    other = add_worker(conn, queues=["r"], concurrency=10)
    app.enqueue("t", queue="r")
    [late] = claim(conn, other, ["r"], 1)
    conn.execute(query("job_mark_limit_slots", "pgq"), {"worker_id": other, "queues": ["r"], "held": [late["id"]]})
    assert conn.execute("select limit_slot from pgq.jobs where id = %s", [late["id"]]).fetchone()["limit_slot"]


def test_a_dead_or_paused_worker_claims_nothing(app: pgq.App, conn: Any) -> None:
    app.set_queue("q", concurrency=5)
    app.enqueue("t", queue="q")
    worker = add_worker(conn, queues=["q"], concurrency=10)
    conn.execute("update pgq.workers set status = 'dead' where id = %s", [worker])
    assert claim_limited(conn, worker, "q", 10) == []
    other = add_worker(conn, queues=["q"], concurrency=10)
    app.pause_queue("q")
    assert claim_limited(conn, other, "q", 10) == []
    app.resume_queue("q")
    assert len(claim_limited(conn, other, "q", 10)) == 1


def test_rate_limit_spaces_starts_evenly_and_says_when_the_next_is_due(app: pgq.App, conn: Any) -> None:
    app.set_queue("q", rate="20/s")
    app.enqueue_many([pgq.JobSpec("t", queue="q") for _ in range(100)])
    worker = add_worker(conn, queues=["q"], concurrency=10)
    started = []
    import time

    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:  # a hot loop of claims: the rate, not the loop, sets the pace
        rows = claim_limited(conn, worker, "q", 10)
        assert len(rows) <= 1
        started += [r["started_at"] for r in rows]
        if not rows:
            wait = conn.execute(query("job_next_due", "pgq"), {"queues": ["q"]}).fetchone()["wait"]
            assert wait is None or -0.01 <= float(wait) <= 0.05  # (the token may fall due meanwhile)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(started)]
    assert started and min(gaps) >= 0.05, gaps
    assert 8 <= len(started) <= 13, started


def test_group_concurrency_round_robin_and_order(app: pgq.App, conn: Any) -> None:
    app.set_queue("q", group_concurrency=1)
    big = app.enqueue_many([pgq.JobSpec("t", queue="q", group="big") for _ in range(6)])
    small = app.enqueue_many([pgq.JobSpec("t", queue="q", group="small") for _ in range(2)])
    loose = app.enqueue("t", queue="q")  # no group: not held by group limits
    worker = add_worker(conn, queues=["q"], concurrency=10)
    first = claim_limited(conn, worker, "q", 10)
    # One job per group (concurrency 1 each), each group's first in enqueue order.
    assert sorted(r["id"] for r in first) == sorted([big[0], small[0], loose])
    assert claim_limited(conn, worker, "q", 10) == []
    finish(conn, worker, first)
    second = claim_limited(conn, worker, "q", 10)
    assert sorted(r["id"] for r in second) == [big[1], small[1]]
    finish(conn, worker, second)
    order = []
    while rows := claim_limited(conn, worker, "q", 10):
        assert len(rows) == 1
        order.append(rows[0]["id"])
        finish(conn, worker, rows)
    assert order == big[2:]


def test_groups_are_served_round_robin_not_oldest_first(app: pgq.App, conn: Any) -> None:
    app.set_queue("q", group_concurrency=100)
    a = app.enqueue_many([pgq.JobSpec("t", queue="q", group="a") for _ in range(10)])
    b = app.enqueue_many([pgq.JobSpec("t", queue="q", group="b") for _ in range(10)])
    c = app.enqueue_many([pgq.JobSpec("t", queue="q", group="c") for _ in range(10)])
    worker = add_worker(conn, queues=["q"], concurrency=10)
    taken = [r["id"] for r in claim_limited(conn, worker, "q", 6)]
    assert sorted(taken) == sorted(a[:2] + b[:2] + c[:2])
    # The group served longest ago goes first: with one slot at a time, a, b, c take turns.
    turns = [claim_limited(conn, worker, "q", 1)[0]["id"] for _ in range(3)]
    assert {turns[0], turns[1], turns[2]} == {a[2], b[2], c[2]}


def test_the_grouped_claim_takes_what_the_loop_of_0006_took(app: pgq.App, conn: Any) -> None:
    """Migration 0019 takes the first pass of a grouped claim by set (claim_group_walk). On the
    same rows, cursor and n it must claim exactly what the loop of 0006 claimed, and leave the
    cursor on the same group: random queues (full groups, delayed jobs, jobs without a group,
    cursors on a group, between groups, on the jobs without one, unset), both functions side
    by side, each in a transaction rolled back."""
    loop_0006 = earlier_sql(
        ROOT / "migrations" / "versions" / "0006_finish_function.py",
        "create or replace function {schema}.claim_grouped(",
        "$$;",
    )
    loop_0006 = loop_0006.replace("{schema}.claim_grouped(", "{schema}.claim_grouped_0006(")
    conn.execute(loop_0006.replace("{schema}", "pgq"))
    worker = add_worker(conn, queues=["q"], concurrency=100)
    rng = random.Random(19)
    seen = {"second pass": 0, "wrapped": 0, "full group left out": 0, "no group": 0}

    def claimed(function: str, n: int) -> tuple[list[int], str | None]:
        with conn.transaction():
            ids = sorted(
                r["id"]
                for r in conn.execute(
                    f"select id from pgq.{function}(%s, 'q', (select q from pgq.queues q where q.name = 'q'), %s)",
                    [worker, n],
                )
            )
            cursor = conn.execute("select group_cursor from pgq.queues where name = 'q'").fetchone()["group_cursor"]
            outcome = ids, cursor
            raise psycopg.Rollback()
        return outcome

    for _ in range(80):
        conn.execute("delete from pgq.jobs")
        concurrency = rng.choice([1, 1, 2, 3])
        app.set_queue("q", group_concurrency=concurrency)
        groups = [f"g{i:02}" for i in sorted(rng.sample(range(30), rng.randint(1, 10)))]
        specs = [
            pgq.JobSpec("t", queue="q", group=group, priority=rng.randint(0, 2), delay=rng.choice([None, None, 3600]))
            for group in groups
            for _ in range(rng.randint(0, 4))
        ]
        specs += [pgq.JobSpec("t", queue="q", priority=rng.randint(0, 2)) for _ in range(rng.choice([0, 0, 2]))]
        ids = app.enqueue_many(specs) if specs else []
        running = rng.sample(ids, min(len(ids), rng.randint(0, 4)))
        conn.execute(
            "update pgq.jobs set status = 'running', limit_slot = true, worker_id = %s, attempts = 1, "
            "started_at = now() where id = any(%s)",
            [worker, running],
        )
        cursor = rng.choice([None, "", *groups, groups[0] + "x", "a", "z"])
        conn.execute("update pgq.queues set group_cursor = %s where name = 'q'", [cursor])
        n = rng.randint(1, 12)
        new, old = claimed("claim_grouped", n), claimed("claim_grouped_0006", n)
        assert new == old, (concurrency, cursor, n)
        taken = conn.execute("select group_key from pgq.jobs where id = any(%s)", [new[0]]).fetchall()
        keys = [r["group_key"] for r in taken]
        seen["second pass"] += len(keys) > len(set(keys))
        seen["wrapped"] += any(k is not None and cursor is not None and k <= cursor for k in keys)
        seen["no group"] += None in keys
        busy = conn.execute(
            "select count(distinct group_key) as n from pgq.jobs where status = 'running' and group_key is not null"
        ).fetchone()["n"]
        seen["full group left out"] += concurrency == 1 and busy > 0 and len(new[0]) > 0
    assert all(seen.values()), seen


async def test_outcomes_being_written_hold_back_a_capped_queue_not_the_other_groups(app: pgq.App, conn: Any) -> None:
    """While a worker's outcomes of a queue are unwritten, the database counts their jobs as
    running. Plain completions ride on the next claim and are written first (the test after
    this one); outcomes that cannot (here: completions with a result) are the completer's to
    write. A queue-wide limit would find no room: the producer leaves such a queue to the
    write (which wakes it). A queue with group limits alone still has the other groups: the
    producer claims them at once instead of waiting out the write (a grouped drain ran at
    11,100-11,700 jobs/s with the wait, 15,600-16,700 without)."""
    app.set_queue("grouped", group_concurrency=1)
    app.set_queue("capped", concurrency=5)
    grouped = app.enqueue_many([pgq.JobSpec("t", queue="grouped", group=g) for g in "abc"])
    capped = app.enqueue_many([pgq.JobSpec("t", queue="capped") for _ in range(3)])
    worker_id = add_worker(conn, queues=["grouped", "capped"], concurrency=10)
    done = claim_limited(conn, worker_id, "grouped", 1) + claim_limited(conn, worker_id, "capped", 1)
    assert [r["id"] for r in done] == [grouped[0], capped[0]]

    async def never(owner: uuid.UUID, columns: Any) -> set[int]:
        raise AssertionError("nothing is written in this test")

    completer = Completer(never)
    claimed, started = await _one_round(app, worker_id, done, completer, result_json="1")
    assert claimed == 2 and sorted(job.id for job in started) == grouped[1:]
    running = conn.execute("select count(*) as n from pgq.jobs where queue = 'capped' and status = 'running'")
    assert running.fetchone()["n"] == 1  # the capped queue was left to the write


async def test_plain_completions_ride_on_the_next_limited_claim_and_free_their_slots(app: pgq.App, conn: Any) -> None:
    """The same worker with plain completions: the first limited claim writes them, so the
    capped queue has room again in the same round (migration 0021)."""
    app.set_queue("grouped", group_concurrency=1)
    app.set_queue("capped", concurrency=1)
    grouped = app.enqueue_many([pgq.JobSpec("t", queue="grouped", group=g) for g in "ab"])
    capped = app.enqueue_many([pgq.JobSpec("t", queue="capped") for _ in range(2)])
    worker_id = add_worker(conn, queues=["grouped", "capped"], concurrency=10)
    done = claim_limited(conn, worker_id, "grouped", 1) + claim_limited(conn, worker_id, "capped", 1)
    written: list[set[int]] = []

    async def never(owner: uuid.UUID, columns: Any) -> set[int]:
        raise AssertionError("carried by the claim, not written by the completer")

    async def on_written(batch: list[Outcome], accepted: set[int]) -> None:
        written.append(accepted)

    completer = Completer(never, on_written=on_written)
    claimed, started = await _one_round(app, worker_id, done, completer)
    assert written == [{grouped[0], capped[0]}] and completer.pending() == 0
    assert claimed == 2 and sorted(job.id for job in started) == sorted([grouped[1], capped[1]])
    history = conn.execute("select id from pgq.job_history order by id").fetchall()
    assert [r["id"] for r in history] == sorted([grouped[0], capped[0]])


async def _one_round(
    app: pgq.App, worker_id: uuid.UUID, done: list[Any], completer: Completer, result_json: str | None = None
) -> tuple[int, list[Job]]:
    """One claim round of a producer of the queues "grouped" and "capped", whose completer
    holds the completions of the claimed rows ``done``; what it claimed, and the jobs started."""
    for r in done:
        job = Job(r["id"], r["queue"], r["task"], r["args"], r["priority"], "running", r["attempts"],
                  r["max_attempts"], r["run_at"], r["created_at"], worker_id=worker_id)  # fmt: skip
        completer.add(Outcome(job, "completed", result_json=result_json))
    started: list[Job] = []
    worker = SimpleNamespace(
        id=worker_id,
        schema="pgq",
        queues=["grouped", "capped"],
        completer=completer,
        start=started.append,
        owned_ids=completer.unflushed_ids,  # no job started yet: those it holds are its outcomes
    )
    session = Session(app.url, Settings(database_url=app.url), "test producer", 10.0)
    try:
        producer = Producer(worker, session)  # type: ignore[arg-type]
        claimed, _ = await producer._round(10)
    finally:
        await session.close()
    return claimed, started


def test_group_rate(app: pgq.App, conn: Any) -> None:
    app.set_queue("q", group_rate="1/h")
    a = app.enqueue_many([pgq.JobSpec("t", queue="q", group="a") for _ in range(3)])
    b = app.enqueue_many([pgq.JobSpec("t", queue="q", group="b") for _ in range(3)])
    worker = add_worker(conn, queues=["q"], concurrency=10)
    assert sorted(r["id"] for r in claim_limited(conn, worker, "q", 10)) == [a[0], b[0]]
    assert claim_limited(conn, worker, "q", 10) == []
    wait = conn.execute(query("job_next_due", "pgq"), {"queues": ["q"]}).fetchone()["wait"]
    assert 3500 < float(wait) <= 3600
    # A faster rate applies at once.
    app.set_queue("q", group_rate="1000/s")
    assert len(claim_limited(conn, worker, "q", 10)) == 2


def test_the_next_due_is_the_first_of_the_next_token_and_the_next_delayed_job(app: pgq.App, conn: Any) -> None:
    """job_next_due, what a worker asks after its limited claims came back empty: one round
    trip for the next rate token and the next delayed job."""

    def due() -> float | None:
        row = conn.execute(query("job_next_due", "pgq"), {"queues": ["q", "other"]}).fetchone()
        return None if row["wait"] is None else float(row["wait"])

    app.set_queue("q", rate="1/h")
    assert due() is None  # no token spent, no delayed job
    worker = add_worker(conn, queues=["q"], concurrency=10)
    app.enqueue("t", queue="q")
    assert len(claim_limited(conn, worker, "q", 10)) == 1  # spends the hour's token
    wait = due()
    assert wait is not None and 3500 < wait <= 3600
    app.enqueue("t", queue="other", delay=60)
    wait = due()
    assert wait is not None and 50 < wait <= 60


# ------------------------------------------------------------------- explain


def test_explain_names_each_blocker(app: pgq.App, conn: Any) -> None:
    assert "no such job" in app.explain(999_999)
    delayed = app.enqueue("t", queue="q", delay=3600)
    text = app.explain(delayed)
    assert "its run_at is in the future" in text
    assert "no live worker serves its queue q" in text
    worker = add_worker(conn, queues=["q", "r"], concurrency=10)

    app.set_queue("q", concurrency=1)
    running = app.enqueue("t", queue="q")
    waiting = app.enqueue("t", queue="q")
    assert [r["id"] for r in claim_limited(conn, worker, "q", 5)] == [running]
    text = app.explain(waiting)
    assert f"queue q concurrency is full: 1 of 1 running (jobs {running})" in text
    assert "no live worker" not in text
    assert app.explain(running).startswith(f"job {running} is running")

    app.pause_queue("q")
    assert "its queue q is paused" in app.explain(waiting)

    app.set_queue("r", rate="1/h", group_concurrency=1)
    r1 = app.enqueue("t", queue="r", group="g")
    r2 = app.enqueue("t", queue="r", group="g")
    first = claim_limited(conn, worker, "r", 5)
    assert [row["id"] for row in first] == [r1]
    text = app.explain(r2)
    assert "queue r rate limit (1 per 01:00:00) allows the next start at" in text
    assert f"group g concurrency is full: 1 of 1 running (jobs {r1})" in text

    app.set_queue("r", rate=None, group_concurrency=None, group_rate="1/h")
    finish(conn, worker, first)
    assert [row["id"] for row in claim_limited(conn, worker, "r", 5)] == [r2]
    r3 = app.enqueue("t", queue="r", group="g")
    assert "group g rate limit (1 per 01:00:00) allows the next start at" in app.explain(r3)

    spent = app.enqueue("t", queue="s", max_attempts=1)
    conn.execute("update pgq.jobs set attempts = 1 where id = %s", [spent])
    assert "it is out of attempts (1 of 1 used)" in app.explain(spent)
    free = app.enqueue("t", queue="r")
    app.set_queue("r", group_rate=None)
    assert "nothing holds it back" in app.explain(free)
    assert conn.execute("select pgq.explain(%s) as t", [free]).fetchone()["t"] == app.explain(free)


# ----------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_queues_set_and_explain(database_url: str, app: pgq.App) -> None:
    result = pgq_cli(database_url, "queues", "set", "mail", "--concurrency", "3", "--rate", "10/s")
    assert result.returncode == 0, result
    assert result.stdout.strip() == "queue mail: concurrency 3, rate 10/s"
    result = pgq_cli(database_url, "queues", "set", "mail", "--rate", "none", "--group-rate", "5/min")
    assert result.stdout.strip() == "queue mail: concurrency 3, group rate 5/min"
    for flags, message in (
        (["--rate", "10 per second"], "write it like 10/s, 100/min"),
        (["--concurrency", "-2"], "--concurrency must be a whole number >= 1 or none"),
        (["--on-full", "block"], "on_full must be 'reject' or 'drop_oldest'"),
        ([], "nothing to set"),
    ):
        assert_error(pgq_cli(database_url, "queues", "set", "mail", *flags), message)
    assert app.get_queue("mail").concurrency == 3
    job = app.enqueue("t", queue="mail", delay=600)
    result = pgq_cli(database_url, "explain", str(job))
    assert result.returncode == 0 and "its run_at is in the future" in result.stdout, result
    assert_error(pgq_cli(database_url, "explain", "abc"), "not a job id")
    result = pgq_cli(database_url, "enqueue", "t", "--queue", "mail", "--group", "tenant:42")
    assert result.returncode == 0, result
    grouped = app.get_job(int(result.stdout))
    assert grouped is not None and grouped.group_key == "tenant:42"
    result = pgq_cli(database_url, "queues", "set", "mail", "--max-pending", "2")
    assert result.stdout.strip() == "queue mail: concurrency 3, group rate 5/min, max pending 2, on full reject"
    assert_error(pgq_cli(database_url, "enqueue", "t", "--queue", "mail"), "queue mail is full: 2 pending jobs")
    table = pgq_cli(database_url, "queues", "list").stdout
    assert "concurrency 3, group rate 5/min, max pending 2 (reject, 1 rejected)" in table, table


# ----------------------------------------------------------------- admission


def test_max_pending_rejects_exactly_under_8_concurrent_enqueuers(app: pgq.App, conn: Any) -> None:
    import threading

    app.set_queue("capped", max_pending=50)
    accepted: list[int] = []
    refused: list[pgq.QueueFull] = []
    barrier = threading.Barrier(8)
    lock = threading.Lock()

    def enqueuer() -> None:
        barrier.wait()
        for _ in range(20):
            try:
                job_id = app.enqueue("t", queue="capped")
                with lock:
                    accepted.append(job_id)
            except pgq.QueueFull as exc:
                with lock:
                    refused.append(exc)

    threads = [threading.Thread(target=enqueuer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 50 and len(refused) == 110
    assert conn.execute("select count(*) as n from pgq.jobs where queue = 'capped'").fetchone()["n"] == 50
    assert refused[0].queue == "capped"
    assert "queue capped is full: 50 pending jobs, max_pending 50" in str(refused[0])
    assert "--max-pending" in str(refused[0])
    assert app.get_queue("capped").rejected == 110
    assert [s.rejected for s in app.stats() if s.queue == "capped"] == [110]
    # A whole batch past the limit is refused, nothing written.
    app.set_queue("capped", max_pending=52)
    with pytest.raises(pgq.QueueFull, match="queue capped is full"):
        app.enqueue_many([pgq.JobSpec("t", queue="capped") for _ in range(3)])
    assert len(app.enqueue_many([pgq.JobSpec("t", queue="capped") for _ in range(2)])) == 2
    # A batch over two capped queues, one of them full: nothing of it is written.
    app.set_queue("roomy", max_pending=10)
    with pytest.raises(pgq.QueueFull, match="queue capped is full"):
        app.enqueue_many([pgq.JobSpec("t", queue="roomy"), pgq.JobSpec("t", queue="capped")])
    assert conn.execute("select count(*) as n from pgq.jobs where queue = 'roomy'").fetchone()["n"] == 0
    assert len(app.enqueue_many([pgq.JobSpec("t", queue="roomy") for _ in range(10)])) == 10
    # Other queues are not affected, and None removes the limit.
    app.enqueue("t", queue="other")
    app.set_queue("capped", max_pending=None)
    app.enqueue("t", queue="capped")


def test_max_pending_drop_oldest_cancels_into_history(app: pgq.App, conn: Any) -> None:
    app.set_queue("latest", max_pending=3, on_full="drop_oldest")
    ids = [app.enqueue("t", {"n": i}, queue="latest") for i in range(5)]
    live = [r["id"] for r in conn.execute("select id from pgq.jobs where queue = 'latest' order by id").fetchall()]
    assert live == ids[2:]
    for job_id in ids[:2]:
        job = app.get_job(job_id)
        assert job is not None and job.status == "cancelled"
        assert job.errors[-1]["type"] == "Dropped"
        assert "queue latest is full (max_pending 3)" in job.errors[-1]["message"]
    assert app.get_queue("latest").rejected == 2
    assert len(app.enqueue_many([pgq.JobSpec("t", queue="latest") for _ in range(2)])) == 2
    assert conn.execute("select count(*) as n from pgq.jobs where queue = 'latest'").fetchone()["n"] == 3
