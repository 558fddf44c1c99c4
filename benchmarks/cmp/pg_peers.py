"""PgQueuer and Procrastinate on the same PostgreSQL, each at its own best where we know it
(benchmarks/README.md says which settings and why). Each runs in this process, as it ships."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg

from cmp.common import LATENCY_WARM_UP, CpuMeter, Result, Skipped
from cmp.pgq_rows import latency_result


def _dsn(url: str) -> str:
    """asyncpg takes URLs only: turn a key=value conninfo into one."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    host = str(params.get("host") or "127.0.0.1")
    user, dbname, port = params.get("user", "postgres"), params.get("dbname", "postgres"), params.get("port", 5432)
    if host.startswith("/"):
        return f"postgresql://{user}@/{dbname}?host={host}&port={port}"
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def _pgqueuer() -> Any:
    try:
        import asyncpg
        import pgqueuer
    except ImportError as exc:
        raise Skipped(f"{exc.name} is not installed: pip install -e '.[bench]'") from None
    return asyncpg, pgqueuer


# ------------------------------------------------------------------- PgQueuer


def pgqueuer_drain(url: str, jobs: int, batch_size: int) -> Result:
    asyncpg, _ = _pgqueuer()
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
        await conn.execute("checkpoint")
        manager = QueueManager(queries)

        @manager.entrypoint("noop")
        async def noop(job: Any) -> None:
            return None

        meter = CpuMeter(url).start()
        start = time.perf_counter()
        await manager.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
        elapsed = time.perf_counter() - start
        client, server = meter.stop(jobs)
        left = await conn.fetchval("select count(*) from pgqueuer")
        await conn.close()
        note = "QueueManager.run(mode=drain), wall clock from its start to its return"
        return Result(jobs / elapsed, client, server, note=f"{note}; {left} jobs left in the queue" if left else note)

    return asyncio.run(run())


def pgqueuer_enqueue_many(url: str, jobs: int) -> Result:
    asyncpg, _ = _pgqueuer()
    from pgqueuer import AsyncpgDriver, Queries

    async def run() -> Result:
        conn = await asyncpg.connect(_dsn(url))
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        start = time.perf_counter()
        for offset in range(0, jobs, 1000):
            n = min(1000, jobs - offset)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        rate = jobs / (time.perf_counter() - start)
        await conn.close()
        return Result(rate, note="Queries.enqueue with lists of 1,000")

    return asyncio.run(run())


def pgqueuer_latency(url: str, count: int = 200) -> Result:
    """One job every 20 ms onto an idle QueueManager (its defaults) in this event loop, from the
    enqueue's return (an autocommit statement: committed) to the handler's start."""
    asyncpg, _ = _pgqueuer()
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
            started[int(job.id)] = time.monotonic()

        worker = asyncio.create_task(manager.run())
        await asyncio.sleep(0.5)
        enqueue = Queries(AsyncpgDriver(producer)).enqueue
        for _ in range(LATENCY_WARM_UP):
            await enqueue(["ping"], [None], [0])
            await asyncio.sleep(0.02)
        for _ in range(count):
            (job_id,) = await enqueue(["ping"], [None], [0])
            committed[int(job_id)] = time.monotonic()
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + 30
        while len(started) < count + LATENCY_WARM_UP and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        manager.shutdown.set()
        await worker
        await producer.close()
        await consumer.close()

    asyncio.run(run())
    return latency_result(started, committed, "QueueManager defaults, producer in the same event loop")


# -------------------------------------------------------------- Procrastinate


def _procrastinate_app(url: str, pool_size: int | None) -> Any:
    try:
        import procrastinate
    except ImportError:
        raise Skipped("procrastinate is not installed: pip install -e '.[bench]'") from None

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
            meter = CpuMeter(url).start()
            start = time.perf_counter()
            await app.run_worker_async(concurrency=concurrency, wait=False)
            elapsed = time.perf_counter() - start
            client, server = meter.stop(jobs)
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
            start = time.perf_counter()
            await _procrastinate_fill(app, jobs)
            rate = jobs / (time.perf_counter() - start)
        return Result(rate, note="batch_defer_async, 1,000 per call")

    return asyncio.run(run())
