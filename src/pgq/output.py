"""How jobs look in a terminal: tables, a detail view, and JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pgq.job import Job


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def to_json(value: Any) -> str:
    return json.dumps(_plain(value), indent=2, ensure_ascii=False)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def jobs_table(jobs: Sequence[Job]) -> str:
    headers = ("ID", "STATUS", "QUEUE", "TASK", "PRI", "ATTEMPTS", "RUN AT", "KEY", "ARGS")
    rows = [
        (
            str(job.id),
            job.status,
            job.queue,
            job.task,
            str(job.priority),
            f"{job.attempts}/{job.max_attempts}",
            when(job.run_at),
            job.key or "",
            _clip(json.dumps(job.args, ensure_ascii=False), 40),
        )
        for job in jobs
    ]
    return table(headers, rows)


def job_detail(job: Job) -> str:
    lines = [
        f"job {job.id}  {job.status}",
        f"  task        {job.task}",
        f"  queue       {job.queue}   priority {job.priority}",
        f"  attempts    {job.attempts} of {job.max_attempts}",
        f"  created     {when(job.created_at)}",
        f"  run at      {when(job.run_at)}",
    ]
    if job.started_at:
        lines.append(f"  started     {when(job.started_at)}")
    if job.finished_at:
        lines.append(f"  finished    {when(job.finished_at)}")
    if job.key:
        lines.append(f"  key         {job.key}")
    if job.group_key:
        lines.append(f"  group       {job.group_key}")
    if job.depends_on:
        label = "waits for" if job.status == "blocked" else "parents  "
        policy = "  (runs even if one fails)" if job.on_parent_failure == "run" else ""
        lines.append(f"  {label}   {', '.join(str(p) for p in job.depends_on)}{policy}")
    if job.worker_id:
        lines.append(f"  worker      {job.worker_id}")
    if job.progress is not None:
        message = f"  {job.progress_message}" if job.progress_message else ""
        lines.append(f"  progress    {job.progress:.0%}{message}")
    lines.append("  args        " + json.dumps(job.args, ensure_ascii=False, indent=2).replace("\n", "\n  "))
    if job.result is not None:
        lines.append("  result      " + json.dumps(job.result, ensure_ascii=False))
    for error in job.errors:
        lines.append(
            f"  attempt {error.get('attempt', '?')} failed at {error.get('at', '?')}: "
            f"{error.get('type', 'Error')}: {error.get('message', '')}"
        )
        traceback = error.get("traceback")
        if traceback:
            lines.extend("      " + line for line in str(traceback).rstrip().splitlines())
    return "\n".join(lines)


def schedules_table(schedules: Sequence[Any]) -> str:
    headers = ("NAME", "CRON", "TIMEZONE", "TASK", "QUEUE", "ENABLED", "NEXT RUN", "LAST RUN", "SOURCE")
    rows = [
        (
            s.name,
            s.cron,
            s.timezone,
            s.task,
            s.queue or "",
            "yes" if s.enabled else "no",
            when(s.next_run_at),
            when(s.last_run_at),
            s.source,
        )
        for s in schedules
    ]
    return table(headers, rows)


def duration(seconds: float | None) -> str:
    """A short human duration: 850ms, 4.2s, 3m07s, 2h05m, 3d04h; "-" for None."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _ms(value: float | None) -> str:
    return duration(None if value is None else value / 1000)


def queues_table(queues: Sequence[Any]) -> str:
    headers = ("QUEUE", "PAUSED", "WAITING", "DELAYED", "ACTIVE", "BLOCKED", "WORKERS", "OLDEST WAITING", "LIMITS")
    rows = [
        (
            q.name,
            "yes" if q.paused else "no",
            str(q.waiting),
            str(q.delayed),
            str(q.active),
            str(q.blocked),
            str(q.workers),
            duration(q.oldest_waiting_seconds),
            limits_text(q),
        )
        for q in queues
    ]
    return table(headers, rows)


def limits_text(q: Any) -> str:
    """A queue's limits in a few words (``pgq queues list``), or ``-`` without any."""
    parts = []
    for label, value in (
        ("concurrency", getattr(q, "concurrency", None)),
        ("rate", getattr(q, "rate", None)),
        ("group concurrency", getattr(q, "group_concurrency", None)),
        ("group rate", getattr(q, "group_rate", None)),
    ):
        if value is not None:
            parts.append(f"{label} {value}")
    group_cap = getattr(q, "group_max_pending", None)
    if getattr(q, "max_pending", None) is not None:
        parts.append(f"max pending {q.max_pending}")
    if group_cap is not None:
        parts.append(f"group max pending {group_cap}")
    if getattr(q, "max_pending", None) is not None or group_cap is not None:
        parts[-1] += f" ({q.on_full}, {q.rejected} rejected)"
    return ", ".join(parts) or "-"


def workers_table(workers: Sequence[Any]) -> str:
    headers = ("ID", "NAME", "HOST", "PID", "STATUS", "QUEUES", "SLOTS", "STARTED", "HEARTBEAT", "RUNNING")
    rows = [
        (
            str(w.id)[:8],
            w.name,
            w.host,
            str(w.pid),
            w.status,
            _clip(",".join(w.queues), 30),
            f"{len(w.running)}/{w.concurrency}",
            when(w.started_at),
            duration(w.seconds_since_heartbeat) + " ago",
            _clip(" ".join(str(i) for i in w.running), 40),
        )
        for w in workers
    ]
    return table(headers, rows)


def stats_table(stats: Sequence[Any]) -> str:
    headers = (
        "QUEUE",
        "PAUSED",
        "WAITING",
        "DELAYED",
        "ACTIVE",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "REJECTED WIN/ALL",
        "WORKERS",
        "DONE/MIN",
        "FAIL/MIN",
        "RUN P50/P95",
        "WAIT P50/P95",
        "OLDEST",
    )
    rows = [
        (
            s.queue,
            "yes" if s.paused else "no",
            str(s.waiting),
            str(s.delayed),
            str(s.active),
            str(s.completed),
            str(s.failed),
            str(s.cancelled),
            f"{'-' if getattr(s, 'rejected_in_window', None) is None else s.rejected_in_window}/{s.rejected}",
            str(s.workers),
            f"{s.completed_per_minute:.1f}",
            f"{s.failed_per_minute:.1f}",
            f"{_ms(s.run_ms_p50)}/{_ms(s.run_ms_p95)}",
            f"{_ms(s.wait_ms_p50)}/{_ms(s.wait_ms_p95)}",
            duration(s.oldest_waiting_seconds),
        )
        for s in stats
    ]
    return table(headers, rows)
