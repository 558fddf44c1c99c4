"""Schema migrations: what ``pgq migrate`` runs, callable from code too.

The migrations are alembic scripts shipped inside the package
(``pgq/migrations`` in the wheel, ``migrations/`` in a checkout).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import psycopg

from pgq.db import store
from pgq.db.connection import connect, connection_kwargs
from pgq.db.urls import normalize
from pgq.settings import SCHEMA_NAME, load_settings


def migrations_dir() -> Path:
    package = Path(__file__).resolve().parent
    for candidate in (package / "migrations", package.parent.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise RuntimeError(f"pgq's migrations are missing (looked in {package / 'migrations'})")


def _config(schema: str, **attributes: Any) -> Any:
    from alembic.config import Config

    if not SCHEMA_NAME.match(schema):
        from pgq.errors import ConfigurationError

        raise ConfigurationError(f"schema must be lower-case letters, digits and underscores, got {schema!r}")
    config = Config(output_buffer=attributes.pop("output_buffer", None))
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["pgq_schema"] = schema
    config.attributes.update(attributes)
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision this pgq knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config("pgq")).get_current_head()
    assert head is not None
    return head


def _resolve(url: str | None, schema: str | None) -> tuple[str, str]:
    if url is None:
        from pgq.app import App

        app = App(schema=schema) if schema else App()
        return app.url, app.schema
    return normalize(url), schema or load_settings().schema_name


def _run(command: str, url: str | None, schema: str | None, revision: str) -> None:
    from alembic import command as alembic_command

    url, schema = _resolve(url, schema)
    settings = load_settings(schema=schema)

    def creator() -> psycopg.Connection[Any]:
        # SQLAlchemy needs psycopg's default tuple rows, so not connect().
        return psycopg.connect(url, **connection_kwargs(settings, "migrate"))

    # Fail with pgq's message, not SQLAlchemy's, if the server is unreachable.
    connect(url, settings, "migrate").close()
    getattr(alembic_command, command)(_config(schema, creator=creator), revision)


def migrate(url: str | None = None, *, schema: str | None = None, revision: str = "head") -> None:
    """Upgrade pgq's schema to ``revision`` (default: the newest).

    ``url`` defaults to the configured database (``PGQ_DATABASE_URL``, else the
    embedded PostgreSQL), ``schema`` to ``PGQ_SCHEMA``. Safe to run from several
    processes at once: they take turns on an advisory lock.
    """
    _run("upgrade", url, schema, revision)


def downgrade(url: str | None = None, *, schema: str | None = None, revision: str = "base") -> None:
    """Downgrade pgq's schema to ``revision``; ``"base"`` removes every pgq table."""
    _run("downgrade", url, schema, revision)


def migration_sql(schema: str = "pgq", revision: str = "head") -> str:
    """The SQL that migrating an empty database to ``revision`` would run, for review."""
    from alembic import command as alembic_command

    buffer = io.StringIO()
    alembic_command.upgrade(_config(schema, output_buffer=buffer), revision, sql=True)
    return buffer.getvalue()


def current_revision(url: str | None = None, *, schema: str | None = None) -> str | None:
    """The revision the database is at, or None if pgq was never migrated there."""
    url, schema = _resolve(url, schema)
    with connect(url, load_settings(schema=schema), "migrate") as conn:
        try:
            rows = store.schema_version.fetch(conn, schema, {})
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return None
    return str(rows[0]["version_num"]) if rows else None
