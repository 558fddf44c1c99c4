"""History by partition, measured (issue 18): the same history in two databases, one as it
was before migration 0018 (one plain table) and one partitioned by day.

Each database gets 10,000,000 jobs (one in a hundred failed) finished over the six days before
today, inside the 7-day retention, and 5,000,000 more on one day nine days ago, past it. Then, in
each:

- the queries of docs/sql-recipes.md, timed (median of three runs);
- ``app.get_job`` of random ids (the dashboard's job page, ``pgq jobs show``);
- retention of the expired day: in the plain table row by row, in batches of 1,000 (the
  sweeper's way before partitions); in the partitioned one, its partition dropped. Time, WAL
  written, and what is left on disk after it (dead rows keep their pages until a vacuum,
  and even then the table does not shrink).

Last, the plain database is upgraded to partitions while one session finishes a job every
10 ms, which prints how long the upgrade took and the longest a finish waited.

    python benchmarks/history.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Nothing here is a test: it prints figures. The defaults are the issue's scale (10,000,000
rows, a day of 5,000,000): about 15 minutes here; ``--quick`` is a tenth.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from cmp.common import fresh_database

import pgq
from pgq.db.queries import query
from pgq.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
RETENTION_DAYS = 7
KEPT_DAYS = RETENTION_DAYS - 1  # none of their rows expires while the benchmark runs
EXPIRED_DAY = RETENTION_DAYS + 2  # days before today
#: Partition upkeep that drops nothing (the retention step below drops with 7 days).
UPKEEP = {"period": "day", "ahead": "3 days", "keep": "30 days"}


def recipes() -> list[tuple[str, str]]:
    """(title, sql) of each query in docs/sql-recipes.md, under its section's title."""
    text = (ROOT / "docs" / "sql-recipes.md").read_text()
    found: list[tuple[str, str]] = []
    title = ""
    for block in re.split(r"(^## .*$)", text, flags=re.M):
        if block.startswith("## "):
            title = block[3:].strip()
            continue
        for n, sql in enumerate(re.findall(r"```sql\n(.*?)```", block, flags=re.S)):
            found.append((title + (f" ({n + 1})" if n else ""), sql))
    return found


def fill(url: str, kept: int, expired: int) -> None:
    """``kept`` jobs finished over the ``KEPT_DAYS`` days before today, and ``expired`` on the
    day ``EXPIRED_DAY`` days before today, in batches of a million."""
    per_day = kept // KEPT_DAYS
    spans = [(EXPIRED_DAY, expired)] + [(day, per_day) for day in range(KEPT_DAYS, 0, -1)]
    next_id = 1
    with psycopg.connect(url, autocommit=True) as conn:
        for day, count in spans:
            for offset in range(0, count, 1_000_000):
                n = min(1_000_000, count - offset)
                conn.execute(
                    """insert into pgq.job_history (id, queue, task, args, priority, status, attempts,
                            max_attempts, run_at, created_at, started_at, finished_at, errors)
                       select g, 'q' || (g %% 4), 'task_' || (g %% 10), '{}', 0,
                              case when g %% 100 = 0 then 'failed' else 'completed' end, 1, 3, t, t, t, t,
                              case when g %% 100 = 0 then jsonb_build_array(jsonb_build_object(
                                  'attempt', 1, 'at', t, 'type', 'ValueError', 'message', 'bad'))
                                  else '[]' end
                         from generate_series(%s::bigint, %s::bigint) g,
                              lateral (select date_trunc('day', now(), 'UTC') - %s * interval '1 day'
                                              + (g - %s) * (interval '1 day' / %s) as t) at""",
                    [next_id, next_id + n - 1, day, next_id - offset, count],
                )
                next_id += n
        conn.execute("vacuum analyze pgq.job_history")


