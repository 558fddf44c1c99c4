"""History by partition (migration 0018): job_history is partitioned by finished_at.

The partitions are made ahead by the sweeper's upkeep (the same flow as ``app.prune()``),
retention drops an expired partition whole, the statuses kept shorter than the longest
are still deleted row by row, and a lookup by id reads only the partitions that can hold
the job. Each test starts the partitions some time in the past, as on an install that
upgraded that long ago: the history from before the upgrade ends there.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import pgq
from pgq.db.queries import query
from tests.rows import add_history

ROOT = Path(__file__).resolve().parent.parent


def partitions_since(conn: psycopg.Connection[Any], period: str, periods_ago: int) -> datetime:
    """Partitions start ``periods_ago`` periods before the current one (the test database's
    history is empty); returns that boundary."""
    start: datetime = conn.execute(
        "select date_trunc(%s, now(), 'UTC') - %s * ('1 ' || %s)::interval as start", [period, periods_ago, period]
    ).fetchone()["start"]
    conn.execute("select pgq.begin_history_partitions(%s)", [start])
    return start


def finished(conn: psycopg.Connection[Any], status: str, at: str, count: int = 1) -> list[int]:
    """``count`` jobs of queue ``q`` finished with ``status`` at ``at`` (an SQL expression)."""
    return add_history(conn, count, status=status, queue="q", finished=at, run=0)


def insert_days(conn: psycopg.Connection[Any], start: datetime, days: int) -> None:
    """One completed, one failed and one cancelled job finished an hour into each day from ``start``."""
    conn.execute(
        """insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,
                                        run_at, created_at, finished_at)
           select nextval(pg_get_serial_sequence('pgq.jobs', 'id')), 'q', 't', '{}', 0, s, 1, 3, t, t, t
             from generate_series(0, %s - 1) d,
                  lateral (select %s::timestamptz + make_interval(days => d, hours => 1) as t) at,
                  unnest(array['completed', 'failed', 'cancelled']) s""",
        [days, start],
    )


def partition_of(conn: psycopg.Connection[Any], job_id: int) -> str:
    row = conn.execute("select tableoid::regclass::text as part from pgq.job_history where id = %s", [job_id])
    return str(row.fetchone()["part"])


def partitions(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute("select * from pgq.history_partitions order by starts nulls first").fetchall()


def test_partitions_are_made_ahead_and_each_finished_job_lands_in_its_own(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    start = partitions_since(conn, "day", 2)
    app = pgq.App(database_url, history_partition="daily")
    try:
        assert app.prune()["partitions"] == 0
        made = partitions(conn)
        # From the old history's end, without a gap, to three days ahead.
        assert made[0]["name"] == "job_history_legacy" and made[0]["ends"] == start
        for before, after in itertools.pairwise(made):
            assert after["starts"] == before["ends"]
        assert made[1]["name"] == "job_history_p" + start.strftime("%Y%m%d_0000")
        ahead = conn.execute("select %s - now() as ahead", [made[-1]["ends"]]).fetchone()["ahead"]
        assert ahead.days >= 3
        ranges = [(p["name"], p["starts"], p["ends"]) for p in made]
        assert app.prune()["partitions"] == 0  # nothing more to make
        assert [(p["name"], p["starts"], p["ends"]) for p in partitions(conn)] == ranges

        job = app.enqueue("t", {})
        assert app.cancel(job)
        today = conn.execute("select 'pgq.job_history_p' || to_char(now() at time zone 'UTC', 'YYYYMMDD') || '_0000'")
        assert partition_of(conn, job) == today.fetchone()["?column?"]
        fetched = app.get_job(job)
        assert fetched is not None and fetched.status == "cancelled"
    finally:
        app.close()


def test_a_row_past_the_last_partition_goes_to_the_default_one_and_partitions_start_after_it(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    """After a sweeper outage longer than the partitions made ahead, finished jobs are not
    refused: they land in the default partition, whose rows retention deletes one by one."""
    partitions_since(conn, "day", 2)
    [late] = finished(conn, "completed", "now()")
    assert partition_of(conn, late) == "pgq.job_history_default"
    app = pgq.App(database_url, history_partition="daily", retention=3600)
    try:
        pruned = app.prune()
        made = partitions(conn)
        # No partition may cover the row in the default one: they start at the next day.
        tomorrow = conn.execute("select date_trunc('day', now(), 'UTC') + interval '1 day' as t").fetchone()["t"]
        assert next(p["starts"] for p in made if p["starts"] >= tomorrow) == tomorrow
        covering = conn.execute("select count(*) as n from pgq.history_partitions where now() between starts and ends")
        assert covering.fetchone()["n"] == 0
        assert pruned["jobs"] == 0
        conn.execute("update pgq.job_history set finished_at = now() - interval '2 hours' where id = %s", [late])
        assert app.prune()["jobs"] == 1
    finally:
        app.close()


def test_retention_drops_expired_partitions_whole(database_url: str, conn: psycopg.Connection[Any]) -> None:
    start = partitions_since(conn, "day", 10)
    made_then = pgq.App(database_url, history_partition="daily", retention=30 * 86400)
    made_then.prune()  # the partitions the days below finished into
    made_then.close()
    insert_days(conn, start, 10)
    app = pgq.App(database_url, history_partition="daily", retention=7 * 86400)
    try:
        # With one retention for every status, no row is deleted by itself: a partition goes
        # whole once its end is a retention old. The days that end before now - 7 days go.
        expired_days = conn.execute(
            "select count(*) as n from generate_series(1, 10) d"
            " where %s::timestamptz + make_interval(days => d) <= now() - interval '7 days'",
            [start],
        ).fetchone()["n"]
        pruned = app.prune()
        # ... and so does the (empty) history from before partitions, which ended before them.
        assert pruned["partitions"] == expired_days + 1 and pruned["jobs"] == 0, pruned
        assert "job_history_legacy" not in [p["name"] for p in partitions(conn)]
        left = conn.execute("select count(*) as n, min(finished_at) as oldest from pgq.job_history").fetchone()
        assert left["n"] == 3 * (10 - expired_days)
        # A row leaves with its partition: up to one period after its own retention.
        assert left["oldest"] == start + timedelta(days=expired_days, hours=1)
    finally:
        app.close()


def test_statuses_kept_shorter_are_deleted_row_by_row(database_url: str, conn: psycopg.Connection[Any]) -> None:
    start = partitions_since(conn, "day", 10)
    app = pgq.App(database_url, history_partition="daily", retention=7 * 86400, retention_failed=30 * 86400)
    try:
        app.prune()
        insert_days(conn, start, 10)
        expired = conn.execute(
            "select count(*) as n from pgq.job_history"
            " where status <> 'failed' and finished_at < now() - interval '7 days'"
        ).fetchone()["n"]
        assert expired > 0
        pruned = app.prune()
        # Failed jobs are kept 30 days, so no partition has expired whole; completed and
        # cancelled ones leave at their own retention, one by one.
        assert pruned["partitions"] == 0 and pruned["jobs"] == expired, pruned
        counts = conn.execute("select status, count(*) as n from pgq.job_history group by status").fetchall()
        assert {row["status"]: row["n"] for row in counts}["failed"] == 10
    finally:
        app.close()


def test_a_lookup_by_id_reads_only_the_partitions_that_can_hold_the_job(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    """With over a hundred hourly partitions, app.get_job (the dashboard's job page,
    ``pgq jobs show``) reads the few that can hold the id, not every one."""
    start = partitions_since(conn, "hour", 100)
    app = pgq.App(database_url, history_partition="hourly", retention=30 * 86400)
    try:
        app.prune()
        ids = [
            finished(conn, "completed", f"'{start.isoformat()}'::timestamptz + interval '{hour} hours 30 minutes'")[0]
            for hour in range(100)
        ]
        app.prune()  # records the largest id of each partition closed an hour ago
        count = conn.execute("select count(*) as n from pgq.history_partitions").fetchone()["n"]
        assert count >= 100
        closed = conn.execute("select count(*) as n from pgq.history_partitions where max_id is not null")
        assert closed.fetchone()["n"] >= 97

        recent = ids[-3]  # finished about two and a half hours ago
        # A session of its own: pg_stat_xact_* counts what the session did and has not yet
        # reported, which on PostgreSQL 15 and later includes earlier transactions' reads.
        with psycopg.connect(database_url, row_factory=dict_row) as fresh, fresh.transaction():
            found = fresh.execute(query("job_get", "pgq"), {"id": recent}).fetchall()
            read = fresh.execute(
                "select relname from pg_stat_xact_user_tables"
                " where schemaname = 'pgq' and relname like 'job\\_history\\_%%' and idx_scan + seq_scan > 0"
            ).fetchall()
        assert [row["id"] for row in found] == [recent]
        # Its own partition, the one of the hour now and the one before (still open), the
        # default partition.
        assert 2 <= len(read) <= 4, read
        job = app.get_job(recent)
        assert job is not None and job.status == "completed"

        # The first hour's job, and an id nobody holds, are found (or not) all the same.
        oldest = app.get_job(ids[0])
        assert oldest is not None and oldest.id == ids[0]
        assert app.get_job(ids[-1] + 1000) is None
    finally:
        app.close()


def test_a_row_written_late_into_a_closed_partition_is_still_found(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    """A closed partition's largest id is a hint, not a promise: a transaction begun before
    the partition's end may write into it later. The lookup then looks everywhere."""
    start = partitions_since(conn, "hour", 5)
    app = pgq.App(database_url, history_partition="hourly")
    try:
        app.prune()
        finished(conn, "completed", f"'{start.isoformat()}'::timestamptz + interval '10 minutes'")
        app.prune()
        [late] = finished(conn, "failed", f"'{start.isoformat()}'::timestamptz + interval '20 minutes'")
        job = app.get_job(late)
        assert job is not None and job.status == "failed"
    finally:
        app.close()


