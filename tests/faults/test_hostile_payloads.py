"""Hostile args are refused with a clear error and nothing written, through every entry
point: Python (enqueue, enqueue_async, enqueue_many, a workflow), the REST API, the CLI
and the SQL function (issue 15 item 5, issue 16 item 1)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import pgq
from pgq.payload import MAX_DEPTH

pytestmark = pytest.mark.faults


def nested(levels: int) -> dict[str, Any]:
    """Args ``levels`` deep: the args object is level 1, then lists."""
    value: Any = 0
    for _ in range(levels - 1):
        value = [value]
    return {"deep": value}


def nested_json(levels: int) -> str:
    return '{"deep": ' + "[" * (levels - 1) + "0" + "]" * (levels - 1) + "}"


# name: (args in Python, the same as JSON text, what the error says)
HOSTILE: dict[str, tuple[dict[str, Any], str, str]] = {
    "lone surrogate": ({"ok": "x", "bad": ["y", "\ud800"]}, '{"ok": "x", "bad": ["y", "\\ud800"]}', "lone surrogate"),
    "lone surrogate in a key": ({"k": {"\udfff": 1}}, '{"k": {"\\udfff": 1}}', "lone surrogate"),
    "10,000 levels deep": (nested(10_000), nested_json(10_000), f"nest deeper than {MAX_DEPTH} levels"),
    "one level too deep": (nested(MAX_DEPTH + 1), nested_json(MAX_DEPTH + 1), f"nest deeper than {MAX_DEPTH} levels"),
    "NUL in a string": ({"s": "a\x00b"}, '{"s": "a\\u0000b"}', "NUL character"),
    "NUL in a key": ({"a\x00": 1}, '{"a\\u0000": 1}', "NUL character"),
    "1,000,000-element list": (
        {"l": [0] * 1_000_000},
        '{"l": [' + ",".join(["0"] * 1_000_000) + "]}",
        "over the limit of 1048576 bytes",
    ),
    "NaN": ({"x": [1.5, float("nan")]}, '{"x": [1.5, NaN]}', "NaN or infinity"),
    "Infinity": ({"x": float("inf")}, '{"x": Infinity}', "NaN or infinity"),
    "-Infinity": ({"x": {"y": float("-inf")}}, '{"x": {"y": -Infinity}}', "NaN or infinity"),
    "2**63": ({"n": 2**63}, '{"n": 9223372036854775808}', "outside the 64-bit integer range"),
    "-2**63 - 1": ({"n": -(2**63) - 1}, '{"n": -9223372036854775809}', "outside the 64-bit integer range"),
    "2**64": ({"n": [2**64]}, '{"n": [18446744073709551616]}', "outside the 64-bit integer range"),
    "10**40": ({"n": 10**40}, '{"n": 1' + "0" * 40 + "}", "outside the 64-bit integer range"),
    "a float of 1e19": ({"f": 1e19}, '{"f": 1e19}', "outside the 64-bit integer range"),
}

# Where the error says the bad value is (the REST and CLI paths parse JSON first, so the
# same paths show).
WHERE = {
    "lone surrogate": r"args\['bad'\]\[1\]",
    "NUL in a string": r"args\['s'\]",
    "NaN": r"args\['x'\]\[1\]",
    "-Infinity": r"args\['x'\]\['y'\]",
    "2**63": r"args\['n'\]",
    "2**64": r"args\['n'\]\[0\]",
    "10,000 levels deep": r"args\['deep'\]\[0\]",
}

# Right at the limits: accepted, and stored as given.
EDGES: dict[str, dict[str, Any]] = {
    "100 levels deep": nested(MAX_DEPTH),
    "2**63 - 1 and -2**63": {"max": 2**63 - 1, "min": -(2**63)},
    "a backslash-u0000 as text": {"s": "\\u0000"},
    "None, true, false": {"n": None, "t": True, "f": False, "l": [None]},
    "a float just under 2**63": {"f": 9.2e18},
    "a number-like string of 40 digits": {"s": "1" * 40},
}


def count_jobs(conn: Any) -> int:
    return int(conn.execute("select count(*) as n from pgq.all_jobs").fetchone()["n"])


@pytest.fixture(autouse=True)
def report_rows(request: pytest.FixtureRequest, conn: Any, reliability: Callable[..., None]) -> Iterator[None]:
    """Each case's figure for --reliability-report: the job rows it left (0 for a refusal)."""
    yield
    reliability(case=request.node.name, job_rows=count_jobs(conn))


@pytest.mark.parametrize("name", list(HOSTILE))
def test_python_entry_points_refuse(app: pgq.App, conn: Any, name: str) -> None:
    args, _, message = HOSTILE[name]
    where = WHERE.get(name, "")
    calls = {
        "enqueue": lambda: app.enqueue("t", args),
        "enqueue_async": lambda: asyncio.run(app.enqueue_async("t", args)),
        "enqueue_many": lambda: app.enqueue_many([pgq.JobSpec("t", {"ok": 1}), pgq.JobSpec("t", args)]),
        "enqueue_many, an option set": lambda: app.enqueue_many([pgq.JobSpec("t", args, queue="q", priority=1)]),
        "enqueue_many, a delayed job": lambda: app.enqueue_many([pgq.JobSpec("t", args, delay=5)]),
        "enqueue_workflow": lambda: app.enqueue_workflow(pgq.chain(pgq.JobSpec("t"), pgq.JobSpec("t", args))),
        "a key": lambda: app.enqueue("t", args, key="k"),
    }
    for label, call in calls.items():
        with pytest.raises(pgq.InvalidJob, match=message) as raised:
            call()
        assert raised.value.__cause__ is None or isinstance(raised.value.__cause__, pgq.PgqError), label
        if where:
            assert raised.match(where), f"{label}: {raised.value}"
    with pytest.raises(pgq.InvalidJob, match="job 1 of the batch"):
        calls["enqueue_many"]()
    assert count_jobs(conn) == 0


