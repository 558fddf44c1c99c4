"""Tasks for the dashboard's tests (a real `pgq worker` runs them)."""

from __future__ import annotations

import time
from typing import Any

import pgq

app = pgq.App()


@app.task(pass_context=True, max_attempts=1)
def crawl(ctx: pgq.JobContext, steps: int = 10, pause: float = 0.4) -> dict[str, int]:
    """Reports its progress step by step."""
    for step in range(1, steps + 1):
        time.sleep(pause)
        ctx.set_progress(step / steps, f"page {step} of {steps}")
    return {"pages": steps}


@app.task(pass_context=True, max_attempts=1)
def fails_first(ctx: pgq.JobContext, note: str = "") -> dict[str, Any]:
    """Fails its first attempt for good; a retry (attempt 2) succeeds."""
    if ctx.attempt == 1:
        raise pgq.PermanentError(f"first attempt fails on purpose ({note})")
    return {"attempt": ctx.attempt, "note": note}


@app.task(max_attempts=1)
def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs
