"""A quick measure of pgq on one database: enqueue, enqueue_many, drain and idle latency.

    python benchmarks/quick.py [--database-url URL] [--jobs 20000] [--concurrency 10]

Runs in its own schema (`pgq_bench`, dropped afterwards), so it never touches
your jobs. Without a URL it uses the embedded PostgreSQL like every pgq command.
The full suite with peers and the physical limit comes with `pgq bench` and
`benchmarks/compare.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import psycopg

import pgq

SCHEMA = "pgq_bench"


def drop_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"drop schema if exists {SCHEMA} cascade")


def measure_enqueue(app: pgq.App, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        app.enqueue("noop", {"i": i})
    return count / (time.perf_counter() - start)


def measure_enqueue_many(app: pgq.App, count: int, batch: int = 1000) -> float:
    start = time.perf_counter()
    for offset in range(0, count, batch):
        app.enqueue_many([pgq.JobSpec("noop", {"i": i}) for i in range(offset, min(offset + batch, count))])
    return count / (time.perf_counter() - start)


async def measure_drain(app: pgq.App, count: int, concurrency: int) -> float:
    done = asyncio.Event()
    finished = 0

    @app.task(name="noop")
    async def noop(i: int) -> None:
        nonlocal finished
        finished += 1
        if finished == count:
            done.set()

    start = time.perf_counter()
    watch = await psycopg.AsyncConnection.connect(app.url, autocommit=True)
    async with app.worker(concurrency=concurrency, poll_interval=0.5):
        await done.wait()
        # Finished once the database holds no live job: every outcome is written.
        while (await (await watch.execute(f"select exists(select from {SCHEMA}.jobs)")).fetchone() or [False])[0]:
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - start
    await watch.close()
    return count / elapsed


async def measure_latency(app: pgq.App, count: int) -> list[float]:
    started: dict[int, float] = {}
    committed: dict[int, float] = {}

    @app.task(name="ping", pass_context=True)
    async def ping(ctx: pgq.JobContext) -> None:
        started[ctx.job.id] = time.perf_counter()

    async with app.worker(concurrency=10, poll_interval=5):
        await asyncio.sleep(0.5)
        for _ in range(count):
            job_id = await app.enqueue_async("ping", {})
            committed[job_id] = time.perf_counter()  # enqueue returned: the insert is committed
            await asyncio.sleep(0.02)
        while len(started) < count:
            await asyncio.sleep(0.01)
    return sorted((started[i] - committed[i]) * 1000 for i in committed)


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    options = parser.parse_args()

    app = pgq.App(options.database_url, schema=SCHEMA, auto_migrate=True)
    url = app.url
    drop_schema(url)
    results: dict[str, Any] = {}
    try:
        app.migrate()
        with psycopg.connect(url) as conn:
            results["server"] = conn.execute("show server_version").fetchone()[0]  # type: ignore[index]
        results["enqueue, one per call (jobs/s)"] = measure_enqueue(app, min(options.jobs, 5000))
        results["enqueue_many, 1000 per call (jobs/s)"] = measure_enqueue_many(app, options.jobs)
        with psycopg.connect(url, autocommit=True) as conn:
            pending = conn.execute(f"select count(*) from {SCHEMA}.jobs").fetchone()[0]  # type: ignore[index]
        rate = asyncio.run(measure_drain(app, pending, options.concurrency))
        results[f"drain {pending} jobs, concurrency {options.concurrency} (jobs/s)"] = rate
        latencies = asyncio.run(measure_latency(app, 200))
        p50, p95, p99 = statistics.median(latencies), percentile(latencies, 0.95), percentile(latencies, 0.99)
        results["idle latency p50 / p95 / p99 (ms)"] = f"{p50:.2f} / {p95:.2f} / {p99:.2f}"
    finally:
        app.close()
        drop_schema(url)
    width = max(map(len, results))
    for name, value in results.items():
        shown = f"{value:,.0f}" if isinstance(value, float) else str(value)
        print(f"{name.ljust(width)}  {shown}")


if __name__ == "__main__":
    main()
