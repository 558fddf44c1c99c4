"""pgq's rows, through its public API only: ``pgq.App``, ``app.enqueue*``, ``app.set_queue`` and the
``pgq worker`` command, the way a user runs it. Nothing here reads a worker's internals: the end of
a drain and its rate come from the database (see ``common.watch_drain``), a handler's start time
from its own return value (``job_history.result``)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

import psycopg

import pgq
from cmp.common import LATENCY_WARM_UP, Drain, Result, python_env, rss_mb, stop_processes, watch_drain
from cmp.pgq_tasks import register

DRAIN = Drain(jobs="pgq.jobs", history="pgq.job_history")


def _app(url: str) -> pgq.App:
    app = pgq.App(url)
    app.migrate()
    register(app)
    return app


def _fill(app: pgq.App, jobs: int, groups: int = 0, first: int = 0, task: str = "noop") -> None:
    for offset in range(first, first + jobs, 1000):
        app.enqueue_many(
            [
                pgq.JobSpec(task, {"i": i}, group=f"g{i % groups}" if groups else None)
                for i in range(offset, min(offset + 1000, first + jobs))
            ]
        )


class WorkerProcess:
    """``pgq worker cmp.pgq_tasks:app [flags]`` as a subprocess, its log in a temporary file
    (a worker at its defaults logs every job at INFO, as in production)."""

    def __init__(self, url: str, *flags: str) -> None:
        self.log: IO[bytes] = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "pgq", "worker", "cmp.pgq_tasks:app", *flags]
        self.process = subprocess.Popen(
            command, env=python_env(PGQ_DATABASE_URL=url), stdout=self.log, stderr=subprocess.STDOUT
        )

    def stop(self) -> str:
        """Stop it (SIGTERM, as a deployment does); returns the tail of its log if it failed."""
        stop_processes([self.process])
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        self.log.close()
        if self.process.returncode not in (0, -15):
            return f"worker exited {self.process.returncode}: {text[-500:]}"
        return ""

    def wait_ready(self, url: str, processes: int = 1, timeout: float = 30.0) -> None:
        """Until ``processes`` workers are registered as running, and their listeners a moment more."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                (running,) = conn.execute("select count(*) from pgq.workers where status = 'running'").fetchone()  # type: ignore[misc]
                if running >= processes:
                    time.sleep(0.5)
                    return
                if self.process.poll() is not None:
                    raise RuntimeError(self.stop())
                time.sleep(0.05)
        raise RuntimeError(f"no pgq worker registered within {timeout:.0f} s")


