"""pgq side by side with the physical limit and its peers, on one PostgreSQL server, in one run.

    python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]'
    .venv-bench/bin/python benchmarks/compare.py [--database-url URL] [--quick]

(a venv of its own: PgQueuer installs a command also named ``pgq``).

Without a URL it starts the embedded PostgreSQL (durable defaults: fsync on)
in a temporary folder. Each contender gets a fresh database on that server.
Rates are job lives per second: enqueue excluded for the drains (the queue is
pre-filled), included for the plain-SQL limit (insert, claim, finish).
CPU per job is measured over the same window as the rate (see the README for
the two-process drain): the client's with
``time.process_time()`` (every thread of this process), the server's from
/proc for the backends serving the contender's database (local server only).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass
class Result:
    """One row of the table: a rate and/or latencies, and what it cost per job."""

    jobs_per_s: float | None = None
    client_cpu_ms: float | None = None
    server_cpu_ms: float | None = None
    lags_ms: list[float] = field(default_factory=list)
    note: str = ""


# ------------------------------------------------------------------------ CPU

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float | None:
    """utime + stime of a process in seconds, from /proc/<pid>/stat; None once it has gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


class CpuMeter:
    """Client and server CPU over one measured window, as milliseconds per job.

    Client: ``time.process_time()`` of this process (all its threads, this sampler
    included). Server: utime + stime of the postmaster's children whose process
    title names the contender's database (its client backends, and an autovacuum
    worker if one happens to run there), read from /proc every ``interval``
    seconds by a thread. Backends that exist when the window opens count from
    their reading then (or not at all with ``only_new``); backends born inside
    the window count from zero. A backend that exits loses at most its last
    interval. Shared processes (WAL writer, checkpointer, background writer)
    cannot be attributed to one database and are left out. Server CPU is None
    when the server is not on this machine (or /proc is not readable).
    """

    def __init__(self, url: str, jobs: int, only_new: bool = False, interval: float = 0.1) -> None:
        self.jobs = jobs
        self.only_new = only_new
        self.interval = interval
        self.postmaster, self.title = self._find_server(url)
        self.baseline: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.others: set[int] = set()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.client_start = 0.0

    @staticmethod
    def _find_server(url: str) -> tuple[int | None, str]:
        with psycopg.connect(url) as conn:
            pid, dbname = conn.execute("select pg_backend_pid(), current_database()").fetchone()  # type: ignore[misc]
        title = f" {dbname} "
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if title not in cmdline.read().decode(errors="replace"):
                    return None, title  # that pid is not this server's backend: a remote server
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                return int(stat.read().rsplit(")", 1)[1].split()[1]), title
        except (OSError, IndexError, ValueError):
            return None, title

    def _backends(self) -> list[int]:
        try:
            with open(f"/proc/{self.postmaster}/task/{self.postmaster}/children", encoding="ascii") as children:
                pids = [int(pid) for pid in children.read().split()]
        except OSError:
            return []
        mine = []
        for pid in pids:
            if pid in self.others:
                continue
            if pid not in self.last and pid not in self.baseline:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        title = cmdline.read().decode(errors="replace")
                except OSError:
                    continue
                if self.title not in title:
                    self.others.add(pid)
                    continue
            mine.append(pid)
        return mine

    def _sample(self) -> None:
        for pid in self._backends():
            cpu = _proc_cpu(pid)
            if cpu is not None:
                self.last[pid] = cpu

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            self._sample()

    def start(self) -> CpuMeter:
        if self.postmaster is not None:
            for pid in self._backends():
                cpu = _proc_cpu(pid)
                if cpu is None:
                    continue
                if self.only_new:
                    self.others.add(pid)
                else:
                    self.baseline[pid] = cpu
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        self.client_start = time.process_time()
        return self

    def stop(self) -> tuple[float, float | None]:
        """(client, server) CPU in ms per job since :meth:`start`."""
        client = (time.process_time() - self.client_start) * 1000 / self.jobs
        if self.thread is None:
            return client, None
        self.stopping.set()
        self.thread.join()
        self._sample()
        server = sum(cpu - self.baseline.get(pid, 0.0) for pid, cpu in self.last.items())
        return client, server * 1000 / self.jobs


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


def plain_sql(url: str, jobs: int, batch: int, connections: int) -> Result:
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
    meter = CpuMeter(url, per * connections).start()
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    client, server = meter.stop()
    for conn in conns:
        conn.close()
    return Result(per * connections / elapsed, client, server, note="insert + claim + finish")


# ------------------------------------------------------------------------ pgq


def _pgq_app(url: str) -> pgq.App:
    app = pgq.App(url, auto_migrate=True)
    app.migrate()

    @app.task(name="noop")
    async def noop(i: int = 0) -> None:
        return None

    return app


