"""Migrations: up and down on every server, concurrency, custom schemas, SQL output, drift."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

import pgq
from pgq.migrate import current_revision, downgrade, head_revision, migration_sql
from pgq.schema import tables

PGQ_TABLES = {
    "jobs",
    "job_history",
    "workers",
    "metrics",
    "schedules",
    "queues",
    "queue_groups",
    "job_keys",
    "job_waiters",
    "job_logs",
    "history_partitions",
    # job_history's partitions (0018): the history from before them, and the rows none covers.
    "job_history_legacy",
    "job_history_default",
    "alembic_version",
}


def schema_tables(url: str, schema: str = "pgq") -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select table_name from information_schema.tables where table_schema = %s", [schema]
        ).fetchall()
    return {row[0] for row in rows} - {"all_jobs"}


def test_up_down_up(empty_database_url: str) -> None:
    url = empty_database_url
    assert current_revision(url) is None
    pgq.migrate(url)
    assert schema_tables(url) == PGQ_TABLES
    assert current_revision(url) == head_revision()
    pgq.migrate(url)  # a second run has nothing to do
    downgrade(url, revision="base")
    assert schema_tables(url) == {"alembic_version"}
    with psycopg.connect(url) as conn:
        functions = conn.execute(
            "select proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace where nspname = 'pgq'"
        ).fetchall()
    assert functions == []
    pgq.migrate(url)
    assert schema_tables(url) == PGQ_TABLES


def test_each_downgrade_step_leaves_the_earlier_revision_working(empty_database_url: str) -> None:
    """A downgrade restores the functions a later revision replaced (0004's claim_limited,
    0005's explain and enqueue), so the schema at each step is the one that revision made."""
    url = empty_database_url
    pgq.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("insert into pgq.queues (name, group_concurrency) values ('q', 1)")
    for revision in ("0004", "0003"):
        downgrade(url, revision=revision)
        assert current_revision(url) == revision
        with psycopg.connect(url, autocommit=True) as conn:
            job = conn.execute("select pgq.enqueue('t', queue => 'q')").fetchone()[0]
            conn.execute(
                "insert into pgq.workers (id, name, host, pid, queues, concurrency)"
                " values (gen_random_uuid(), 'w', 'h', 1, '{q}', 1) returning id"
            )
            worker = conn.execute("select id from pgq.workers limit 1").fetchone()[0]
            conn.execute("update pgq.jobs set group_key = 'g' where id = %s", [job])
            claimed = conn.execute("select id from pgq.claim_limited(%s, 'q', 5)", [worker]).fetchall()
            assert [row[0] for row in claimed] == [job]
            assert "is running" in conn.execute("select pgq.explain(%s)", [job]).fetchone()[0]
            conn.execute("delete from pgq.jobs; delete from pgq.workers")
    pgq.migrate(url)
    assert current_revision(url) == head_revision()


def test_custom_schema_is_independent(empty_database_url: str) -> None:
    url = empty_database_url
    pgq.migrate(url, schema="jobs_a")
    pgq.migrate(url, schema="jobs_b")
    assert schema_tables(url, "jobs_a") == PGQ_TABLES
    assert schema_tables(url, "pgq") == set()
    a, b = pgq.App(url, schema="jobs_a"), pgq.App(url, schema="jobs_b")
    try:
        job_a = a.enqueue("t", {"x": 1})
        b.enqueue("t", {"x": 2})
        b.enqueue("t", {"x": 3})
        assert [j.args for j in a.list_jobs()] == [{"x": 1}]
        assert len(b.list_jobs()) == 2
        assert a.get_job(job_a) is not None
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("listen jobs_a_jobs")
            conn.execute("select jobs_a.enqueue('from_sql')")
            assert [n.channel for n in conn.notifies(timeout=1, stop_after=1)] == ["jobs_a_jobs"]
    finally:
        a.close()
        b.close()


def test_two_processes_migrating_at_once(empty_database_url: str) -> None:
    code = "import sys, pgq; pgq.migrate(sys.argv[1])"
    processes = [
        subprocess.Popen([sys.executable, "-c", code, empty_database_url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert schema_tables(empty_database_url) == PGQ_TABLES
    assert current_revision(empty_database_url) == head_revision()


def test_sql_output_for_review() -> None:
    sql = migration_sql(schema="pgq")
    assert 'create table "pgq".jobs' in sql
    assert "pg_advisory_xact_lock" in sql
    assert "alembic_version" in sql
    other = migration_sql(schema="other_schema")
    assert 'create table "other_schema".jobs' in other and '"pgq"' not in other


def test_unmigrated_database_says_run_migrate(empty_database_url: str) -> None:
    app = pgq.App(empty_database_url)
    with pytest.raises(pgq.NotMigrated, match="run `pgq migrate`"):
        app.enqueue("t", {})
    with psycopg.connect(empty_database_url) as caller:
        with pytest.raises(pgq.NotMigrated, match="run `pgq migrate`"):
            app.enqueue("t", {}, connection=caller)
    # auto_migrate=True migrates on first use instead.
    auto = pgq.App(empty_database_url, auto_migrate=True)
    assert auto.enqueue("t", {}) > 0
    auto.close()
    app.close()


def test_outdated_schema_is_reported(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("update pgq.alembic_version set version_num = '0000'")
    app = pgq.App(database_url)
    with pytest.raises(pgq.NotMigrated, match="at revision 0000"):
        app.enqueue("t", {})
    app.close()


def test_tables_match_sqlalchemy_metadata(database_url: str) -> None:
    """The drift check: the migrated database and pgq.schema agree column by column."""
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(database_url))
    reflected = sa.MetaData()
    reflected.reflect(bind=engine, schema="pgq")
    declared = tables("pgq")
    dialect = engine.dialect
    for table in declared.metadata.sorted_tables:
        actual = reflected.tables[f"pgq.{table.name}"]
        assert [c.name for c in actual.columns] == [c.name for c in table.columns], table.name
        for column in table.columns:
            real = actual.columns[column.name]
            assert real.nullable == column.nullable, f"{table.name}.{column.name} nullable"
            assert real.type.compile(dialect) == column.type.compile(dialect), f"{table.name}.{column.name}"
        keyed = actual
        if table.name == "job_history":
            # A partitioned table has no key of its own (0018): each partition has it.
            assert not actual.primary_key.columns
            keyed = sa.Table("job_history_default", reflected, autoload_with=engine, schema="pgq")
        assert {c.name for c in keyed.primary_key} == {c.name for c in table.primary_key}, table.name
    engine.dispose()


def test_claim_index_exists(conn: Any) -> None:
    row = conn.execute(
        "select indexdef from pg_indexes where schemaname = 'pgq' and indexname = 'jobs_claim_idx'"
    ).fetchone()
    assert row is not None
    # status is a domain over text since 0010: the predicate compares its text.
    assert "(queue, priority DESC, run_at, id) WHERE ((status)::text = 'pending'::text)" in row["indexdef"]


def test_reviewed_sql_can_be_applied_by_hand(empty_database_url: str) -> None:
    """A DBA runs `pgq migrate --sql` output in psql; the result is a working pgq schema."""
    script = migration_sql(schema="pgq")
    assert "%%" not in script  # doubled percent signs would break the plpgsql RAISE formats
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(script.encode())
    assert current_revision(empty_database_url) == head_revision()
    app = pgq.App(empty_database_url)
    try:
        assert app.get_job(app.enqueue("t", {"n": 1})) is not None
        with psycopg.connect(empty_database_url) as conn:
            with pytest.raises(psycopg.Error, match="args must be a JSON object"):
                conn.execute("select pgq.enqueue('t', '[1]')")
    finally:
        app.close()


def test_a_plain_history_becomes_partitioned_with_its_rows_and_back(empty_database_url: str) -> None:
    """0018 keeps the history from before it (the old table becomes a partition), keeps who was
    granted it, and its downgrade puts every row, old and new, back into one plain table."""
    url = empty_database_url
    pgq.migrate(url, revision="0017")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop role if exists pgq_reader")
        conn.execute("create role pgq_reader")
        conn.execute("grant usage on schema pgq to pgq_reader")
        conn.execute("grant select on pgq.job_history to pgq_reader")
        old = conn.execute("select pgq.enqueue('t', queue => 'q')").fetchone()[0]
        conn.execute(
            "insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts, run_at,"
            " created_at, finished_at) select -g, 'q', 'old', '{}', 0, 'completed', 1, 3, now(), now(),"
            " now() - g * interval '1 hour' from generate_series(1, 100) g"
        )
    app = pgq.App(url, auto_migrate=False)
    try:
        pgq.migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            parts = conn.execute(
                "select count(*) from pgq.job_history where tableoid = 'pgq.job_history_legacy'::regclass"
            ).fetchone()[0]
            assert parts == 100
            assert (
                conn.execute("select relkind from pg_class where oid = 'pgq.job_history'::regclass").fetchone()[0]
                == "p"
            )
            readable = conn.execute("select has_table_privilege('pgq_reader', 'pgq.job_history', 'select')")
            assert readable.fetchone()[0] is True
        assert app.cancel(old)
        cancelled = app.get_job(old)
        assert cancelled is not None and cancelled.status == "cancelled"
        oldest = app.get_job(-100)
        assert oldest is not None and oldest.task == "old"

        downgrade(url, revision="0017")
        with psycopg.connect(url, autocommit=True) as conn:
            kind = conn.execute("select relkind from pg_class where oid = 'pgq.job_history'::regclass")
            assert kind.fetchone()[0] == "r"
            assert conn.execute("select count(*) from pgq.job_history").fetchone()[0] == 101
            key = conn.execute(
                "select pg_get_constraintdef(oid) from pg_constraint"
                " where conrelid = 'pgq.job_history'::regclass and contype = 'p'"
            ).fetchone()[0]
            assert key == "PRIMARY KEY (id, queue)"
        pgq.migrate(url)
        assert app.get_job(old) is not None and app.get_job(-1) is not None
    finally:
        app.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("drop owned by pgq_reader")
            conn.execute("drop role pgq_reader")
