"""Alembic environment for pgq's own schema.

pgq's version table lives inside pgq's schema, so it never meets the
application's own alembic history. Online runs take a transaction-level
advisory lock first (the session's online, the transaction's in a script): two
processes migrating at once queue up, and the second finds nothing left to do.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

config = context.config
schema = str(config.attributes.get("pgq_schema", "pgq"))
quoted = f'"{schema}"'
lock_sql = f"select pg_advisory_xact_lock(hashtext('pgq migrate {schema}'))"
# Online, the lock is the session's: a migration that commits part of its work early
# (0018 validates a constraint outside its transaction) keeps it until the end.
session_lock_sql = f"select pg_advisory_lock(hashtext('pgq migrate {schema}'))"
unlock_sql = f"select pg_advisory_unlock(hashtext('pgq migrate {schema}'))"


def run_offline() -> None:
    context.configure(
        url="postgresql://",
        dialect_name="postgresql",
        literal_binds=True,
        # "named" keeps % signs as they are; the default pyformat would print
        # them doubled and break the plpgsql RAISE formats in psql.
        dialect_opts={"paramstyle": "named"},
        version_table_schema=schema,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.execute(lock_sql)
        context.execute(f"create schema if not exists {quoted}")
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        creator = config.attributes["creator"]
        engine = create_engine("postgresql+psycopg://", creator=creator, poolclass=pool.NullPool)
        with engine.connect() as conn:
            _migrate(conn)
        engine.dispose()
    else:
        _migrate(connection)


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    connection.execute(text(session_lock_sql))
    try:
        connection.execute(text(f"create schema if not exists {quoted}"))
        context.configure(
            connection=connection,
            version_table_schema=schema,
            transactional_ddl=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.rollback()
        connection.execute(text(unlock_sql))
        connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