def timed_recipes(urls: list[str], runs: int = 3) -> list[dict[str, float]]:
    """Each recipe's median time (ms) in each database, the databases taking turns run by run
    (on two cores a query's time moves with what ran just before)."""
    times: list[dict[str, list[float]]] = [{} for _ in urls]
    conns = [psycopg.connect(url, autocommit=True) for url in urls]
    try:
        for title, sql in recipes():
            for _ in range(runs):
                for conn, found in zip(conns, times, strict=True):
                    start = time.perf_counter()
                    conn.execute(sql).fetchall()
                    found.setdefault(title, []).append(time.perf_counter() - start)
    finally:
        for conn in conns:
            conn.close()
    return [{title: statistics.median(values) * 1000 for title, values in found.items()} for found in times]


def timed_lookups(url: str, top: int, n: int = 2000) -> tuple[float, float]:
    """``app.get_job``; on the plain database (revision 0017, which pgq.App refuses) its
    query of then, ``select * from all_jobs where id = %s``, prepared as the app's are."""
    times = []
    ids = random.Random(7).sample(range(1, top), n)
    with psycopg.connect(url, autocommit=True) as conn:
        plain = conn.execute("select version_num from pgq.alembic_version").fetchone()[0] == "0017"  # type: ignore[index]
        app = None if plain else pgq.App(url)
        try:
            for job_id in ids:
                start = time.perf_counter()
                if app is None:
                    found = conn.execute("select * from pgq.all_jobs where id = %s", [job_id]).fetchone()
                else:
                    found = app.get_job(job_id)
                times.append(time.perf_counter() - start)
                assert found is not None
        finally:
            if app is not None:
                app.close()
    times.sort()
    return times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000


def wal_bytes(conn: psycopg.Connection[Any], since: str) -> int:
    return int(conn.execute("select pg_current_wal_lsn() - %s::pg_lsn", [since]).fetchone()[0])  # type: ignore[index]


def retention_by_rows(url: str) -> dict[str, Any]:
    """The expired day deleted as the sweeper did before partitions, to the end."""
    params = {"completed": RETENTION_DAYS * 86400.0, "failed": RETENTION_DAYS * 86400.0}
    params.update(cancelled=params["completed"], batch=1000)
    sql = query("sweep_prune_history_in", "pgq", table="job_history")
    with psycopg.connect(url, autocommit=True) as conn:
        before = conn.execute("select pg_total_relation_size('pgq.job_history')").fetchone()[0]  # type: ignore[index]
        lsn = conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        start = time.perf_counter()
        deleted = batches = 0
        while True:
            batch = conn.execute(sql, params).fetchone()[0]  # type: ignore[index]
            deleted += batch
            batches += 1
            if batch < 1000:
                break
        seconds = time.perf_counter() - start
        wal = wal_bytes(conn, lsn)
        after = conn.execute("select pg_total_relation_size('pgq.job_history')").fetchone()[0]  # type: ignore[index]
        dead = conn.execute(
            "select n_dead_tup from pg_stat_user_tables where relid = 'pgq.job_history'::regclass"
        ).fetchone()[0]  # type: ignore[index]
    return {
        "deleted": deleted,
        "statements": batches,
        "seconds": seconds,
        "wal_mb": wal / 2**20,
        "size_before_mb": before / 2**20,
        "size_after_mb": after / 2**20,
        "dead_rows": dead,
    }