def _pgq_fill(app: pgq.App, jobs: int) -> None:
    for offset in range(0, jobs, 1000):
        app.enqueue_many([pgq.JobSpec("noop", {"i": i}) for i in range(offset, min(offset + 1000, jobs))])


def pgq_drain(url: str, jobs: int, concurrency: int) -> Result:
    app = _pgq_app(url)
    _pgq_fill(app, jobs)

    async def work() -> Result:
        # Wall clock from the worker's start to the last outcome written, as for the peers.
        meter = CpuMeter(url, jobs).start()
        start = time.perf_counter()
        async with app.worker(concurrency=concurrency, scheduler=False, sweeper=False) as worker:
            while worker.processed < jobs or worker.completer.unflushed_ids():
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - start
            client, server = meter.stop()  # before the worker's connections close
        return Result(jobs / elapsed, client, server)

    result = asyncio.run(work())
    app.close()
    return result


def pgq_processes(url: str, jobs: int, processes: int = 2, concurrency: int = 100) -> Result:
    """The drain ``pgq bench`` runs with ``--processes``: its own code, in the contender's database.

    ``pgq worker`` processes at ``concurrency`` each, on a pre-filled queue, in
    the bench schema. The rate is ``pgq bench``'s: first ``started_at`` to last
    ``finished_at`` from the database, so the processes' start-up is left out
    (the other drains count from the worker's start).
    """
    from pgq.bench.runner import SCHEMA, BenchOptions, _Bench

    app = pgq.App(url, schema=SCHEMA, auto_migrate=True)
    app.migrate()
    options = BenchOptions(url, jobs=jobs, concurrency=concurrency, processes=processes, progress=lambda _: None)
    bench = _Bench(app, url, options, [])
    app.get_job(0)  # opens the app's connection now: the meter counts only the backends the drain opens
    meter = CpuMeter(url, jobs, only_new=True).start()
    row = bench._drain_processes(jobs, processes)
    _, server = meter.stop()
    app.close()
    note = "rate from the database's timestamps (process start-up excluded); client CPU: in other processes"
    return Result(row.jobs_per_s, None, server, note=f"{row.note}; {note}" if row.note else note)


def pgq_enqueue_many(url: str, jobs: int) -> Result:
    app = _pgq_app(url)
    meter = CpuMeter(url, jobs).start()
    start = time.perf_counter()
    _pgq_fill(app, jobs)
    rate = jobs / (time.perf_counter() - start)
    client, server = meter.stop()
    app.close()
    return Result(rate, client, server)


def pgq_latency(url: str, count: int = 200) -> Result:
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
            deadline = time.monotonic() + 30
            while len(started) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.01)

    asyncio.run(run())
    app.close()
    return _latency_result(started, committed, "worker at concurrency 10")


def _latency_result(started: dict[int, float], committed: dict[int, float], note: str) -> Result:
    lags = sorted((started[i] - committed[i]) * 1000 for i in committed if i in started)
    missing = len(committed) - len(lags)
    return Result(lags_ms=lags, note=f"{note}; {missing} jobs not started" if missing else note)


# ------------------------------------------------------------------- PgQueuer


