"""How jobs look in a terminal: tables (rich), a detail view, JSON, and progress on long commands.

Colour follows the terminal: none when stdout is a pipe or a file, or when
``NO_COLOR`` is set (https://no-color.org); ``FORCE_COLOR`` forces it. Piped
tables are never wrapped or cut to a terminal's width.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from pgq.display import clip, percent
from pgq.job import Job, LogLine, attempt_verb

if TYPE_CHECKING:
    from pgq.db.embedded_life import EmbeddedStatus

#: Colours of job and worker states.
STATE_STYLES = {
    "pending": "cyan",
    "running": "blue",
    "blocked": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
    "dead": "red",
    "stopped": "dim",
    "stopping": "yellow",
}


def colour_wanted(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


def render(renderable: RenderableType) -> str:
    """``renderable`` as text for stdout: coloured for a terminal, plain and unwrapped otherwise."""
    colour = colour_wanted()
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 10_000
    out = io.StringIO()
    console = Console(
        file=out,
        force_terminal=colour,
        no_color=not colour,
        color_system="standard" if colour else None,
        width=width,
        highlight=False,
        emoji=False,
    )
    console.print(renderable, soft_wrap=not sys.stdout.isatty(), crop=False)
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").split("\n"))


def state(value: str) -> Text:
    return Text(value, style=STATE_STYLES.get(value, ""))


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[Progress]:
    """A progress bar (or a spinner without ``total``) on stderr, shown only to a terminal and
    cleared when done: stdout keeps only the command's result."""
    shown = sys.stderr.isatty()
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn() if total is not None else TextColumn(""),
        TaskProgressColumn() if total is not None else TextColumn("{task.completed:,.0f}"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr, no_color=not colour_wanted(sys.stderr)),
        transient=True,
        disable=not shown,
    )
    with bar:
        bar.add_task(description, total=total)
        yield bar


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
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


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[str] = ()) -> str:
    """A table of ``rows`` (text or rich Text) under ``headers``, as text for stdout."""
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold", expand=False)
    for header in headers:
        grid.add_column(header, justify="right" if header in right else "left", overflow="fold")
    for row in rows:
        grid.add_row(*row)
    return render(grid)


def jobs_table(jobs: Sequence[Job]) -> str:
    headers = ("ID", "STATUS", "QUEUE", "TASK", "PRI", "ATTEMPTS", "RUN AT", "KEY", "ARGS")
    rows = [
        (
            str(job.id),
            state(job.status),
            job.queue,
            job.task,
            str(job.priority),
            f"{job.attempts}/{job.max_attempts}",
            when(job.run_at),
            job.key or "",
            _clip(json.dumps(clip(job.args, 8), ensure_ascii=False), 40),
        )
        for job in jobs
    ]
    return table(headers, rows, right=("ID", "PRI", "ATTEMPTS"))


