"""Run the operator's SQL of README.md on sample data and print each result:
``python -m examples.sql.run``.

It works in a scratch database, ``pgq_sql_example``, created on the server of
PGQ_DATABASE_URL (or the embedded PostgreSQL) and dropped at the end, so your
own jobs neither get in the way nor get touched. That needs the CREATEDB privilege.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

import pgq

HERE = Path(__file__).parent
SCRATCH = "pgq_sql_example"


def queries() -> dict[str, str]:
    """The queries of queries.sql by name (each section starts with ``-- name: NAME``)."""
    text = (HERE / "queries.sql").read_text()
    sections = re.split(r"^-- name: (\w+)\n", text, flags=re.M)[1:]
    return {name: body.strip() for name, body in zip(sections[::2], sections[1::2], strict=True)}


def table(cursor: psycopg.Cursor[Any]) -> str:
    """The result as an aligned text table, as psql prints it (nulls as blanks)."""
    names = [column.name for column in cursor.description or []]
    rows = [["" if value is None else str(value) for value in row] for row in cursor.fetchall()]
    widths = [max(len(cell) for cell in column) for column in zip(names, *rows, strict=True)]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [names, *rows]
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def run_all(url: str) -> dict[str, str]:
    """Load the sample data, run every query, roll back; return each query's table."""
    outputs = {}
    with psycopg.connect(url) as conn:
        conn.execute("set local timezone = 'UTC'")
        conn.execute((HERE / "sample_data.sql").read_text())
        for name, sql in queries().items():
            outputs[name] = table(conn.execute(sql))
        conn.rollback()
    return outputs


def main() -> None:
    with pgq.App() as app:
        server = app.url
    scratch = make_conninfo(server, dbname=SCRATCH)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"drop database if exists {SCRATCH}")
        conn.execute(f"create database {SCRATCH}")
    try:
        pgq.migrate(scratch)
        for name, output in run_all(scratch).items():
            print(f"-- {name}\n{output}\n")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"drop database if exists {SCRATCH} with (force)")


if __name__ == "__main__":
    main()
