"""What users would otherwise pick, on Redis: Celery, RQ and BullMQ, each on a redis-server of our
own with durable settings (``appendonly yes``, ``appendfsync everysec``: an acknowledged job
survives a server crash, less the last second; RDB snapshots off so that no fork lands in a
measurement). The Redis service on 6379 runs with persistence off, so it is never used here.

Each peer runs in its own processes, as its users run it. A drain's rate runs from the first job
taken off the broker's list to the last one acknowledged or completed, read from Redis every
2 ms; latency from the producer's call returning to the handler's start, on CLOCK_MONOTONIC (one
clock for every process of the machine).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cmp.common import LATENCY_WARM_UP, PEERS, Result, Skipped, free_port, python_env, stop_processes, tree_cpu
from cmp.pgq_rows import latency_result


def _redis() -> Any:
    try:
        import redis
    except ImportError:
        raise Skipped("the redis package is not installed: pip install -e '.[bench]'") from None
    return redis


#: Durable: an acknowledged job survives a crash of the server, less its last second of writes.
DURABLE = ("--appendonly", "yes", "--appendfsync", "everysec", "--save", "")


class RedisServer:
    """A throwaway ``redis-server`` with AOF everysec, in a temporary folder, on a free port."""

    def __enter__(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise Skipped("no redis-server on PATH (Debian: apt-get install redis-server)")
        self.folder = Path(tempfile.mkdtemp(prefix="pgqcmp-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._client: Any = None
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), *DURABLE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._pong():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.__exit__()
                raise Skipped("redis-server did not start")
            time.sleep(0.02)
        return self

    def _pong(self) -> bool:
        """PING without a client library: BullMQ's rows need none on the Python side."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _redis().Redis.from_url(self.url)
        return self._client

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        stop_processes([self.process], grace=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def _watch(
    workers: list[subprocess.Popen[Any]], started: Callable[[], bool], finished: Callable[[], bool], jobs: int
) -> Result:
    """Poll the broker until the first job is taken and then until all are done."""
    deadline = time.monotonic() + max(120.0, jobs / 100)

    def failed() -> str:
        if time.monotonic() > deadline:
            return "timed out"
        for proc in workers:
            if proc.poll() not in (None, 0):
                return f"a worker exited with {proc.returncode}"
        return ""

    while not started():
        if note := failed():
            return Result(note=note)
        time.sleep(0.002)
    begin, cpu = time.monotonic(), tree_cpu([p.pid for p in workers])
    while not finished():
        if note := failed():
            return Result(note=note)
        time.sleep(0.002)
    seconds = time.monotonic() - begin
    cpu = tree_cpu([p.pid for p in workers]) - cpu
    return Result(jobs / seconds, client_cpu_ms=cpu * 1000 / jobs)


def _peer_env(server: RedisServer, **extra: str) -> dict[str, str]:
    return python_env(BENCH_REDIS_URL=server.url, **extra)


# --------------------------------------------------------------------- Celery

#: Its best of what we tried for no-op tasks on 2 cores (benchmarks/README.md): prefork at 2, solo,
#: threads at 10, 50 and 100, prefetch multiplier 4, 16 and 64. The prefork pool spends its time
#: passing messages to its children; 50 threads with a prefetch of 16 each came out ahead, within
#: the machine's noise of solo.
CELERY_POOL = ("threads", 50)
CELERY_PREFETCH = 16


def _celery(server: RedisServer) -> Any:
    try:
        from celery import Celery
    except ImportError:
        raise Skipped("celery is not installed: pip install -e '.[bench]'") from None
    return Celery("producer", broker=server.url)


def _celery_worker(server: RedisServer, pool: str, concurrency: int, prefetch: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--pool", pool, "-c", str(concurrency),
        "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "WARNING",
    ]  # fmt: skip
    env = _peer_env(server, BENCH_CELERY_PREFETCH=str(prefetch))
    return subprocess.Popen(command, env=env, cwd=PEERS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def celery_drain(jobs: int, pool: str = CELERY_POOL[0], concurrency: int = CELERY_POOL[1]) -> Result:
    with RedisServer() as server:
        app = _celery(server)
        with app.producer_or_acquire() as producer:
            for i in range(jobs):
                app.send_task("noop", kwargs={"i": i}, producer=producer)
        r = server.client
        worker = _celery_worker(server, pool, concurrency, CELERY_PREFETCH)
        try:
            result = _watch(
                [worker],
                started=lambda: r.llen("celery") < jobs,
                finished=lambda: r.llen("celery") == 0 and r.hlen("unacked") == 0,
                jobs=jobs,
            )
        finally:
            stop_processes([worker])
    result.note = "; ".join(
        x
        for x in (
            f"acks_late, no result backend, {pool} pool of {concurrency}, prefetch multiplier {CELERY_PREFETCH}",
            result.note,
        )
        if x
    )
    return result


def celery_latency(count: int = 200) -> Result:
    with RedisServer() as server:
        app = _celery(server)
        worker = _celery_worker(server, *CELERY_POOL, CELERY_PREFETCH)
        try:
            committed = _ping_loop(server, count, lambda: str(app.send_task("ping").id))
        finally:
            stop_processes([worker])
            started = _starts(server)
    return latency_result(started, committed, f"acks_late, {CELERY_POOL[0]} pool of {CELERY_POOL[1]}")


def _ping_loop(server: RedisServer, count: int, send: Callable[[], str]) -> dict[str, float]:
    """``LATENCY_WARM_UP`` untimed jobs until the worker ran them, then ``count`` jobs 20 ms apart."""
    for _ in range(LATENCY_WARM_UP - 1):
        send()
        time.sleep(0.02)
    warm = send()
    deadline = time.monotonic() + 60
    while server.client.hlen("starts") < LATENCY_WARM_UP or not server.client.hexists("starts", warm):
        if time.monotonic() > deadline:
            raise RuntimeError("the worker ran no job within 60 s")
        time.sleep(0.05)
    server.client.delete("starts")
    time.sleep(0.5)
    committed: dict[str, float] = {}
    for _ in range(count):
        job_id = send()
        committed[job_id] = time.monotonic()
        time.sleep(0.02)
    deadline = time.monotonic() + 30
    while server.client.hlen("starts") < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return committed


def _starts(server: RedisServer) -> dict[str, float]:
    return {key.decode(): float(value) for key, value in server.client.hgetall("starts").items()}


# ------------------------------------------------------------------------- RQ

#: Its best for no-op jobs: SimpleWorker runs jobs in the worker process (the default Worker forks
#: a child per job, a few ms each), one worker process per core.
RQ_WORKERS = 2


def _rq_worker(server: RedisServer, burst: bool) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "rq.cli", "worker", "-w", "rq.worker.SimpleWorker", "-u", server.url,
        "--logging_level", "WARNING", *(["--burst"] if burst else []), "default",
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=_peer_env(server), cwd=PEERS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _rq_queue(server: RedisServer) -> Any:
    try:
        from rq import Queue
    except ImportError:
        raise Skipped("rq is not installed: pip install -e '.[bench]'") from None
    return Queue("default", connection=server.client)


def rq_drain(jobs: int, workers: int = RQ_WORKERS) -> Result:
    with RedisServer() as server:
        queue = _rq_queue(server)
        from rq import Queue
        from rq.registry import FinishedJobRegistry

        for offset in range(0, jobs, 1000):
            queue.enqueue_many(
                [Queue.prepare_data("rq_tasks.noop", kwargs={"i": i}) for i in range(offset, min(offset + 1000, jobs))]
            )
        finished = FinishedJobRegistry(queue=queue)
        processes = [_rq_worker(server, burst=True) for _ in range(workers)]
        try:
            result = _watch(
                processes, started=lambda: queue.count < jobs, finished=lambda: finished.count >= jobs, jobs=jobs
            )
        finally:
            stop_processes(processes)
    note = f"{workers} SimpleWorker processes, results kept 500 s (its default)"
    result.note = "; ".join(x for x in (note, result.note) if x)
    return result


def rq_latency(count: int = 200) -> Result:
    with RedisServer() as server:
        queue = _rq_queue(server)
        worker = _rq_worker(server, burst=False)
        try:
            committed = _ping_loop(server, count, lambda: str(queue.enqueue("rq_tasks.ping").id))
        finally:
            stop_processes([worker])
            started = _starts(server)
    return latency_result(started, committed, "one SimpleWorker")


# --------------------------------------------------------------------- BullMQ

BULLMQ = PEERS / "bullmq"
#: Its best of 10, 50, 100 and 200 for no-op jobs in one Node process.
BULLMQ_CONCURRENCY = 100


def _node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise Skipped("no node/npm on PATH: BullMQ needs Node 18 or newer")
    if not (BULLMQ / "node_modules" / "bullmq").is_dir():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=BULLMQ, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise Skipped(f"npm ci in {BULLMQ} failed: {done.stderr.strip()[-300:]}")
    return node


def _bullmq(server: RedisServer, *args: str) -> dict[str, Any]:
    node = _node()
    done = subprocess.run(
        [node, "bench.mjs", *args, "--port", str(server.port)], cwd=BULLMQ, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.mjs failed: {done.stderr.strip()[-500:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def bullmq_drain(jobs: int, concurrency: int = BULLMQ_CONCURRENCY) -> Result:
    _node()
    with RedisServer() as server:
        out = _bullmq(server, "drain", "--jobs", str(jobs), "--concurrency", str(concurrency))
    note = f"one Worker at concurrency {concurrency}, completed jobs kept (its default)"
    if out["completed"] != jobs:
        note += f"; only {out['completed']} of {jobs} completed"
    return Result(out["jobs_per_s"], note=note)


def bullmq_latency(count: int = 200) -> Result:
    _node()
    with RedisServer() as server:
        out = _bullmq(
            server, "latency", "--count", str(count), "--interval-ms", "20", "--warm-up", str(LATENCY_WARM_UP)
        )
    lags = sorted(float(x) for x in out["lags_ms"])
    note = "one Worker at concurrency 10, producer in the same Node process"
    if len(lags) < count:
        note += f"; {count - len(lags)} jobs not started"
    return Result(lags_ms=lags, note=note)