def _dsn(url: str) -> str:
    """asyncpg takes URLs only: turn a key=value conninfo into one."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    host = str(params.get("host") or "127.0.0.1")
    user, dbname, port = params.get("user", "postgres"), params.get("dbname", "postgres"), params.get("port", 5432)
    if host.startswith("/"):
        return f"postgresql://{user}@/{dbname}?host={host}&port={port}"
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def pgqueuer_drain(url: str, jobs: int, batch_size: int) -> Result:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    async def run() -> Result:
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

        meter = CpuMeter(url, jobs).start()
        start = time.perf_counter()
        await manager.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
        elapsed = time.perf_counter() - start
        client, server = meter.stop()
        left = await conn.fetchval("select count(*) from pgqueuer")
        await conn.close()
        return Result(jobs / elapsed, client, server, note=f"{left} jobs left in the queue" if left else "")

    return asyncio.run(run())


def pgqueuer_enqueue_many(url: str, jobs: int) -> Result:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    async def run() -> Result:
        conn = await asyncpg.connect(_dsn(url))
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        meter = CpuMeter(url, jobs).start()
        start = time.perf_counter()
        for offset in range(0, jobs, 1000):
            n = min(1000, jobs - offset)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        rate = jobs / (time.perf_counter() - start)
        client, server = meter.stop()
        await conn.close()
        return Result(rate, client, server)

    return asyncio.run(run())


def pgqueuer_latency(url: str, count: int = 200) -> Result:
    """As pgq's: one job every 20 ms onto an idle QueueManager (its defaults), from the
    enqueue's return (an autocommit statement: committed) to the handler's start."""
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager

    started: dict[int, float] = {}
    committed: dict[int, float] = {}

    async def run() -> None:
        consumer = await asyncpg.connect(_dsn(url))
        producer = await asyncpg.connect(_dsn(url))
        queries = Queries(AsyncpgDriver(consumer))
        await queries.install()
        manager = QueueManager(queries)

        @manager.entrypoint("ping")
        async def ping(job: Any) -> None:
            started[int(job.id)] = time.perf_counter()

        worker = asyncio.create_task(manager.run())
        await asyncio.sleep(0.5)
        enqueue = Queries(AsyncpgDriver(producer)).enqueue
        for _ in range(count):
            (job_id,) = await enqueue(["ping"], [None], [0])
            committed[int(job_id)] = time.perf_counter()
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + 30
        while len(started) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        manager.shutdown.set()
        await worker
        await producer.close()
        await consumer.close()

    asyncio.run(run())
    return _latency_result(started, committed, "QueueManager defaults")


# -------------------------------------------------------------- Procrastinate


def _procrastinate_app(url: str, pool_size: int | None) -> Any:
    import procrastinate

    # It warns that an App built in __main__ cannot be found by its CLI workers: ours runs in this
    # process, with the task registered by name, so the warning does not apply.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    pool = {"min_size": pool_size, "max_size": pool_size} if pool_size else {}
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, **pool))

    @app.task(name="noop")
    async def noop(i: int = 0) -> None:
        return None

    return app


async def _procrastinate_fill(app: Any, jobs: int) -> None:
    task = app.tasks["noop"]
    for offset in range(0, jobs, 1000):
        await task.batch_defer_async(*({"i": i} for i in range(offset, min(offset + 1000, jobs))))


def procrastinate_drain(url: str, jobs: int, concurrency: int, pool_size: int | None = None) -> Result:
    """A worker with ``wait=False`` (it stops once the queue is empty, after its running
    jobs have finished and their status is written), from its start to its return."""
    app = _procrastinate_app(url, pool_size)

    async def run() -> Result:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            await _procrastinate_fill(app, jobs)
            meter = CpuMeter(url, jobs).start()
            start = time.perf_counter()
            await app.run_worker_async(concurrency=concurrency, wait=False)
            elapsed = time.perf_counter() - start
            client, server = meter.stop()
            async with app.connector.pool.connection() as conn:
                cursor = await conn.execute("select count(*) from procrastinate_jobs where status = 'succeeded'")
                (done,) = await cursor.fetchone()
        note = "jobs stay in procrastinate_jobs (its default: no delete)"
        if done != jobs:
            note += f"; only {done} of {jobs} jobs succeeded"
        return Result(done / elapsed, client, server, note=note)

    return asyncio.run(run())


def procrastinate_enqueue_many(url: str, jobs: int) -> Result:
    app = _procrastinate_app(url, None)

    async def run() -> Result:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            meter = CpuMeter(url, jobs).start()
            start = time.perf_counter()
            await _procrastinate_fill(app, jobs)
            rate = jobs / (time.perf_counter() - start)
            client, server = meter.stop()
        return Result(rate, client, server, note="batch_defer_async")

    return asyncio.run(run())


# ------------------------------------------------------------------------ run


def _pct(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))]


def _number(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


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
    # Procrastinate drains at a few hundred jobs/s here: a rate needs no 50,000 of them.
    slow_jobs = min(drain_jobs, 5_000)

    results: list[tuple[str, Result]] = []

    def measure(name: str, fn: Callable[[str], Result]) -> float | None:
        url, drop = fresh_database(server)
        try:
            result = fn(url)
        except ImportError as exc:
            print(f"  {name}: skipped ({exc}); pip install -e '.[bench]'", file=sys.stderr)
            return None
        finally:
            drop()
        results.append((name, result))
        shown = [f"{result.jobs_per_s:,.0f} jobs/s" if result.jobs_per_s else ""]
        if result.lags_ms:
            shown.append(f"p50 {statistics.median(result.lags_ms):.2f} ms, p99 {_pct(result.lags_ms, 0.99):.2f} ms")
        print(f"  {name}: {', '.join(x for x in [*shown, result.note] if x)}", file=sys.stderr)
        return result.jobs_per_s

    print(f"server: {server.split('@')[-1]}", file=sys.stderr)
    limit_1 = measure("plain SQL, 1 job/transaction, 1 connection", lambda u: plain_sql(u, single_jobs, 1, 1))
    measure("plain SQL, 1 job/transaction, 16 connections", lambda u: plain_sql(u, single_jobs * 4, 1, 16))
    limit_100 = measure("plain SQL, 100 jobs/transaction, 1 connection", lambda u: plain_sql(u, drain_jobs, 100, 1))
    limit_100_16 = measure(
        "plain SQL, 100 jobs/transaction, 16 connections", lambda u: plain_sql(u, drain_jobs, 100, 16)
    )
    pgq_default = measure("pgq drain, defaults (concurrency 10)", lambda u: pgq_drain(u, drain_jobs, 10))
    pgq_100 = measure("pgq drain, concurrency 100", lambda u: pgq_drain(u, drain_jobs, 100))
    pgq_2 = measure("pgq drain, 2 processes, concurrency 100 each", lambda u: pgq_processes(u, drain_jobs))
    pgqueuer_default = measure("PgQueuer drain, default batch_size (10)", lambda u: pgqueuer_drain(u, drain_jobs, 10))
    pgqueuer_100 = measure("PgQueuer drain, batch_size=100", lambda u: pgqueuer_drain(u, drain_jobs, 100))
    procrastinate_default = measure(
        "Procrastinate drain, defaults (concurrency 1)", lambda u: procrastinate_drain(u, slow_jobs, 1)
    )
    procrastinate_10 = measure(
        # Its best of those tried: at concurrency 10 its default pool (4 connections) halves the rate,
        # concurrency 100 with a pool of 20 is slower than 10 with 10.
        "Procrastinate drain, concurrency 10, pool 10",
        lambda u: procrastinate_drain(u, slow_jobs, 10, 10),
    )
    pgq_many = measure("pgq enqueue_many, 1,000 per call", lambda u: pgq_enqueue_many(u, drain_jobs))
    pgqueuer_many = measure("PgQueuer enqueue, 1,000 per call", lambda u: pgqueuer_enqueue_many(u, drain_jobs))
    procrastinate_many = measure(
        "Procrastinate batch defer, 1,000 per call", lambda u: procrastinate_enqueue_many(u, drain_jobs)
    )
    measure("pgq idle latency (200 jobs, 20 ms apart)", pgq_latency)
    measure("PgQueuer idle latency (200 jobs, 20 ms apart)", pgqueuer_latency)
    latencies = {name.split(" idle")[0]: r.lags_ms for name, r in results if r.lags_ms}

    print(
        "\n| contender | jobs/s | client CPU ms/job | server CPU ms/job | p50 ms | p95 ms | p99 ms | note |"
        "\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    for name, r in results:
        lags = r.lags_ms
        p50, p95, p99 = (statistics.median(lags), _pct(lags, 0.95), _pct(lags, 0.99)) if lags else (None,) * 3
        cells = [
            _number(r.jobs_per_s),
            _number(r.client_cpu_ms, 3),
            _number(r.server_cpu_ms, 3),
            _number(p50, 2),
            _number(p95, 2),
            _number(p99, 2),
        ]
        print(f"| {name} | {' | '.join(cells)} | {r.note} |")

    pgq_best = max((x for x in (pgq_default, pgq_100) if x), default=None)
    procrastinate_best = max((x for x in (procrastinate_default, procrastinate_10) if x), default=None)
    print("\nratios (targets from the benchmarks issue):")
    for label, mine, theirs, target in (
        ("pgq defaults / PgQueuer defaults", pgq_default, pgqueuer_default, "≥ 2"),
        ("pgq defaults / PgQueuer batch 100", pgq_default, pgqueuer_100, "≥ 1.5"),
        ("pgq defaults / Procrastinate defaults", pgq_default, procrastinate_default, ""),
        ("pgq best, 1 process / Procrastinate best", pgq_best, procrastinate_best, ""),
        ("pgq best, 1 process / plain SQL batched, 1 connection", pgq_best, limit_100, ""),
        ("pgq best, 1 process / plain SQL batched, 16 connections", pgq_best, limit_100_16, ""),
        ("pgq 2 processes / plain SQL batched, 16 connections", pgq_2, limit_100_16, "≥ 0.6"),
        ("pgq enqueue_many / PgQueuer batch enqueue", pgq_many, pgqueuer_many, "≥ 1.5"),
        ("pgq enqueue_many / Procrastinate batch defer", pgq_many, procrastinate_many, ""),
        ("pgq defaults / plain SQL one job per transaction", pgq_default, limit_1, ""),
    ):
        if mine and theirs:
            print(f"  {label}: {mine / theirs:.2f}{f' (target {target})' if target else ''}")
    for who, lags in latencies.items():
        target = " (target ≤ 1.5 / ≤ 3 ms)" if who == "pgq" else ""
        print(f"  {who} idle latency p50 / p99: {statistics.median(lags):.2f} / {_pct(lags, 0.99):.2f} ms{target}")
    os.environ.pop("PGQ_DATABASE_URL", None)


if __name__ == "__main__":
    main()
