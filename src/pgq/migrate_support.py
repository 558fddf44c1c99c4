"""Helpers the migration scripts import (kept tiny: migrations must not change
meaning when pgq's other modules do)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import context, op

from pgq.db import channels


def schema_name() -> str:
    """The schema being migrated (``PGQ_SCHEMA``), already validated."""
    return str(context.config.attributes.get("pgq_schema", "pgq"))


def render(sql: str) -> str:
    """``sql`` with ``{schema}`` (quoted identifier) and ``{channel}`` (string literal) filled in."""
    schema = schema_name()
    return sql.replace("{schema}", f'"{schema}"').replace("{channel}", f"'{channels.jobs(schema)}'")


def earlier_sql(path: Path, start: str, end: str | None = None) -> str:
    """The part of an earlier migration's ``UPGRADE`` text (the script at ``path``)
    from ``start`` up to and including ``end`` (to its end when None), with its
    first ``create function`` made ``create or replace function``: how a downgrade
    restores a function that a later revision replaced, without a copy of it.
    Migrations never change once shipped, so the text read is the text that ran."""
    spec = importlib.util.spec_from_file_location(f"pgq_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.UPGRADE
    first = text.index(start)
    last = len(text) if end is None else text.index(end, first) + len(end)
    return text[first:last].replace("create function", "create or replace function", 1)


def in_own_transactions(statements: list[str]) -> None:
    """Commit what the migration did so far, then run each statement in a transaction of
    its own: for work that must not hold its locks until the migration ends (VALIDATE
    CONSTRAINT after ADD ... NOT VALID). Online, the migration's advisory lock is the
    session's and outlives the commits; a script's is the transaction's, and the caller
    takes it again."""
    if context.is_offline_mode():
        for statement in ["commit;", *statements, "begin;"]:
            op.execute(statement)
    else:
        bind = op.get_bind()
        bind.commit()
        for statement in statements:
            op.execute(statement)
            bind.commit()
