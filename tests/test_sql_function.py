"""pgq.enqueue(): enqueueing from plain SQL (psql, triggers, other languages)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest


def test_defaults(conn: Any) -> None:
    job_id = conn.execute("select pgq.enqueue('send_welcome') as id").fetchone()["id"]
    row = conn.execute("select * from pgq.jobs where id = %s", [job_id]).fetchone()
    assert (row["task"], row["args"], row["queue"], row["priority"]) == ("send_welcome", {}, "default", 0)
    assert (row["max_attempts"], row["status"], row["key"]) == (3, "pending", None)


def test_all_arguments_by_name(conn: Any) -> None:
    job_id = conn.execute(
        """select pgq.enqueue('report', args => '{"week": 48}', queue => 'reports', priority => 3,
                              run_at => now() + interval '1 hour', key => 'week-48', max_attempts => 5) as id"""
    ).fetchone()["id"]
    row = conn.execute("select *, run_at - created_at as wait from pgq.jobs where id = %s", [job_id]).fetchone()
    assert row["args"] == {"week": 48} and row["queue"] == "reports" and row["priority"] == 3
    assert row["key"] == "week-48" and row["max_attempts"] == 5
    assert row["wait"] == timedelta(hours=1)
    again = conn.execute(
        "select pgq.enqueue('report', '{\"week\": 48}', 'reports', key => 'week-48') as id"
    ).fetchone()["id"]
    assert again == job_id


def test_from_a_trigger(conn: Any) -> None:
    """The use case the SQL function exists for: a job per inserted row, in the same transaction."""
    conn.execute("create table users (id int primary key, email text)")
    conn.execute(
        """create function users_welcome() returns trigger language plpgsql as $$
           begin
             perform pgq.enqueue('send_welcome', jsonb_build_object('user_id', new.id), 'emails',
                                 key => 'welcome:' || new.id);
             return new;
           end $$"""
    )
    conn.execute("create trigger users_welcome after insert on users for each row execute function users_welcome()")
    conn.execute("insert into users values (1, 'a@example.com'), (2, 'b@example.com')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("insert into users values (3, 'c'), (1, 'dup')")  # rolled back as a whole
    rows = conn.execute("select args from pgq.jobs order by id").fetchall()
    assert [r["args"] for r in rows] == [{"user_id": 1}, {"user_id": 2}]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("select pgq.enqueue('')", "task must be a non-empty name"),
        ("select pgq.enqueue('t', '[1, 2]')", "args must be a JSON object"),
        ("select pgq.enqueue('t', 'null'::jsonb)", "args must be a JSON object"),
        ("select pgq.enqueue('t', max_attempts => 0)", "max_attempts must be between 1 and 1000, got 0"),
        ("select pgq.enqueue('t', queue => '')", "queue must be 1-128 ASCII letters"),
    ],
)
def test_bad_calls_are_rejected(conn: Any, call: str, message: str) -> None:
    with pytest.raises(psycopg.Error, match=message):
        conn.execute(call)
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 0


def test_oversized_args(conn: Any) -> None:
    conn.execute("set pgq.max_payload_bytes = 100")
    with pytest.raises(psycopg.Error, match="over the limit of 100 bytes"):
        conn.execute("select pgq.enqueue('t', jsonb_build_object('blob', repeat('x', 200)))")
    conn.execute("reset pgq.max_payload_bytes")
    with pytest.raises(psycopg.Error, match="over the limit of 1048576 bytes"):
        conn.execute("select pgq.enqueue('t', jsonb_build_object('blob', repeat('x', 1100000)))")
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 0


def test_injection_attempts_are_data(conn: Any) -> None:
    evil = "x'); drop table pgq.jobs; --"
    job_id = conn.execute("select pgq.enqueue(%s, '{}', %s, key => %s) as id", [evil, "q", evil]).fetchone()["id"]
    row = conn.execute("select task, key from pgq.jobs where id = %s", [job_id]).fetchone()
    assert row == {"task": evil, "key": evil}
