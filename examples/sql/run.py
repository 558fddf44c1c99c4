"""Run the operator's SQL of README.md on sample data and print each result:
``python -m examples.sql.run``.

The sample rows are inserted in a transaction that is rolled back at the end,
so the database (PGQ_DATABASE_URL, or the embedded PostgreSQL) is left as it was.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg

import pgq

HERE = Path(__file__).parent


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
        app.migrate()
        for name, output in run_all(app.url).items():
            print(f"-- {name}\n{output}\n")


if __name__ == "__main__":
    main()
