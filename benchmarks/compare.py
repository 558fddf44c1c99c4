"""pgq side by side with the physical limit and its peers, on one PostgreSQL server, in one run.

    pip install -e '.[bench]'
    python benchmarks/compare.py [--database-url URL] [--quick]

Without a URL it starts the embedded PostgreSQL (durable defaults: fsync on)
in a temporary folder. Each contender gets a fresh database on that server.
Rates are job lives per second: enqueue excluded for the drains (the queue is
pre-filled), included for the plain-SQL limit (insert, claim, finish).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import pgq


def fresh_database(server_url: str) -> tuple[str, Callable[[], None]]:
    name = f"cmp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    params["dbname"] = name
    url = psycopg.conninfo.make_conninfo(**params)

    def drop() -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")

    return url, drop


# ------------------------------------------------------------------ the limit

PLAIN_SCHEMA = """
create table jobs (id bigint generated always as identity primary key, status text not null default 'ready',
                   args jsonb not null default '{}', run_at timestamptz not null default now());
create index jobs_ready on jobs (run_at, id) where status = 'ready';
create table history (id bigint primary key, args jsonb, finished_at timestamptz default now());
"""
CLAIM = """update jobs set status = 'running' where id in (
             select id from jobs where status = 'ready' order by run_at, id limit %s for update skip locked)
           returning id"""
FINISH = """with d as (delete from jobs where id = any(%s) returning id, args)
            insert into history (id, args) select id, args from d"""


def plain_sql(url: str, jobs: int, batch: int, connections: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(PLAIN_SCHEMA)
    per = jobs // connections

    def life(conn: psycopg.Connection[Any]) -> None:
        done = 0
        while done < per:
            n = min(batch, per - done)
            with conn.transaction():
                conn.execute("insert into jobs (args) select '{}' from generate_series(1, %s)", [n])
            with conn.transaction():
                ids = [row[0] for row in conn.execute(CLAIM, [n])]
            with conn.transaction():
                conn.execute(FINISH, [ids])
            done += n

    conns = [psycopg.connect(url, autocommit=True) for _ in range(connections)]
    threads = [threading.Thread(target=life, args=(c,)) for c in conns]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return per * connections / elapsed


# ------------------------------------------------------------------------ pgq


def pgq_drain(url: str, jobs: int, concurrency: int) -> float:
    app = pgq.App(url, auto_migrate=True)
    app.migrate()

    @app.task(name="noop")
    async def noop(i: int = 0) -> None:
        return None

    for offset in range(0, jobs, 1000):
        app.enqueue_many([pgq.JobSpec("noop", {"i": i}) for i in range(offset, min(offset + 1000, jobs))])

    async def work() -> float:
        # Wall clock from the worker's start to the last outcome written, as for PgQueuer.
        start = time.perf_counter()
        async with app.worker(concurrency=concurrency, scheduler=False, sweeper=False) as worker:
            while worker.processed < jobs or worker.completer.unflushed_ids():
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - start
        return jobs / elapsed

    rate = asyncio.run(work())
    app.close()
    return rate


def pgq_enqueue_many(url: str, jobs: int) -> float:
    app = pgq.App(url, auto_migrate=True)
    app.migrate()
    start = time.perf_counter()
    for offset in range(0, jobs, 1000):
        app.enqueue_many([pgq.JobSpec("noop", {"i": i}) for i in range(offset, min(offset + 1000, jobs))])
    rate = jobs / (time.perf_counter() - start)
    app.close()
    return rate


def pgq_latency(url: str, count: int = 200) -> list[float]:
    app = pgq.App(url, auto_migrate=True)
    app.migrate()
    started: dict[int, float] = {}
    committed: dict[int, float] = {}

    @app.task(name="ping", pass_context=True)
    async def ping(ctx: pgq.JobContext) -> None:
        started[ctx.job.id] = time.perf_counter()

    async def run() -> None:
        async with app.worker(concurrency=10, scheduler=False, sweeper=False):
            await asyncio.sleep(0.5)
            for _ in range(count):
                job_id = await app.enqueue_async("ping", {})
                committed[job_id] = time.perf_counter()
                await asyncio.sleep(0.02)
            while len(started) < count:
                await asyncio.sleep(0.01)

    asyncio.run(run())
    app.close()
    return sorted((started[i] - committed[i]) * 1000 for i in committed)


# ------------------------------------------------------------------- PgQueuer


def _dsn(url: str) -> str:
    """asyncpg takes URLs only: turn a key=value conninfo into one."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    host = str(params.get("host") or "127.0.0.1")
    user, dbname, port = params.get("user", "postgres"), params.get("dbname", "postgres"), params.get("port", 5432)
    if host.startswith("/"):
        return f"postgresql://{user}@/{dbname}?host={host}&port={port}"
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def pgqueuer_drain(url: str, jobs: int, batch_size: int) -> float:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    async def run() -> float:
        conn = await asyncpg.connect(_dsn(url))
        driver = AsyncpgDriver(conn)
        queries = Queries(driver)
        await queries.install()
        for offset in range(0, jobs, 1000):
            n = min(1000, jobs - offset)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        manager = QueueManager(queries)

        @manager.entrypoint("noop")
        async def noop(job: Any) -> None:
            return None

        start = time.perf_counter()
        await manager.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
        elapsed = time.perf_counter() - start
        await conn.close()
        return jobs / elapsed

    return asyncio.run(run())