@pytest.mark.parametrize("period", ["monthly", "", "Daily "])
def test_a_bad_partition_period_is_refused_with_the_choices(database_url: str, period: str) -> None:
    with pytest.raises(Exception, match=r"hourly.*daily.*weekly"):
        pgq.App(database_url, history_partition=period)


def test_partitions_begin_earlier_only_before_any_and_over_no_later_row(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    finished(conn, "completed", "now() - interval '1 hour'")
    with pytest.raises(psycopg.errors.CheckViolation, match="job_history_legacy"):
        conn.execute("select pgq.begin_history_partitions(now() - interval '1 day')")
    conn.execute("delete from pgq.job_history")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="can begin earlier than"):
        conn.execute("select pgq.begin_history_partitions(now() + interval '3 days')")
    partitions_since(conn, "day", 0)
    with pgq.App(database_url) as app:
        app.prune()
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="partitions exist already"):
        conn.execute("select pgq.begin_history_partitions(now() - interval '1 day')")


def test_the_sql_recipes_run_on_the_partitioned_history(database_url: str, conn: psycopg.Connection[Any]) -> None:
    """docs/sql-recipes.md's queries, as written, over a history spread across partitions."""
    start = partitions_since(conn, "day", 3)
    with pgq.App(database_url) as app:
        app.prune()
    insert_days(conn, start, 3)
    conn.execute(
        "update pgq.job_history set key = 'welcome-email:7', queue = 'emails',"
        " errors = jsonb_build_array(jsonb_build_object('attempt', 1, 'at', now(), 'type', 'Boom', 'message', 'x'))"
        " where status = 'failed'"
    )
    blocks = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "sql-recipes.md").read_text(), flags=re.S)
    assert len(blocks) >= 7
    results = [conn.execute(sql).fetchall() for sql in blocks]
    assert any(results), "every recipe came back empty: the history above is not what they read"
    by_key = conn.execute(blocks[4]).fetchall()
    assert {row["status"] for row in by_key} == {"failed"} and len(by_key) == 3


