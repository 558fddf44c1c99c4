"""What the dashboard and its API read, and how a job becomes JSON (redacted)."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgq.db.queries import query
from pgq.job import Job
from pgq.redaction import Redactor

if TYPE_CHECKING:
    from pgq.app import App
    from pgq.operations import QueueStats

#: The states a queue's counts are shown in, live ones first (BullMQ's words where they exist).
LIVE_STATES = ("pending", "delayed", "running", "blocked")
FINISHED_STATES = ("completed", "failed", "cancelled")
STATES = LIVE_STATES + FINISHED_STATES
ID_DIGITS = re.compile(r"[0-9]{1,18}")


def plain(value: Any) -> Any:
    """JSON-ready: datetimes in ISO 8601, durations in seconds, uuids as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def job_json(job: Job, redact: Redactor) -> dict[str, Any]:
    data: dict[str, Any] = plain(job)
    data["args"] = redact(data["args"])
    data["result"] = redact(data["result"])
    return data


def display_state(job: Job, now: datetime | None = None) -> str:
    """``delayed`` for a pending job whose run time is ahead (by the database clock when given)."""
    if job.status == "pending" and now is not None and job.run_at > now:
        return "delayed"
    return job.status


def counts(app: App) -> dict[str, dict[str, int]]:
    """Jobs per queue and state: live ones now, finished ones over the last 24 hours (``App.stats``)."""
    row = app._run(query("dashboard_live", app.schema), {"ids": []})[0]
    return merge_counts(row["live"], finished_counts(app.stats()))


def finished_counts(stats: Iterable[QueueStats]) -> list[dict[str, Any]]:
    """``App.stats()`` rows as (queue, status, n) entries for :func:`merge_counts`."""
    return [{"queue": s.queue, "status": state, "n": getattr(s, state)} for s in stats for state in FINISHED_STATES]


def failed_by_queue(app: App, names: Iterable[str]) -> dict[str, int]:
    """Failed jobs of the retained history per queue: what "retry all failed" takes."""
    rows = app._run(query("dashboard_failed_by_queue", app.schema), {"names": list(names)})
    return {row["queue"]: int(row["failed"]) for row in rows}


def merge_counts(live: list[dict[str, Any]], finished: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for entry in live:
        table.setdefault(entry["queue"], dict.fromkeys(STATES, 0)).update(
            {state: int(entry[state]) for state in LIVE_STATES}
        )
    for entry in finished:
        table.setdefault(entry["queue"], dict.fromkeys(STATES, 0))[entry["status"]] = int(entry["n"])
    return dict(sorted(table.items()))


def totals(table: dict[str, dict[str, int]]) -> dict[str, int]:
    return {state: sum(row[state] for row in table.values()) for state in STATES}


def paused_queues(app: App) -> list[str]:
    return list(app._run(query("dashboard_live", app.schema), {"ids": []})[0]["paused"])


def series(app: App, minutes: int = 60) -> tuple[datetime, dict[str, list[dict[str, Any]]]]:
    """Per queue, the metrics rows of the last ``minutes`` in one-minute buckets, and the database's now."""
    now = app._run(query("dashboard_now", app.schema), {})[0]["now"]
    result: dict[str, list[dict[str, Any]]] = {}
    for row in app._run(query("dashboard_series", app.schema), {"minutes": minutes}):
        result.setdefault(row["queue"], []).append(row)
    return now, result


def db_now(app: App) -> datetime:
    value: datetime = app._run(query("dashboard_now", app.schema), {})[0]["now"]
    return value


def explain_reasons(text: str) -> list[str]:
    """The reasons of :meth:`App.explain`'s text (its ``- `` lines), without the first line."""
    return [line[2:] for line in text.splitlines()[1:] if line.startswith("- ")]


def job_id(text: str) -> int | None:
    """The job id that ``text`` spells in ASCII digits (what a bigint holds), else None.
    ``str.isdigit`` also accepts "²" and ``int`` accepts "1_0": neither is an id."""
    text = text.strip()
    return int(text) if ID_DIGITS.fullmatch(text) else None
