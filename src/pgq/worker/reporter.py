"""What the worker says about its jobs: hooks (``app.on``) and log lines.

Outcome events fire after the database accepted the outcome, so a hook never
sees a completion that a crash could still undo; ``job_started`` fires at the
claim. A completion logs at DEBUG: at tens of thousands of jobs a second, a
line per job would cost more than the jobs. Failures and retries log at
WARNING and above, cancellations and shutdown returns at INFO, and every
``SUMMARY_INTERVAL`` seconds a busy worker logs one INFO line of counts.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from pgq.events import Event
from pgq.job import Job
from pgq.telemetry import Telemetry
from pgq.worker.outcome import Outcome

log = logging.getLogger("pgq.worker")

#: Seconds between the INFO lines that count a busy worker's outcomes.
SUMMARY_INTERVAL = 60.0


class Reporter:
    def __init__(
        self, hooks: dict[str, list[Callable[[Event], Any]]], name: str, telemetry: Telemetry | None = None
    ) -> None:
        self.hooks = hooks
        #: OpenTelemetry's job metrics (pgq.telemetry), counted here: after the write.
        self.telemetry = telemetry
        self.name = name
        self._tasks: set[asyncio.Future[None]] = set()
        self._counts: Counter[str] = Counter()
        self._since = time.monotonic()

    def started(self, job: Job) -> None:
        if self.hooks.get("job_started"):
            self._emit(Event("job_started", job))

    def written(self, outcomes: Iterable[Outcome], accepted: set[int]) -> None:
        """Report outcomes once their write returned: those it accepted, and the refused."""
        hooks = self.hooks
        debug = log.isEnabledFor(logging.DEBUG)
        counts = self._counts
        for outcome in outcomes:
            job = outcome.job
            if job.id not in accepted:
                log.warning(
                    "job %s: outcome %s refused, this worker no longer owns attempt %d (the sweeper gave it away)",
                    job.id,
                    outcome.kind,
                    job.attempts,
                    extra={"event": "finish_refused", "job_id": job.id},
                )
                continue
            counts[outcome.kind] += 1
            if self.telemetry is not None and self.telemetry.metering():
                self.telemetry.written(outcome)
            if hooks and hooks.get(outcome.event):
                self._emit(outcome.as_event())
            if outcome.kind != "completed" or debug:
                self._log(outcome)
        if time.monotonic() - self._since >= SUMMARY_INTERVAL:
            self.summary()

    def summary(self) -> None:
        """One INFO line of what happened since the last one (nothing when idle)."""
        counts, self._counts = self._counts, Counter()
        seconds, self._since = time.monotonic() - self._since, time.monotonic()
        total = sum(counts.values())
        if not total:
            return
        detail = ", ".join(f"{counts[kind]} {word}" for kind, word in _WORDS if counts[kind])
        log.info(
            "worker %s: %d jobs in the last %.0f s (%s)",
            self.name,
            total,
            seconds,
            detail,
            extra={"event": "worker_summary", **{f"jobs_{word}": counts[kind] for kind, word in _WORDS}},
        )

    def _log(self, outcome: Outcome) -> None:
        job = outcome.job
        ms = outcome.duration * 1000
        fields = {
            "event": outcome.event,
            "job_id": job.id,
            "task": job.task,
            "queue": job.queue,
            "attempt": job.attempts,
            "max_attempts": job.max_attempts,
            "duration_ms": round(ms, 3),
        }
        error = outcome.error or {}
        if outcome.kind == "completed":
            log.debug("job %s %s completed in %.1f ms", job.id, job.task, ms, extra=fields)
        elif outcome.kind == "retry":
            log.warning(
                "job %s %s failed attempt %d/%d, retrying in %.1f s: %s: %s",
                job.id,
                job.task,
                job.attempts,
                job.max_attempts,
                outcome.delay or 0,
                error.get("type"),
                error.get("message"),
                extra={**fields, "retry_in": outcome.delay},
            )
        elif outcome.kind == "failed":
            log.error(
                "job %s %s failed for good after attempt %d/%d: %s: %s",
                job.id,
                job.task,
                job.attempts,
                job.max_attempts,
                error.get("type"),
                error.get("message"),
                extra=fields,
            )
        elif outcome.kind == "cancelled":
            log.info("job %s %s cancelled", job.id, job.task, extra=fields)
        elif outcome.kind == "snooze":
            log.info(
                "job %s %s snoozed for %.1f s (snooze %d; the attempt is not counted)",
                job.id,
                job.task,
                outcome.delay or 0,
                job.snoozes + 1,
                extra={**fields, "retry_in": outcome.delay},
            )
        else:
            log.info("job %s %s returned to the queue (shutdown)", job.id, job.task, extra=fields)

    def _emit(self, event: Event) -> None:
        for hook in self.hooks.get(event.name, ()):
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    hook_task = asyncio.ensure_future(_guarded(result, event))
                    self._tasks.add(hook_task)  # a task nobody references may be collected mid-run
                    hook_task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("hook %r for %s raised; ignored", hook, event.name)


_WORDS = (
    ("completed", "completed"),
    ("retry", "retried"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
    ("return", "returned"),
    ("snooze", "snoozed"),
)


async def _guarded(awaitable: Any, event: Event) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("async hook for %s raised; ignored", event.name)