def job_detail(job: Job, logs: Sequence[LogLine] = ()) -> str:
    lines = [
        f"job {job.id}  {job.status}",
        f"  task        {job.task}",
        f"  queue       {job.queue}   priority {job.priority}",
        f"  attempts    {job.attempts} of {job.max_attempts}",
        *([f"  crashes     {note}"] if (note := job.crash_note()) else []),
        *([f"  snoozes     {job.snoozes} (each waited without counting an attempt)"] if job.snoozes else []),
        f"  created     {when(job.created_at)}",
        f"  run at      {when(job.run_at)}",
    ]
    if job.started_at:
        lines.append(f"  started     {when(job.started_at)}")
    if job.finished_at:
        lines.append(f"  finished    {when(job.finished_at)}")
    if job.tags:
        lines.append(f"  tags        {' '.join(job.tags)}")
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
    lines.append("  args        " + json.dumps(clip(job.args), ensure_ascii=False, indent=2).replace("\n", "\n  "))
    if job.meta is not None:
        lines.append("  meta        " + json.dumps(clip(job.meta), ensure_ascii=False))
    if job.result is not None:
        lines.append("  result      " + json.dumps(clip(job.result), ensure_ascii=False))
    for error in job.errors if isinstance(job.errors, list) else [job.errors]:
        if not isinstance(error, dict):
            error = {"message": str(error)}
        lines.append(
            f"  attempt {error.get('attempt', '?')} {attempt_verb(error)} at {error.get('at', '?')}: "
            f"{error.get('type', 'Error')}: {error.get('message', '')}"
        )
        traceback = error.get("traceback")
        if traceback:
            lines.extend("      " + line for line in str(traceback).rstrip().splitlines())
    if logs:
        lines.append("  log (ctx.log)")
        for line in logs:
            text = line.message.replace("\n", "\n" + " " * 8)
            lines.append(f"    {line.attempt}  {line.at.strftime('%H:%M:%S.%f')[:-3]}  {line.level:<7} {text}")
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
            Text("yes", style="yellow") if q.paused else "no",
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
    return table(headers, rows, right=("WAITING", "DELAYED", "ACTIVE", "BLOCKED", "WORKERS", "OLDEST WAITING"))


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
    headers = ("ID", "NAME", "HOST", "PID", "STATUS", "QUEUES", "SLOTS", "STARTED", "HEARTBEAT", "UTIL", "RUNNING")
    rows = [
        (
            str(w.id)[:8],
            w.name,
            w.host,
            str(w.pid),
            state(w.status),
            _clip(",".join(w.queues), 30),
            f"{len(w.running)}/{w.concurrency}",
            when(w.started_at),
            duration(w.seconds_since_heartbeat) + " ago",
            percent(w.utilization_pct),
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
        "UTIL",
        "ERRORS",
        "DONE",
        "OLDEST",
        "SLO",
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
            _breached(f"{_ms(s.run_ms_p50)}/{_ms(s.run_ms_p95)}", s, "run_p95"),
            _breached(f"{_ms(s.wait_ms_p50)}/{_ms(s.wait_ms_p95)}", s, "wait_p95"),
            _breached(percent(s.utilization_pct), s, "utilization"),
            _breached(percent(s.error_rate_pct), s, "error_rate"),
            _breached(percent(s.completion_rate_pct), s, "completion_rate"),
            duration(s.oldest_waiting_seconds),
            _objectives(s),
        )
        for s in stats
    ]
    return table(headers, rows)


def _breached(text: str, stats: Any, objective: str) -> Text | str:
    """A figure in red when it breaks its service-level objective."""
    return Text(text, style="bold red") if objective in stats.slo_breaches else text


def _objectives(stats: Any) -> Text | str:
    """``ok``, or the objectives broken (in red); ``-`` when none is set."""
    if stats.slo_breaches:
        return Text("breached: " + ", ".join(stats.slo_breaches), style="bold red")
    return "ok" if stats.slo else "-"


def explain_reasons(text: str) -> list[str]:
    """The reasons of :meth:`App.explain`'s text (its ``- `` lines), without the first line."""
    return [line[2:] for line in text.splitlines()[1:] if line.startswith("- ")]


def embedded_text(status: EmbeddedStatus, *, uses_url: bool) -> str:
    """``pgq embedded status``: a few lines."""
    where = f"the embedded PostgreSQL in {status.pgdata}"
    if not status.initialized:
        lines = [f"{where}: not created yet (the first pgq command without PGQ_DATABASE_URL creates it)"]
    elif not status.running:
        lines = [f"{where}: not running (the next pgq command without PGQ_DATABASE_URL starts it)"]
    else:
        lines = [f"{where}: running (pid {status.pid}), {status.url}"]
        if status.holders:
            used = ", ".join(map(str, status.holders))
            lines.append(f"used by {used}: it stops when the last of them exits")
        else:
            lines.append("used by no live process: pgq embedded stop stops it")
    if status.gone:
        gone = ", ".join(map(str, status.gone))
        lines.append(f"listed by processes that died without leaving: {gone} (ignored; forgotten at the next start)")
    if uses_url:
        lines.append("PGQ_DATABASE_URL is set: pgq uses that server, not this one")
    return "\n".join(lines)


def replica_text(lag: float | None) -> str:
    """Where figures were read, with ``PGQ_READ_URL`` set (``pgq stats`` and the dashboard)."""
    if lag is None:
        return "read from PGQ_READ_URL, which is not a standby (no lag to show)"
    return f"read from the replica (PGQ_READ_URL), {lag:.1f} s behind the primary"