def _checkpoint(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("checkpoint")  # the fill's dirty pages are not the drain's to write


def pgq_drain(
    url: str,
    jobs: int,
    concurrency: int | None = None,
    processes: int = 1,
    limit: int | None = None,
    groups: int = 0,
    task: str = "noop",
) -> Result:
    """``pgq worker`` on ``jobs`` pre-filled no-op jobs. ``concurrency`` None: pgq's default.
    ``limit``: the queue's global concurrency limit; ``groups``: that many groups at group
    concurrency 1 (round-robin fair claims)."""
    app = _app(url)
    if limit is not None:
        app.set_queue("default", concurrency=limit)
    if groups:
        app.set_queue("default", group_concurrency=1)
    _fill(app, jobs, groups, task=task)
    app.close()
    _checkpoint(url)
    flags = [*(["--concurrency", str(concurrency)] if concurrency else []), "--processes", str(processes)]
    worker = WorkerProcess(url, *flags)
    try:
        result = watch_drain(url, DRAIN, [worker.process], jobs, timeout=max(120.0, jobs / 200))
    finally:
        failure = worker.stop()
    if failure:
        result.note = "; ".join(x for x in (result.note, failure) if x)
    return result


# ------------------------------------------------------------------- enqueue


def pgq_enqueue_many(url: str, jobs: int) -> Result:
    app = _app(url)
    start = time.perf_counter()
    _fill(app, jobs)
    rate = jobs / (time.perf_counter() - start)
    app.close()
    return Result(rate, note="1,000 jobs per call")


def pgq_enqueue_one(url: str, jobs: int, threads: int = 1) -> Result:
    """``app.enqueue`` one job per call, from ``threads`` threads sharing one App (its pool holds
    10 connections by default)."""
    app = _app(url)
    per = jobs // threads
    barrier = threading.Barrier(threads + 1)

    def client(first: int) -> None:
        barrier.wait()
        for i in range(first, first + per):
            app.enqueue("noop", {"i": i})

    workers = [threading.Thread(target=client, args=(n * per,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in workers:
        thread.join()
    rate = per * threads / (time.perf_counter() - start)
    app.close()
    return Result(rate, note=f"{threads} thread{'s' if threads > 1 else ''}, one App")


# ------------------------------------------------------------------- latency


def pgq_latency(url: str, count: int = 200, interval: float = 0.02) -> Result:
    """Idle latency: ``count`` jobs ``interval`` s apart onto an idle ``pgq worker`` at its defaults,
    from ``app.enqueue`` returning (committed) to the handler's start."""
    return _latency(url, count, interval, batch=1, note="pgq worker at its defaults")


def pgq_latency_under_load(url: str, rate: float, seconds: float) -> Result:
    """Latency while jobs arrive at a steady ``rate`` per second: one ``enqueue`` per tick, or
    one ``enqueue_many`` per 5 ms tick when the rate is higher than one producer's single
    enqueues keep up with (every job of a batch is timed from the batch's commit)."""
    tick = max(1.0 / rate, 0.005)
    per_tick = max(1, round(rate * tick))
    count = max(50, int(rate * seconds))
    note = (
        f"{rate:,.0f} jobs/s for {seconds:g} s ({per_tick} per {tick * 1000:.1f} ms tick); pgq worker at its defaults"
    )
    return _latency(url, count, tick, batch=per_tick, note=note)


def _latency(url: str, count: int, interval: float, batch: int, note: str) -> Result:
    app = _app(url)
    worker = WorkerProcess(url)
    committed: dict[int, float] = {}
    warm_up = LATENCY_WARM_UP if batch == 1 else 0
    try:
        worker.wait_ready(url)
        for _ in range(warm_up):
            app.enqueue("ping")
            time.sleep(interval)
        next_at = time.monotonic()
        sent = 0
        while sent < count:
            n = min(batch, count - sent)
            if n == 1:
                ids = [app.enqueue("ping")]
            else:
                ids = app.enqueue_many([pgq.JobSpec("ping") for _ in range(n)])
            now = time.monotonic()
            for job_id in ids:
                committed[job_id] = now
            sent += n
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        started = _wait_results(url, count + warm_up)
    finally:
        failure = worker.stop()
        app.close()
    return latency_result(started, committed, "; ".join(x for x in (note, failure) if x))


def _wait_results(url: str, count: int, timeout: float = 60.0) -> dict[int, float]:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (done,) = conn.execute("select count(*) from pgq.job_history where task = 'ping'").fetchone()  # type: ignore[misc]
            if done >= count:
                break
            time.sleep(0.05)
        rows = conn.execute("select id, result from pgq.job_history where task = 'ping'").fetchall()
    return {job_id: float(result) for job_id, result in rows if result is not None}


def latency_result(started: dict[Any, float], committed: dict[Any, float], note: str) -> Result:
    lags = sorted((started[i] - committed[i]) * 1000 for i in committed if i in started)
    missing = len(committed) - len(lags)
    return Result(lags_ms=lags, note=f"{note}; {missing} jobs not started" if missing else note)


# -------------------------------------------------------------------- ageing


def pgq_ageing(url: str, jobs: int, churn: int, history_rows: int, progress: Any) -> dict[str, Result]:
    """In one database: a fresh drain; ``churn`` jobs through ``jobs`` by one ``pgq worker`` at
    its defaults (its RSS read after the first round and at the end); a drain after that; then
    ``history_rows`` rows added to job_history with generate_series, and a drain after that.
    Each drain is ``jobs`` jobs and counts only its own rows of history."""
    results: dict[str, Result] = {}
    app = _app(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # Daily partitions over the week before now, as an install that upgraded to 0018 a week
        # ago has: the history rows below go to the partitions of their days.
        conn.execute("select pgq.begin_history_partitions(date_trunc('day', now(), 'UTC') - interval '7 days')")
    app.prune()
    app.close()
    results["fresh"] = _ageing_drain(url, jobs)
    progress(f"  ageing: fresh drain {results['fresh'].jobs_per_s or 0:,.0f} jobs/s; churning {churn:,} jobs")
    results["rss"] = _churn(url, churn, progress)
    results["churned"] = _ageing_drain(url, jobs)
    progress(f"  ageing: after churn {results['churned'].jobs_per_s or 0:,.0f} jobs/s; adding {history_rows:,} rows")
    with psycopg.connect(url, autocommit=True) as conn:
        for offset in range(0, history_rows, 1_000_000):
            # Spread over the six days before now, inside the default 7-day retention (a week of
            # history, not ten million jobs that all finished this second), one in a hundred failed.
            conn.execute(
                """insert into pgq.job_history (id, queue, task, args, priority, status, attempts,
                        max_attempts, run_at, created_at, started_at, finished_at)
                   select -g, 'default', 'old', '{}', 0,
                          case when g %% 100 = 0 then 'failed' else 'completed' end, 1, 3, t, t, t, t
                     from generate_series(%s::bigint, %s::bigint) g,
                          lateral (select now() - (g %% 518400) * interval '1 second' as t) at""",
                [offset + 1, min(offset + 1_000_000, history_rows)],
            )
        # What autovacuum does after such a load (insert-triggered vacuum and analyze, within a
        # minute or two): the drain then meets a settled table, as it would in production.
        conn.execute("vacuum analyze pgq.job_history")
    results["history"] = _ageing_drain(url, jobs)
    return results


def _ageing_drain(url: str, jobs: int) -> Result:
    with psycopg.connect(url, autocommit=True) as conn:
        (since,) = conn.execute("select clock_timestamp()").fetchone()  # type: ignore[misc]
    app = _app(url)
    _fill(app, jobs)
    app.close()
    _checkpoint(url)
    drain = Drain(DRAIN.jobs, DRAIN.history, f"finished_at >= '{since.isoformat()}'", since=since.isoformat())
    worker = WorkerProcess(url)
    try:
        result = watch_drain(url, drain, [worker.process], jobs, timeout=max(300.0, jobs / 100))
    finally:
        worker.stop()
    return result


def _churn(url: str, total: int, progress: Any, round_size: int = 50_000) -> Result:
    app = _app(url)
    worker = WorkerProcess(url)
    readings: list[float] = []
    try:
        worker.wait_ready(url)
        with psycopg.connect(url, autocommit=True) as conn:
            for first in range(0, total, round_size):
                _fill(app, min(round_size, total - first), first=first)
                while conn.execute("select exists(select from pgq.jobs)").fetchone()[0]:  # type: ignore[index]
                    if worker.process.poll() is not None:
                        raise RuntimeError(worker.stop())
                    time.sleep(0.05)
                readings.append(rss_mb([worker.process.pid]))
                if len(readings) % 5 == 0:
                    progress(f"  ageing: {first + round_size:,} jobs through, worker RSS {readings[-1]:.0f} MB")
    finally:
        worker.stop()
        app.close()
    first_mb, last_mb = readings[0], readings[-1]
    note = f"RSS {first_mb:.0f} MB after {round_size:,} jobs, {last_mb:.0f} MB after {total:,}"
    return Result(note=note, extra={"rss_first_mb": first_mb, "rss_last_mb": last_mb})
