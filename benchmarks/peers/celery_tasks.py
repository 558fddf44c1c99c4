"""Celery's side of benchmarks/compare.py: ``celery -A celery_tasks worker`` with the broker in
BENCH_REDIS_URL (a redis-server of compare.py's own, appendonly everysec).

Durable settings: ``task_acks_late`` (a message is acknowledged after its task ran, so a worker
that dies mid-task leaves it to be redelivered), and no result backend (pgq keeps a history row,
but a result store is an extra write Celery users turn on per task; a no-op needs none).
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=URL)
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "4")),
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
starts = redis.Redis.from_url(URL)


@app.task(name="noop")
def noop(i: int = 0) -> None:
    return None


@app.task(name="ping", bind=True)
def ping(self) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()  # one clock for every process of the machine
    starts.hset("starts", self.request.id, started)
