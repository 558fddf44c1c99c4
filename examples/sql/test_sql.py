"""examples/sql: every query of the README runs on the sample data and prints the documented output."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

import pgq
from examples.sql.run import main, queries, run_all

README = Path(__file__).resolve().parent / "README.md"


def documented() -> dict[str, tuple[str, str]]:
    """Each query of the README by name: (its SQL, its output)."""
    blocks = re.findall(r"<!-- query: (\w+) -->\n```sql\n(.*?)\n```\n\n```text\n(.*?)\n```", README.read_text(), re.S)
    return {name: (sql, output) for name, sql, output in blocks}


def test_readme_shows_every_query_of_queries_sql() -> None:
    shown = documented()
    assert list(shown) == list(queries())
    for name, sql in queries().items():
        assert shown[name][0] == sql, f"README's query {name} differs from queries.sql"


def test_queries_give_the_documented_output(database_url: str) -> None:
    outputs = run_all(database_url)
    for name, (_, output) in documented().items():
        assert outputs[name] == output, f"query {name}:\n{outputs[name]}\n--- documented:\n{output}"
    # The sample data was rolled back.
    assert run_all(database_url) == outputs


def test_run_command_works_beside_existing_jobs(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pgq.App(database_url) as app:  # a job of the user's own: not in the way, not touched
        app.enqueue("send_welcome", {"user_id": 5}, queue="emails", key="welcome-email:42")
    monkeypatch.setenv("PGQ_DATABASE_URL", database_url)
    main()
    printed = capsys.readouterr().out
    for name, (_, output) in documented().items():
        assert f"-- {name}\n{output}\n" in printed
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from pgq.all_jobs").fetchone() == (1,)
        assert conn.execute("select count(*) from pg_database where datname = 'pgq_sql_example'").fetchone() == (0,)
