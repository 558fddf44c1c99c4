"""The app that ``pgq worker cmp.pgq_tasks:app`` runs in compare.py's pgq rows (PGQ_DATABASE_URL set
by the row). ``benchmarks/cmp/pgq_rows.py`` registers the same tasks on its own App to enqueue."""

from __future__ import annotations

import time

import pgq

app = pgq.App()


def register(target: pgq.App) -> None:
    @target.task(name="noop")
    async def noop(i: int = 0) -> None:
        return None

    @target.task(name="noop_tx", transactional=True)
    async def noop_tx(ctx: pgq.JobContext, i: int = 0) -> None:
        return None

    @target.task(name="ping")
    async def ping() -> float:
        # CLOCK_MONOTONIC is one clock for every process of the machine: the producer's
        # time.monotonic() after enqueue returned and this one compare directly.
        return time.monotonic()


register(app)
