"""The no-op tasks the benchmark runs, importable by ``pgq worker`` processes
(``pgq.bench.tasks:app``, with PGQ_DATABASE_URL and PGQ_SCHEMA set)."""

from __future__ import annotations

import pgq

app = pgq.App(auto_migrate=False)


@app.task(name="bench_async")
async def bench_async(i: int = 0) -> None:
    return None


@app.task(name="bench_sync")
def bench_sync(i: int = 0) -> None:
    return None
