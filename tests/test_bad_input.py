"""Bad input gets a clear pgq error, and nothing is written."""

from __future__ import annotations

import decimal
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest

import pgq


def assert_no_jobs(conn: Any) -> None:
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"args": {"when": datetime(2026, 1, 1)}}, pgq.ArgsNotSerializable, r"args\['when'\] is a datetime"),
        ({"args": {"a": {"b": [1, {2, 3}]}}}, pgq.ArgsNotSerializable, r"args\['a'\]\['b'\]\[1\] is a set"),
        ({"args": {"price": decimal.Decimal("1.5")}}, pgq.ArgsNotSerializable, "is a Decimal"),
        ({"args": {"x": float("nan")}}, pgq.ArgsNotSerializable, r"args\['x'\] is a float \(nan\)"),
        ({"args": {1: "a"}}, pgq.InvalidJob, "must have string keys"),
        ({"args": [1, 2]}, pgq.InvalidJob, "must be a dict of keyword arguments, got list"),
        ({"args": {"s": "a\x00b"}}, pgq.ArgsNotSerializable, "NUL character"),
        ({"args": {"blob": "x" * 2_000_000}}, pgq.PayloadTooLarge, "over the limit of 1048576 bytes"),
        ({"run_at": datetime(2030, 1, 1)}, pgq.InvalidJob, "has no time zone"),
        ({"run_at": "2030-01-01"}, pgq.InvalidJob, "run_at must be a datetime"),
        ({"delay": -1}, pgq.InvalidJob, "delay must be zero or positive"),
        ({"delay": timedelta(seconds=-5)}, pgq.InvalidJob, "delay must be zero or positive"),
        ({"delay": "5"}, pgq.InvalidJob, "delay must be seconds"),
        ({"delay": 5, "run_at": datetime(2030, 1, 1).astimezone()}, pgq.InvalidJob, "not both"),
        ({"queue": ""}, pgq.InvalidJob, "queue must be 1-128"),
        ({"queue": "emails; drop table pgq.jobs"}, pgq.InvalidJob, "queue must be 1-128"),
        ({"priority": 1.5}, pgq.InvalidJob, "priority must be an integer"),
        ({"priority": 2**40}, pgq.InvalidJob, "priority must be between"),
        ({"max_attempts": 0}, pgq.InvalidJob, "max_attempts must be between 1"),
        ({"key": ""}, pgq.InvalidJob, "key must be a non-empty string"),
        ({"key": 42}, pgq.InvalidJob, "key must be a non-empty string"),
    ],
)
def test_enqueue_rejects(app: pgq.App, conn: Any, kwargs: dict[str, Any], error: type, message: str) -> None:
    kwargs = dict(kwargs)  # the parameter dict is shared by both servers' runs
    args = kwargs.pop("args", {"ok": 1})
    with pytest.raises(error, match=message) as raised:
        app.enqueue("task", args, **kwargs)
    assert isinstance(raised.value, pgq.PgqError)
    assert_no_jobs(conn)


def test_payload_limit_is_configurable(database_url: str, conn: Any) -> None:
    app = pgq.App(database_url, max_payload_bytes=50)
    with pytest.raises(pgq.PayloadTooLarge, match="over the limit of 50 bytes"):
        app.enqueue("t", {"text": "x" * 60})
    assert app.enqueue("t", {"text": "short"}) > 0
    app.close()


def test_unknown_task_with_strict(app: pgq.App, conn: Any) -> None:
    @app.task
    def known(n: int) -> None: ...

    with pytest.raises(pgq.UnknownTask, match="unknown task 'unknown'"):
        app.enqueue("unknown", {}, strict=True)
    assert app.enqueue("known", {"n": 1}, strict=True) > 0
    assert app.enqueue("unknown", {}) > 0  # another process may know it


def test_args_checked_against_registered_handler(app: pgq.App, conn: Any) -> None:
    @app.task
    def send_welcome(user_id: int, email: str) -> None: ...

    with pytest.raises(pgq.InvalidJob, match="missing a required argument: 'email'"):
        send_welcome.enqueue(user_id=7)
    with pytest.raises(pgq.InvalidJob, match="unexpected keyword argument 'emial'"):
        app.enqueue("send_welcome", {"user_id": 7, "email": "a", "emial": "b"})
    with pytest.raises(pgq.InvalidJob, match="keyword arguments only"):
        send_welcome.enqueue(7, "a")  # type: ignore[call-arg]
    assert_no_jobs(conn)


def test_one_bad_spec_rejects_the_whole_batch(app: pgq.App, conn: Any) -> None:
    specs = [pgq.JobSpec("t", {"i": i}) for i in range(5)] + [pgq.JobSpec("t", {"bad": object()})]
    with pytest.raises(pgq.ArgsNotSerializable, match="job 5 of the batch"):
        app.enqueue_many(specs)
    with pytest.raises(TypeError, match=r"takes pgq\.JobSpec items"):
        app.enqueue_many([{"task": "t"}])  # type: ignore[list-item]
    assert_no_jobs(conn)