def retention_by_partition(url: str) -> dict[str, Any]:
    """The expired day's partition dropped by the upkeep (and the empty one before it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        size = (
            "select sum(pg_total_relation_size(inhrelid)) from pg_inherits"
            " where inhparent = 'pgq.job_history'::regclass"
        )
        before = conn.execute(size).fetchone()[0]  # type: ignore[index]
        lsn = conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        start = time.perf_counter()
        row = conn.execute(
            query("history_maintain", "pgq"),
            {"period": "day", "ahead": "3 days", "keep": f"{RETENTION_DAYS} days"},
        ).fetchone()
        seconds = time.perf_counter() - start
        wal = wal_bytes(conn, lsn)
        after = conn.execute(size).fetchone()[0]  # type: ignore[index]
    return {"dropped": row[1], "seconds": seconds, "wal_mb": wal / 2**20, "size_before_mb": float(before) / 2**20,
            "size_after_mb": float(after) / 2**20}  # fmt: skip


def upgrade_while_finishing(url: str) -> dict[str, float]:
    """Migrate to partitions while a session writes a finished job every 10 ms."""
    stop = threading.Event()
    waits: list[float] = []

    def finisher() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                n += 1
                start = time.perf_counter()
                conn.execute(
                    "insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,"
                    " run_at, created_at) values (%s, 'q', 't', '{}', 0, 'completed', 1, 3, now(), now())",
                    [-n],
                )
                waits.append(time.perf_counter() - start)
                time.sleep(0.01)

    thread = threading.Thread(target=finisher)
    thread.start()
    time.sleep(0.5)
    start = time.perf_counter()
    migrate(url)
    seconds = time.perf_counter() - start
    time.sleep(0.5)
    stop.set()
    thread.join()
    return {"seconds": seconds, "finishes": len(waits), "longest_wait_ms": max(waits) * 1000,
            "p50_wait_ms": statistics.median(waits) * 1000}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--quick", action="store_true", help="a tenth of the issue's scale")
    parser.add_argument("--keep", action="store_true", help="keep both databases (their URLs are printed)")
    options = parser.parse_args()
    scale = 10 if options.quick else 1
    kept, expired = 10_000_000 // scale, 5_000_000 // scale
    total = kept // KEPT_DAYS * KEPT_DAYS + expired
    print(f"history: {kept:,} jobs over {KEPT_DAYS} days, and {expired:,} on an expired day ({total:,} rows)")

    plain_url, drop_plain = fresh_database(options.database_url)
    parted_url, drop_parted = fresh_database(options.database_url)
    try:
        migrate(plain_url, revision="0017")
        migrate(parted_url)
        with psycopg.connect(parted_url, autocommit=True) as conn:
            conn.execute(
                "select pgq.begin_history_partitions(date_trunc('day', now(), 'UTC') - %s * interval '1 day')",
                [EXPIRED_DAY + 1],
            )
            conn.execute(query("history_maintain", "pgq"), UPKEEP).fetchall()
        for name, url in (("plain", plain_url), ("partitioned", parted_url)):
            start = time.perf_counter()
            fill(url, kept, expired)
            print(f"{name}: filled in {time.perf_counter() - start:.0f} s")
        with psycopg.connect(parted_url, autocommit=True) as conn:
            # The sweeper's next pass: it records the id range of each closed partition.
            conn.execute(query("history_maintain", "pgq"), UPKEEP).fetchall()

        print("\nsql-recipes.md, median of 3 (ms):        plain   partitioned")
        plain_times, parted_times = timed_recipes([plain_url, parted_url])
        for title in plain_times:
            print(f"  {title[:38]:38} {plain_times[title]:9.1f} {parted_times[title]:11.1f}")

        print("\napp.get_job of 2,000 random ids, p50 / p99 (ms):")
        for name, url in (("plain", plain_url), ("partitioned", parted_url)):
            p50, p99 = timed_lookups(url, total)
            print(f"  {name:12} {p50:.3f} / {p99:.3f}")

        print(f"\nretention of the expired day ({expired:,} rows):")
        print(f"  row deletes (plain):     {retention_by_rows(plain_url)}")
        print(f"  partition drop:          {retention_by_partition(parted_url)}")

        print("\nupgrade of the plain database (after its retention) while finishing a job every 10 ms:")
        print(f"  {upgrade_while_finishing(plain_url)}")
    finally:
        if options.keep:
            print(f"kept: {plain_url} and {parted_url}")
        else:
            drop_plain()
            drop_parted()


if __name__ == "__main__":
    main()
