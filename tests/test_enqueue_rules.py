"""One rule set for every way a job is written (issue 16 item 5, issue 20).

The rules of a job row are constraints of pgq.jobs (migration 0007; since 0010 the
rules on single values are its columns' domains), so they hold for pgq's Python
enqueue, for its COPY, for pgq.enqueue() in SQL, for a hand-written insert and for an
update that sets the column. Python checks the same rules first, for an error before any
round trip; these tests run the same inputs through every path and require the same
verdict from each.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

import pgq
from pgq.enqueueing import Options, copy_payload
from tests.rows import add_history

QUEUES = [
    # accepted
    "default",
    "a",
    "0",
    "emails.high:eu-1_x",
    "A" * 128,
    # refused
    "",
    "a|b",
    "a b",
    "a\n",
    "\na",
    "tab\there",
    "émails",
    "\uff41",  # a full-width "a": a letter to Unicode, not to the rule
    "emoji😀",
    "a/b",
    "x;drop table pgq.jobs",
    "A" * 129,
]


def sql_verdict(conn: Any, call: str, params: list[Any]) -> str | None:
    """None if the SQL call wrote a job, else its error (nothing written either way but the first)."""
    try:
        with conn.transaction():
            conn.execute(call, params)
    except psycopg.Error as exc:
        return str(exc).splitlines()[0]
    return None


def python_verdict(fn: Any) -> str | None:
    try:
        fn()
    except pgq.InvalidJob as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("queue", QUEUES)
def test_queue_names_one_rule_everywhere(app: pgq.App, conn: Any, queue: str) -> None:
    python = python_verdict(lambda: app.enqueue("t", queue=queue))
    many = python_verdict(lambda: app.enqueue_many([pgq.JobSpec("t", queue=queue)]))
    sql = sql_verdict(conn, "select pgq.enqueue('t', queue => %s)", [queue])
    raw = sql_verdict(conn, "insert into pgq.jobs (task, queue) values ('t', %s)", [queue])
    verdicts = {"enqueue": python, "enqueue_many": many, "pgq.enqueue()": sql, "insert": raw}
    refused = {path for path, error in verdicts.items() if error is not None}
    assert refused in (set(), set(verdicts)), verdicts
    if refused:
        assert "queue must be 1-128 ASCII letters, digits" in python  # type: ignore[operator]
        assert "queue must be 1-128 ASCII letters, digits" in sql  # type: ignore[operator]
    # The live table holds exactly the jobs of the paths that accepted.
    written = conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"]
    assert written == (0 if refused else 4)


def test_copy_is_held_to_the_rules_too(conn: Any) -> None:
    """A COPY that skipped Python's checks (a rule changed under a running app, or a bug)
    is refused by the table, as a whole."""
    good = Options.of("t", "ok", 0, 3, None, None, None)
    bad = Options.of("t", "a|b", 0, 3, None, None, None)
    rows = [(0, b"{}", good), (1, b"{}", bad)]
    ids = [row["id"] for row in conn.execute("select nextval('pgq.jobs_id_seq') as id from generate_series(1, 2)")]
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_queue_name_rule"):
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy pgq.jobs (id, args, task, queue, priority, max_attempts, timeout, backoff, group_key) "
                "from stdin (format binary)"
            ) as copy,
        ):
            copy.write(copy_payload(ids, rows))
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 0


@pytest.mark.parametrize(
    ("max_attempts", "accepted"), [(1, True), (1000, True), (0, False), (-1, False), (1001, False)]
)
def test_max_attempts_one_rule_everywhere(app: pgq.App, conn: Any, max_attempts: int, accepted: bool) -> None:
    verdicts = {
        "enqueue": python_verdict(lambda: app.enqueue("t", max_attempts=max_attempts)),
        "enqueue_many": python_verdict(lambda: app.enqueue_many([pgq.JobSpec("t", max_attempts=max_attempts)])),
        "pgq.enqueue()": sql_verdict(conn, "select pgq.enqueue('t', max_attempts => %s)", [max_attempts]),
        "insert": sql_verdict(conn, "insert into pgq.jobs (task, max_attempts) values ('t', %s)", [max_attempts]),
    }
    assert all((error is None) == accepted for error in verdicts.values()), verdicts
    if not accepted:
        assert all("max_attempts must be between 1 and 1000" in str(verdicts[p]) for p in ("enqueue", "pgq.enqueue()"))


def test_a_retry_may_go_one_past_the_attempts_limit(app: pgq.App, conn: Any) -> None:
    """The one exception to max_attempts <= 1000: retrying a job that used them all gives it one more."""
    [job_id] = add_history(conn, status="failed", attempts=1000, max_attempts=1000, run=None)
    app.retry(job_id)
    assert app.get_job(job_id).max_attempts == 1001  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("column", "value", "accepted"),
    [("key", "k", True), ("key", "k" * 255, True), ("key", "", False), ("key", "k" * 256, False),
     ("group", "g", True), ("group", "g" * 255, True), ("group", "", False), ("group", "g" * 256, False)],
)  # fmt: skip
def test_key_and_group_lengths_one_rule_everywhere(
    app: pgq.App, conn: Any, column: str, value: str, accepted: bool
) -> None:
    sql_name = "key" if column == "key" else "group_key"
    verdicts = {
        "enqueue": python_verdict(lambda: app.enqueue("t", **{column: value})),  # type: ignore[arg-type]
        "pgq.enqueue()": sql_verdict(conn, f"select pgq.enqueue('t', {sql_name} => %s)", [value]),
        "insert": sql_verdict(conn, f"insert into pgq.jobs (task, {sql_name}) values ('t', %s)", [value]),
    }
    if column == "key" and accepted:
        conn.execute("delete from pgq.jobs")  # the three paths share the key: check each alone
        verdicts["insert"] = sql_verdict(conn, f"insert into pgq.jobs (task, {sql_name}) values ('t', %s)", [value])
    assert all((error is None) == accepted for error in verdicts.values()), verdicts


def test_key_retries_are_the_sql_function_s_for_both_paths(app: pgq.App, conn: Any, database_url: str) -> None:
    """A key holder committed after the snapshot of a REPEATABLE READ transaction: both
    paths go through insert_job() and raise the same serialization failure; READ COMMITTED
    settles it, from both paths, on the holder's id."""
    results: dict[str, Any] = {}
    for path in ("python", "sql"):
        conn.execute("delete from pgq.jobs")
        with psycopg.connect(database_url) as caller:
            caller.execute("set transaction isolation level repeatable read")
            caller.execute("select 1")  # the snapshot
            holder = app.enqueue("t", key="k")
            try:
                if path == "python":
                    app.enqueue("t", key="k", connection=caller)
                else:
                    caller.execute("select pgq.enqueue('t', key => 'k')")
            except psycopg.errors.SerializationFailure as exc:
                results[path] = type(exc)
            caller.rollback()
            with caller.transaction():
                settled = (
                    app.enqueue("t", key="k", connection=caller)
                    if path == "python"
                    else caller.execute("select pgq.enqueue('t', key => 'k') as id").fetchone()[0]  # type: ignore[index]
                )
            assert settled == holder
    assert results == {"python": psycopg.errors.SerializationFailure, "sql": psycopg.errors.SerializationFailure}


