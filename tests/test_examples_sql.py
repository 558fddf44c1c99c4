"""examples/sql: every query of the README runs on the sample data and prints the documented output."""

from __future__ import annotations

import re
from pathlib import Path

from examples.sql.run import queries, run_all

README = Path(__file__).resolve().parent.parent / "examples" / "sql" / "README.md"


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