def pgqueuer_enqueue_many(url: str, jobs: int) -> float:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    async def run() -> float:
        conn = await asyncpg.connect(_dsn(url))
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        start = time.perf_counter()
        for offset in range(0, jobs, 1000):
            n = min(1000, jobs - offset)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        rate = jobs / (time.perf_counter() - start)
        await conn.close()
        return rate

    return asyncio.run(run())


# ------------------------------------------------------------------------ run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="a server to use (a fresh database per contender); default: embedded")
    parser.add_argument("--quick", action="store_true", help="fewer jobs: a rough figure in a couple of minutes")
    options = parser.parse_args()

    if options.database_url:
        server = options.database_url
    else:
        folder = Path(tempfile.mkdtemp(prefix="pgqcmp-", dir="/tmp"))
        server = pgq.App(data_dir=folder).url
    drain_jobs = 10_000 if options.quick else 50_000
    single_jobs = 1_000 if options.quick else 3_000

    results: list[tuple[str, float | None, str]] = []

    def measure(name: str, fn: Callable[[str], Any], note: str = "") -> Any:
        url, drop = fresh_database(server)
        try:
            value = fn(url)
        except ImportError as exc:
            print(f"  {name}: skipped ({exc}); pip install -e '.[bench]'", file=sys.stderr)
            return None
        finally:
            drop()
        if isinstance(value, float):
            results.append((name, value, note))
            print(f"  {name}: {value:,.0f}", file=sys.stderr)
        return value

    print(f"server: {server.split('@')[-1]}", file=sys.stderr)
    limit_1 = measure("plain SQL, 1 job/transaction, 1 connection", lambda u: plain_sql(u, single_jobs, 1, 1))
    measure("plain SQL, 1 job/transaction, 16 connections", lambda u: plain_sql(u, single_jobs * 4, 1, 16))
    limit_100 = measure("plain SQL, 100 jobs/transaction, 1 connection", lambda u: plain_sql(u, drain_jobs, 100, 1))
    limit_100_16 = measure(
        "plain SQL, 100 jobs/transaction, 16 connections", lambda u: plain_sql(u, drain_jobs, 100, 16)
    )
    pgq_default = measure("pgq drain, defaults (concurrency 10)", lambda u: pgq_drain(u, drain_jobs, 10))
    pgq_best = measure("pgq drain, concurrency 100", lambda u: pgq_drain(u, drain_jobs, 100))
    pgqueuer_default = measure("PgQueuer drain, default batch_size", lambda u: pgqueuer_drain(u, drain_jobs, 10))
    pgqueuer_100 = measure("PgQueuer drain, batch_size=100", lambda u: pgqueuer_drain(u, drain_jobs, 100))
    pgq_many = measure("pgq enqueue_many, 1,000 per call", lambda u: pgq_enqueue_many(u, drain_jobs))
    pgqueuer_many = measure("PgQueuer enqueue, 1,000 per call", lambda u: pgqueuer_enqueue_many(u, drain_jobs))
    lags = measure("pgq idle latency", pgq_latency)

    print("\n| contender | jobs/s | note |\n| --- | --- | --- |")
    for name, value, note in results:
        print(f"| {name} | {value:,.0f} | {note} |")
    if lags:
        p50, p99 = statistics.median(lags), lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        print(f"\npgq idle latency: p50 {p50:.2f} ms, p95 {lags[int(len(lags) * 0.95)]:.2f} ms, p99 {p99:.2f} ms")
    best = max(x for x in (pgq_default, pgq_best) if x) if (pgq_default or pgq_best) else None
    print("\nratios (targets from the benchmarks issue):")
    for label, mine, theirs, target in (
        ("pgq defaults / PgQueuer defaults", pgq_default, pgqueuer_default, "≥ 2"),
        ("pgq defaults / PgQueuer batch 100", pgq_default, pgqueuer_100, "≥ 1.5"),
        ("pgq best / plain SQL batched, 1 connection", best, limit_100, ""),
        ("pgq best / plain SQL batched, 16 connections", best, limit_100_16, "≥ 0.6 with 2 processes"),
        ("pgq enqueue_many / PgQueuer batch enqueue", pgq_many, pgqueuer_many, "≥ 1.5"),
        ("pgq defaults / plain SQL one job per transaction", pgq_default, limit_1, ""),
    ):
        if mine and theirs:
            print(f"  {label}: {mine / theirs:.2f}{f' (target {target})' if target else ''}")
    os.environ.pop("PGQ_DATABASE_URL", None)


if __name__ == "__main__":
    main()