def test_bad_task_declarations() -> None:
    app = pgq.App("postgresql://localhost/unused")
    with pytest.raises(pgq.ConfigurationError, match="backoff of task 'f' must be seconds"):
        app.task(name="f", backoff=-1)(lambda: None)
    with pytest.raises(pgq.ConfigurationError, match="max_attempts of task 'g' must be an integer >= 1"):
        app.task(name="g", max_attempts=0)(lambda: None)
    with pytest.raises(pgq.InvalidJob, match="queue must be"):
        app.task(name="h", queue="bad queue")(lambda: None)

    def twice() -> None: ...

    app.task(name="same")(twice)
    with pytest.raises(pgq.ConfigurationError, match="registered twice"):
        app.task(name="same")(lambda: None)
    with pytest.raises(pgq.ConfigurationError, match="pass_context=True but takes no arguments"):
        app.task(name="ctx", pass_context=True)(lambda: None)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root:hunter2@db/app", "scheme 'mysql', which is not PostgreSQL"),
        ("localhost:5432", "not a PostgreSQL URL"),
        ("postgresql://u:hunter2@h:notaport/db", "port .notaport., which is not a number"),
        ("postgresql://u:hunter2@h:5432/db?sslmod=require", "not a valid PostgreSQL URL.*sslmod"),
        ("", "is empty"),
    ],
)
def test_malformed_database_url(url: str, message: str) -> None:
    with pytest.raises(pgq.ConfigurationError, match=message) as raised:
        pgq.App(url or " ")
    assert "hunter2" not in str(raised.value)


def test_unreachable_database_names_host_and_port_not_password() -> None:
    app = pgq.App("postgresql://alice:hunter2@127.0.0.1:1/shop", connect_timeout=2)
    with pytest.raises(pgq.DatabaseUnavailable) as raised:
        app.enqueue("t", {})
    message = str(raised.value)
    assert "127.0.0.1:1" in message and "database shop" in message and "user alice" in message
    assert "hunter2" not in message


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQ_CONCURRENCY", "lots")
    with pytest.raises(pgq.ConfigurationError, match="PGQ_CONCURRENCY"):
        pgq.App("postgresql://localhost/x")
    monkeypatch.delenv("PGQ_CONCURRENCY")
    with pytest.raises(pgq.ConfigurationError, match="PGQ_SCHEMA"):
        pgq.App("postgresql://localhost/x", schema='pgq"; drop schema public; --')
    with pytest.raises(pgq.ConfigurationError, match="unknown setting"):
        pgq.App("postgresql://localhost/x", concurency=3)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pgq", *args], capture_output=True, text=True, env=full_env, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "t", "--args", "{not json"], "--args is not valid JSON"),
        (["enqueue", "t", "--args", "[1]"], "--args must be a JSON object"),
        (["enqueue", "t", "--delay", "-3"], "delay must be zero or positive"),
        (["enqueue", "t", "--run-at", "tomorrow"], "--run-at 'tomorrow' is not an ISO 8601 time"),
        (["enqueue", "t", "--run-at", "2030-01-01T00:00:00"], "has no time zone"),
        (["enqueue", "t", "--queue", "a b"], "queue must be"),
        (["jobs", "show", "424242"], "no job with id 424242"),
        (["enqueue", "t", "--depends-on", "12,x"], "--depends-on takes comma-separated job ids"),
        (["enqueue", "t", "--depends-on", "424242"], "depends_on names jobs that do not exist: 424242"),
        (["enqueue", "t", "--unique-for", "60"], "unique_for needs a key"),
        (["enqueue", "t", "--key", "k", "--debounce", "0"], "debounce must be more than 0 s"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(database_url: str, conn: Any, args: list[str], message: str) -> None:
    result = run_cli(*args, "--database-url", database_url)
    assert result.returncode == 2, result
    assert result.stderr.startswith("pgq: error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert_no_jobs(conn)


def test_cli_unreachable_and_unmigrated(empty_database_url: str) -> None:
    result = run_cli("jobs", "list", "--database-url", "postgresql://bob:hunter2@127.0.0.1:1/x")
    assert result.returncode == 2
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in result.stderr and "hunter2" not in result.stderr
    result = run_cli("jobs", "list", "--database-url", empty_database_url)
    assert result.returncode == 2 and "run `pgq migrate`" in result.stderr
    result = run_cli("jobs", "list", "--status", "done", "--database-url", empty_database_url)
    assert result.returncode == 2 and "invalid choice" in result.stderr