@pytest.mark.parametrize("name", list(EDGES))
def test_edges_are_accepted_and_stored_as_given(app: pgq.App, conn: Any, name: str) -> None:
    args = EDGES[name]
    one = app.enqueue("t", args)
    many = app.enqueue_many([pgq.JobSpec("t", args)])[0]
    for job_id in (one, many):
        assert app.get_job(job_id).args == args  # type: ignore[union-attr]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_rest_api_answers_422(app: pgq.App, conn: Any, name: str) -> None:
    pytest.importorskip("starlette")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from pgq.web import create_app

    _, text, message = HOSTILE[name]
    body = '{"task": "t", "args": ' + text + "}"
    with TestClient(create_app(app), base_url="https://127.0.0.1") as api:
        response = api.post("/api/jobs", content=body.encode(), headers={"content-type": "application/json"})
    if name == "1,000,000-element list":
        # 2 MB of body: refused by the args' size limit, or earlier by the API's body limit.
        assert response.status_code in (413, 422), response.text
    else:
        assert response.status_code == 422, response.text
        assert message in response.json()["error"] or "nest" in response.json()["error"]
    assert count_jobs(conn) == 0


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGQ_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "pgq", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("name", [n for n in HOSTILE if n != "1,000,000-element list"])
def test_cli_exits_non_zero_with_the_message(database_url: str, conn: Any, name: str) -> None:
    _, text, message = HOSTILE[name]
    result = cli(database_url, "enqueue", "t", "--args", text)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr or "nest" in result.stderr, result.stderr
    assert count_jobs(conn) == 0


def test_cli_refuses_a_million_element_list(database_url: str, conn: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """2 MB does not fit in one argument of a real process (Linux caps one at 128 KiB), so
    the CLI's entry point is called in this process."""
    from pgq.cli import main

    os.environ["PGQ_DATABASE_URL"] = database_url
    try:
        assert main(["enqueue", "t", "--args", HOSTILE["1,000,000-element list"][1]]) != 0
    finally:
        del os.environ["PGQ_DATABASE_URL"]
    assert "over the limit of 1048576 bytes" in capsys.readouterr().err
    assert count_jobs(conn) == 0


SQL_ARGS: dict[str, tuple[str, list[Any], str]] = {
    # The jsonb value cannot even be built: PostgreSQL's own error, before pgq.enqueue runs.
    "lone surrogate": ("cast(%s as jsonb)", [HOSTILE["lone surrogate"][1]], "surrogate"),
    "NUL in a string": ("cast(%s as jsonb)", [HOSTILE["NUL in a string"][1]], "cannot be converted to text"),
    "NaN": ("cast(%s as jsonb)", [HOSTILE["NaN"][1]], "invalid input syntax for type json"),
    "Infinity": ("cast(%s as jsonb)", [HOSTILE["Infinity"][1]], "invalid input syntax for type json"),
    # Built, then refused by pgq.enqueue's check_args.
    "one level too deep": ("cast(%s as jsonb)", [nested_json(MAX_DEPTH + 1)], "nest deeper than 100 levels"),
    "10,000 levels deep": ("cast(%s as jsonb)", [nested_json(10_000)], "nest deeper than 100 levels|stack depth"),
    "1,000,000-element list": (
        "jsonb_build_object('l', (select jsonb_agg(0) from generate_series(1, 1000000)))",
        [],
        "over the limit of 1048576 bytes",
    ),
    "2**63": ("cast(%s as jsonb)", [HOSTILE["2**63"][1]], "outside the 64-bit integer range"),
    "-2**63 - 1": ("cast(%s as jsonb)", [HOSTILE["-2**63 - 1"][1]], "outside the 64-bit integer range"),
    "a float of 1e19": ("cast(%s as jsonb)", [HOSTILE["a float of 1e19"][1]], "outside the 64-bit integer range"),
}


@pytest.mark.parametrize("name", list(SQL_ARGS))
def test_sql_function_refuses(conn: Any, name: str) -> None:
    expression, params, message = SQL_ARGS[name]
    with pytest.raises(psycopg.Error, match=message):
        conn.execute(f"select pgq.enqueue('t', {expression})", params)
    assert count_jobs(conn) == 0


def test_sql_function_accepts_the_edges(conn: Any) -> None:
    for name, args in EDGES.items():
        job_id = conn.execute("select pgq.enqueue('t', cast(%s as jsonb)) as id", [json.dumps(args)]).fetchone()["id"]
        assert conn.execute("select args from pgq.jobs where id = %s", [job_id]).fetchone()["args"] == args, name
