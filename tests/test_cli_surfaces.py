"""The CLI as an operator meets it: any stored row, secrets, exit codes, pipes, colour, help."""

from __future__ import annotations

import argparse
import json
import os
import pty
import socket
import subprocess
import sys
from typing import Any

import pytest

import pgq
from pgq.display import CUT
from tests.processes import pgq_cli


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_") and k not in ("NO_COLOR", "FORCE_COLOR")}
    env["PGQ_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def nested(depth: int, leaf: Any) -> str:
    return '{"a": ' * depth + json.dumps(leaf) + "}" * depth


@pytest.mark.parametrize("depth", [500, 10_000])
def test_jobs_list_and_show_render_rows_nested_by_sql(database_url: str, conn: Any, depth: int) -> None:
    conn.execute(
        "insert into pgq.jobs (queue, task, args) values ('q', 'deep', %s::jsonb)",
        [nested(depth, {"password": "hunter2"})],
    )
    job_id = conn.execute("select max(id) as id from pgq.jobs").fetchone()["id"]
    for args in (
        ("jobs", "list"),
        ("jobs", "list", "--json"),
        ("jobs", "show", str(job_id)),
        ("jobs", "show", str(job_id), "--json"),
    ):
        result = pgq_cli(database_url, *args)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        assert "hunter2" not in result.stdout and "Traceback" not in result.stderr
    assert CUT in pgq_cli(database_url, "jobs", "show", str(job_id)).stdout
    shown = json.loads(pgq_cli(database_url, "jobs", "show", str(job_id), "--json").stdout)
    assert shown["id"] == job_id and CUT in json.dumps(shown["args"])


def test_results_and_schedule_args_are_redacted_as_in_the_dashboard(database_url: str, app: pgq.App, conn: Any) -> None:
    job_id = app.enqueue("login", {"user": "ada", "password": "hunter2"})
    conn.execute(
        """with d as (delete from pgq.jobs where id = %s returning *)
           insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts, run_at,
                                        created_at, finished_at, result)
           select id, queue, task, args, priority, 'completed', 1, max_attempts, run_at, created_at, now(),
                  '{"api_key": "sk-live-123", "nested": {"db_password": "pw-9"}, "ok": true}'
             from d""",
        [job_id],
    )
    app.add_schedule("nightly", "0 3 * * *", "report", {"token": "t-77"})
    for args in (
        ("jobs", "show", str(job_id)),
        ("jobs", "show", str(job_id), "--json"),
        ("jobs", "list", "--json"),
        ("jobs", "list"),
        ("schedules", "list", "--json"),
    ):
        result = pgq_cli(database_url, *args)
        assert result.returncode == 0, result.stderr
        for secret in ("hunter2", "sk-live-123", "pw-9", "t-77"):
            assert secret not in result.stdout, (args, secret)
    shown = json.loads(pgq_cli(database_url, "jobs", "show", str(job_id), "--json").stdout)
    assert shown["result"] == {"api_key": "[redacted]", "nested": {"db_password": "[redacted]"}, "ok": True}


def test_explain_of_an_unknown_job_exits_2(database_url: str) -> None:
    result = pgq_cli(database_url, "explain", "999999")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "pgq: error: no job with id 999999 (live or in the retained history)"


def test_dashboard_port_errors_are_one_line(database_url: str) -> None:
    result = pgq_cli(database_url, "dashboard", "--port", "99999")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "a port is 1-65535, got 99999" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = pgq_cli(database_url, "dashboard", "--port", str(port))
    assert result.returncode == 2 and result.stdout == "", "nothing says it serves before it does"
    assert result.stderr.strip() == (
        f"pgq: error: port {port} on 127.0.0.1 is in use (another pgq dashboard?): pick another with --port"
    )
    short = pgq_cli(database_url, "dashboard", "--host", "0.0.0.0", "--port", str(port), PGQ_DASHBOARD_TOKEN="abc")
    assert short.returncode == 2 and "at least 16" in short.stderr


def test_a_closed_pipe_ends_quietly(database_url: str, app: pgq.App) -> None:
    app.enqueue_many([pgq.JobSpec("t", {"text": "x" * 200}) for _ in range(300)])
    result = subprocess.run(
        f"{sys.executable} -m pgq jobs list --json --limit 300 | head -n 2",
        shell=True,
        capture_output=True,
        text=True,
        env=env_for(database_url),
        timeout=60,
    )
    assert result.stdout.splitlines() == ["[", "  {"]
    assert result.stderr == "", result.stderr


def run_in_terminal(database_url: str, *args: str, **extra: str) -> str:
    """Output of ``pgq ARGS`` run with a pseudo-terminal as stdout, as a person sees it."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pgq", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env_for(database_url, COLUMNS="160", **extra),
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(30)
    os.close(leader)
    return b"".join(chunks).decode()


def test_colour_for_terminals_only_and_never_with_no_color(database_url: str, app: pgq.App) -> None:
    app.enqueue("t", queue="emails")
    app.cancel(app.enqueue("t", queue="emails"))
    terminal = run_in_terminal(database_url, "jobs", "list")
    assert "\x1b[" in terminal and "cancelled" in terminal
    assert "\x1b[" not in run_in_terminal(database_url, "jobs", "list", NO_COLOR="1")
    piped = pgq_cli(database_url, "jobs", "list")
    assert "\x1b[" not in piped.stdout and "cancelled" in piped.stdout
    header = piped.stdout.splitlines()[0].split()
    assert header[:4] == ["ID", "STATUS", "QUEUE", "TASK"]
    wide = pgq_cli(database_url, "queues", "list")
    assert all(len(line.split()) > 3 for line in wide.stdout.splitlines()[2:]), "a piped table is never cut"


def test_every_positional_argument_has_help() -> None:
    from pgq.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not action.option_strings and not action.help:
                missing.append(f"{path} {action.dest}")

    walk(build_parser(), "pgq")
    assert not missing, missing


def test_prune_and_bulk_retry_print_only_their_result_when_piped(database_url: str, app: pgq.App) -> None:
    for _ in range(3):
        app.cancel(app.enqueue("t"))
    result = pgq_cli(database_url, "prune")
    nothing = "jobs: 0, workers: 0, groups: 0, metrics: 0, keys: 0, waiters: 0, logs: 0, partitions: 0"
    assert result.returncode == 0 and result.stdout.strip() == nothing and not result.stderr
    result = pgq_cli(database_url, "jobs", "retry", "--failed")
    assert result.returncode == 0 and result.stdout.strip() == "0 jobs retried (status=failed)" and not result.stderr