def test_concurrent_keyed_enqueues_from_both_paths_make_one_job(app: pgq.App, conn: Any, database_url: str) -> None:
    ids: list[int] = []

    def python() -> None:
        for _ in range(20):
            ids.append(app.enqueue("t", key="shared", queue="race"))

    def sql() -> None:
        with psycopg.connect(database_url, autocommit=True) as own:
            for _ in range(20):
                ids.append(own.execute("select pgq.enqueue('t', queue => 'race', key => 'shared')").fetchone()[0])  # type: ignore[index]

    threads = [threading.Thread(target=fn) for fn in (python, sql, python, sql)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert conn.execute("select count(*) as n from pgq.jobs where queue = 'race'").fetchone()["n"] == 1


@pytest.mark.parametrize(
    ("assignment", "rule"),
    [
        ("queue = 'a b'", "jobs_queue_name_rule"),
        ("queue = ''", "jobs_queue_name"),
        ("task = ''", "jobs_task_name"),
        ("args = '[1]'", "jobs_args_object"),
        ("errors = '{}'", "jobs_errors_array"),
        ("status = 'completed'", "jobs_status_check"),
        ("progress = 1.5", "jobs_progress_check"),
        ("attempts = -1", "jobs_attempts_check"),
        ("max_attempts = 0", "jobs_attempts_check"),
        ("max_attempts = 5000", "jobs_max_attempts_limit"),
        ("key = ''", "jobs_key_length"),
        ("group_key = repeat('g', 256)", "jobs_group_key_length"),
        ("on_parent_failure = 'ignore'", "jobs_on_parent_failure_check"),
    ],
)
def test_an_update_is_held_to_the_rules_of_what_it_sets(conn: Any, assignment: str, rule: str) -> None:
    """The rules are domains since 0010, checked where a value is written: an update that
    sets a column meets its rule by the same name as an insert does, and the row is kept."""
    job = conn.execute("select pgq.enqueue('t', '{\"n\": 1}') as id").fetchone()["id"]
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        conn.execute(f"update pgq.jobs set {assignment} where id = %s", [job])
    assert refused.value.diag.constraint_name == rule
    row = conn.execute("select queue, task, args, status, attempts, max_attempts from pgq.jobs where id = %s", [job])
    assert row.fetchone() == {
        "queue": "default",
        "task": "t",
        "args": {"n": 1},
        "status": "pending",
        "attempts": 0,
        "max_attempts": 3,
    }
