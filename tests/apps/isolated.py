"""Tasks for tests of suspects run in a child process (pgq.worker.isolation).

Each handler says which process ran it, so a test tells a child's run from the
worker's by pids, never by timing.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pgq

app = pgq.App()


@app.task(max_attempts=3)
def whoami() -> dict[str, int]:
    return {"pid": os.getpid(), "ppid": os.getppid()}


@app.task(max_attempts=3)
async def whoami_async() -> dict[str, int]:
    await asyncio.sleep(0)
    return {"pid": os.getpid(), "ppid": os.getppid()}


@app.task(pass_context=True, max_attempts=3)
def context(ctx: pgq.JobContext) -> dict[str, Any]:
    print("a handler's print goes to the worker's output, not into its answer")
    return {"attempt": ctx.attempt, "job_id": ctx.job.id, "pid": os.getpid()}


@app.task(max_attempts=3)
def fails(kind: str) -> None:
    if kind == "permanent":
        raise pgq.PermanentError("no point in trying again")
    if kind == "retry":
        raise pgq.Retry(delay=7, reason="asked to come back")
    if kind == "snooze":
        raise pgq.Snooze(7, reason="waiting for the upstream")
    raise ValueError(f"failed in process {os.getpid()}")


@app.task(max_attempts=3)
def dies(code: int) -> None:
    os._exit(code)


# 3 s: a child process starts (imports this app) within it even on a loaded 2-core machine,
# so the test can find the pid the handler wrote before the timeout killed it.
@app.task(max_attempts=3, timeout=3)
def hangs(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)
