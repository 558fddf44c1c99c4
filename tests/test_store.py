"""The store (``pgq.db.store``) declares every named query once, with the parameters its
SQL takes; the rest of pgq reaches SQL through it (docs/architecture.md)."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest

from pgq.db import queries, store

SRC = Path(__file__).resolve().parents[1] / "src" / "pgq"
_PARAM = re.compile(r"%\((\w+)\)[sb]")
_PART = re.compile(r"\{part:(\w+)\}")


def _parts() -> set[str]:
    """The blocks that are only ever pieces of other queries."""
    found: set[str] = set()
    for path in (SRC / "db" / "sql").glob("*.sql"):
        found.update(_PART.findall(path.read_text()))
    return found


def _declared() -> dict[str, store.Query[typing.Any]]:
    return {name: value for name, value in vars(store).items() if isinstance(value, store.Query)}


def test_every_query_is_declared_once_under_its_own_name() -> None:
    declared = _declared()
    assert {name: q.name for name, q in declared.items()} == {name: name for name in declared}
    expected = set(queries.names()) - _parts()
    assert set(declared) == expected, (
        f"declare in pgq/db/store.py: {sorted(expected - set(declared))}; "
        f"no such query: {sorted(set(declared) - expected)}"
    )


@pytest.mark.parametrize("name", sorted(_declared()))
def test_a_declaration_takes_the_parameters_its_sql_takes(name: str) -> None:
    annotation = store.__annotations__[name]
    shape = re.fullmatch(r"Query\[(\w+)\]", annotation)
    assert shape, f"{name}: declare it as Query[<a TypedDict>], not {annotation}"
    params = getattr(store, shape.group(1))
    sql = queries._with_parts(name)
    assert set(typing.get_type_hints(params)) == set(_PARAM.findall(sql)), f"{name}: {shape.group(1)}"


def test_the_queries_run_again_after_a_lost_connection_are_declared_ones() -> None:
    assert store.IDEMPOTENT <= set(_declared()), sorted(store.IDEMPOTENT - set(_declared()))
    assert store.job_get.idempotent and not store.job_retry.idempotent


def test_the_store_can_fail() -> None:
    """The check above reads what it is meant to read: a declaration with a parameter too
    many, or one too few, differs from its SQL."""
    sql = set(_PARAM.findall(queries._with_parts("job_get")))
    assert sql == {"id"}
    assert set(typing.get_type_hints(store.NoParams)) != sql


def test_only_pgq_db_reads_sql_by_name() -> None:
    """Outside ``pgq.db``, SQL comes from the store: ``query()`` is pgq.db's own reader."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.parts[0] == "db":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "pgq.db.queries":
                found.append(f"{relative}:{node.lineno}: from pgq.db.queries import ...")
            if isinstance(node, ast.Attribute) and node.attr == "queries" and ast.unparse(node.value) == "pgq.db":
                found.append(f"{relative}:{node.lineno}: pgq.db.queries")
    assert found == []


def test_a_misspelt_parameter_is_a_type_error(tmp_path: Path) -> None:
    """mypy holds each call to its declaration: the point of declaring the parameters."""
    from mypy import api

    script = tmp_path / "misspelt.py"
    script.write_text(
        "from pgq.db import store\n"
        "from pgq.db.database import Database\n"
        "def f(db: Database) -> None:\n"
        "    store.job_get.run(db, {'job_id': 1})\n"
        "    store.job_get.run(db, {'id': 'one'})\n"
        "    store.job_get.run(db, {'id': 1})\n"
    )
    out, _, status = api.run([str(script), "--no-error-summary", "--cache-dir", str(tmp_path / "cache")])
    assert status == 1
    lines = out.splitlines()
    assert any(':4: error: Missing key "id"' in line for line in lines), out
    assert any(':4: error: Extra key "job_id"' in line for line in lines), out
    assert any(":5: error: Incompatible types" in line for line in lines), out
    assert not any(":6:" in line for line in lines), out