def test_a_role_that_may_not_make_partitions_still_prunes_row_by_row(
    database_url: str, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """pgq's runtime role may not own the schema (it may not create or drop tables): the
    upkeep says so once, and retention goes on, one row at a time, in the default partition."""
    conn.execute("drop role if exists pgq_runner")
    conn.execute("create role pgq_runner login")
    try:
        conn.execute("grant usage on schema pgq to pgq_runner")
        conn.execute("grant select, insert, update, delete on all tables in schema pgq to pgq_runner")
        conn.execute("grant usage on all sequences in schema pgq to pgq_runner")
        partitions_since(conn, "day", 2)
        [expired] = finished(conn, "completed", "now() - interval '2 hours'")
        assert partition_of(conn, expired) == "pgq.job_history_default"
        runner = psycopg.conninfo.make_conninfo(database_url, user="pgq_runner")
        with pgq.App(runner, retention=3600) as app:
            pruned = app.prune()
        assert pruned["jobs"] == 1 and pruned["partitions"] == 0, pruned
        assert [p["name"] for p in partitions(conn)] == ["job_history_legacy"]
        # It may not make the next partition, nor drop the expired history from before them.
        assert "could not make or drop a partition" in caplog.text, caplog.text
        assert "permission denied for schema pgq" in caplog.text and "must be owner" in caplog.text, caplog.text
    finally:
        conn.execute("drop owned by pgq_runner")
        conn.execute("drop role pgq_runner")


def test_two_upkeeps_at_once_make_each_partition_once(database_url: str, conn: psycopg.Connection[Any]) -> None:
    """The sweeper and a `pgq prune` may run the upkeep together: the second waits for the
    first and finds its partitions made. Without that wait, the second made the same table
    as soon as the first committed, and failed (duplicate table)."""
    partitions_since(conn, "hour", 0)  # nothing to close: the upkeeps meet over making partitions
    params = {"period": "hour", "ahead": timedelta(days=1), "keep": timedelta(days=30)}
    failures: list[BaseException] = []
    app = pgq.App(database_url, history_partition="hourly", retention=30 * 86400)

    def second_upkeep() -> None:
        try:
            app.prune()
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    thread = threading.Thread(target=second_upkeep)
    try:
        with conn.transaction():
            made = conn.execute(query("history_maintain", "pgq"), params).fetchone()["created"]
            assert made >= 24
            thread.start()
            time.sleep(0.5)  # the second upkeep is waiting for this one
        thread.join()
    finally:
        app.close()
    assert failures == []
    names = [p["name"] for p in partitions(conn)]
    assert len(names) == len(set(names)) == made + 1
