"""Helpers the migration scripts import (kept tiny: migrations must not change
meaning when pgq's other modules do)."""

from __future__ import annotations

from alembic import context


def schema_name() -> str:
    """The schema being migrated (``PGQ_SCHEMA``), already validated."""
    return str(context.config.attributes.get("pgq_schema", "pgq"))


def render(sql: str) -> str:
    """``sql`` with ``{schema}`` (quoted identifier) and ``{channel}`` (string literal) filled in."""
    schema = schema_name()
    return sql.replace("{schema}", f'"{schema}"').replace("{channel}", f"'{schema}_jobs'")
