"""What the dashboard and its API read, and how a job becomes JSON (redacted)."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgq.db import store
from pgq.job import Job
from pgq.output import explain_reasons as explain_reasons
from pgq.redaction import Redactor, redact_job

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
    """The job as the API answers it: redacted and bounded (:func:`pgq.redaction.redact_job`)."""
    data: dict[str, Any] = plain(redact_job(job, redact))
    if not isinstance(data["errors"], list):  # rows written by SQL may hold anything
        data["errors"] = [data["errors"]]
    return data


def display_state(job: Job, now: datetime | None = None) -> str:
    """``delayed`` for a pending job whose run time is ahead (by the database clock when given)."""
    if job.status == "pending" and now is not None and job.run_at > now:
        return "delayed"
    return job.status


def counts(app: App) -> dict[str, dict[str, int]]:
    """Jobs per queue and state: live ones now, finished ones over the last 24 hours (``App.stats``)."""
    row = store.dashboard_live.run(app.db, {"ids": []})[0]
    return merge_counts(row["live"], finished_counts(app.stats()))


def finished_counts(stats: Iterable[QueueStats]) -> list[dict[str, Any]]:
    """``App.stats()`` rows as (queue, status, n) entries for :func:`merge_counts`."""
    return [{"queue": s.queue, "status": state, "n": getattr(s, state)} for s in stats for state in FINISHED_STATES]


def failed_by_queue(app: App, names: Iterable[str]) -> dict[str, int]:
    """Failed jobs of the retained history per queue: what "retry all failed" takes."""
    rows = store.dashboard_failed_by_queue.run(app.db, {"names": list(names)})
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
    return list(store.dashboard_live.run(app.db, {"ids": []})[0]["paused"])


#: The charts' ranges: (length, step) in seconds; 60 to 96 points each.
RANGES = {"1h": (3600, 60), "6h": (6 * 3600, 300), "24h": (86400, 900), "7d": (7 * 86400, 7200)}


def series(app: App, range_name: str = "1h") -> dict[str, Any]:
    """The sweeper's metrics rows over ``range_name`` (:data:`RANGES`), per queue, in equal steps
    ending with the database's now: the data of :class:`pgq.web.models.Series`."""
    length, step = RANGES[range_name]
    now: datetime = store.dashboard_now.run(app.db, {})[0]["now"]
    epoch = now.timestamp()
    # Steps start on multiples of the step, so a chart's bars stay put between reloads.
    last = epoch - epoch % step
    count = length // step
    first = last - (count - 1) * step
    start = datetime.fromtimestamp(first, now.tzinfo)
    times = [first + i * step for i in range(count)]
    rows = store.dashboard_series.run(app.db, {"start": start, "step": step})
    queues: dict[str, dict[str, list[Any]]] = {}
    for row in rows:
        index = int((row["bucket"].timestamp() - first) // step)
        if not 0 <= index < count:
            continue
        entry = queues.setdefault(
            row["queue"],
            {
                "completed": [0.0] * count,
                "failed": [0.0] * count,
                "retried": [0.0] * count,
                "wait_ms": [None] * count,
                "run_ms": [None] * count,
            },
        )
        for name in ("completed", "failed", "retried"):
            entry[name][index] = float(row[name] or 0)
        for name in ("wait_ms", "run_ms"):
            entry[name][index] = None if row[name] is None else float(row[name])
    recorded_until = store.dashboard_metrics_until.run(app.db, {})[0]["until"]
    return {
        "range": range_name,
        "step_seconds": step,
        "start": start,
        "recorded_until": recorded_until,
        "metrics_interval": app.settings.metrics_interval,
        "times": times,
        "queues": dict(sorted(queues.items())),
    }


def last_hour(app: App) -> dict[str, dict[str, Any]]:
    """Per queue, what finished over the last hour and the latest wait and run times (the charts'
    figures in words, shown without script)."""
    result = {}
    for queue, entry in series(app, "1h")["queues"].items():
        waits = [v for v in entry["wait_ms"] if v is not None]
        runs = [v for v in entry["run_ms"] if v is not None]
        result[queue] = {
            "completed": sum(entry["completed"]),
            "failed": sum(entry["failed"]),
            "wait_ms": waits[-1] if waits else None,
            "run_ms": runs[-1] if runs else None,
        }
    return result


#: Jobs of a workflow drawn on a job's page at most, and the ids after a job searched for its children.
GRAPH_NODES = 60
CHILD_WINDOW = 10_000


@dataclass
class Node:
    id: int
    task: str
    state: str
    parents: list[int]
    x: int = 0
    y: int = 0


@dataclass
class Graph:
    nodes: list[Node]
    edges: list[dict[str, int]]
    width: int
    height: int
    truncated: bool
    node_width: int = 170
    node_height: int = 44


def _state(row: dict[str, Any]) -> str:
    return "delayed" if row["status"] == "pending" and not row["ready"] else str(row["status"])


def family(app: App, job: Job) -> tuple[list[dict[str, Any]], Graph | None]:
    """The job's children (id, task, state) and the graph of its workflow (None for a job
    without parents or children): parents and children followed both ways, breadth first,
    up to :data:`GRAPH_NODES` jobs."""
    found: dict[int, dict[str, Any]] = {}
    frontier = [job.id]
    truncated = False
    while frontier and len(found) < GRAPH_NODES:
        ids = sorted(set(frontier) | {p for i in frontier for p in (found.get(i, {}).get("depends_on") or [])})
        rows = store.dashboard_family.run(
            app.db,
            {"ids": ids, "low": min(ids), "high": max(ids), "window": CHILD_WINDOW, "limit": GRAPH_NODES * 2},
        )
        new = []
        for row in rows:
            if row["id"] not in found:
                found[row["id"]] = row
                new.append(row["id"])
        for row in rows:  # parents named by what was just found
            new.extend(p for p in row["depends_on"] or () if p not in found)
        frontier = [i for i in dict.fromkeys(new) if i not in ids]
        if len(found) >= GRAPH_NODES:
            truncated = bool(frontier)
    children = [
        {"id": r["id"], "task": r["task"], "state": _state(r)}
        for r in sorted(found.values(), key=lambda r: r["id"])
        if job.id in (r["depends_on"] or ())
    ]
    if len(found) <= 1:
        return children, None
    return children, layout(list(found.values())[:GRAPH_NODES], truncated)


def layout(rows: list[dict[str, Any]], truncated: bool) -> Graph:
    """Columns by depth (a job sits right of every parent drawn), rows in id order."""
    nodes = {r["id"]: Node(r["id"], r["task"], _state(r), [p for p in r["depends_on"] or ()]) for r in rows}
    depth: dict[int, int] = {}
    for node_id in sorted(nodes):  # parents have smaller ids than their children
        parents = [p for p in nodes[node_id].parents if p in nodes]
        depth[node_id] = 1 + max((depth.get(p, 0) for p in parents), default=-1)
    columns: dict[int, list[Node]] = {}
    for node_id in sorted(nodes):
        columns.setdefault(depth[node_id], []).append(nodes[node_id])
    graph = Graph([], [], 0, 0, truncated)
    gap_x, gap_y, pad = 50, 14, 8
    for column, members in sorted(columns.items()):
        for row, node in enumerate(members):
            node.x = pad + column * (graph.node_width + gap_x)
            node.y = pad + row * (graph.node_height + gap_y)
            graph.nodes.append(node)
    for node in graph.nodes:
        for parent_id in node.parents:
            parent = nodes.get(parent_id)
            if parent is not None:
                graph.edges.append(
                    {
                        "x1": parent.x + graph.node_width,
                        "y1": parent.y + graph.node_height // 2,
                        "x2": node.x,
                        "y2": node.y + graph.node_height // 2,
                    }
                )
    graph.width = max(n.x for n in graph.nodes) + graph.node_width + pad
    graph.height = max(n.y for n in graph.nodes) + graph.node_height + pad
    return graph


def worker_names(app: App, ids: Iterable[Any]) -> dict[str, str]:
    """Names of the workers with these ids (rows of stopped workers go after a day)."""
    wanted = sorted({str(i) for i in ids if i})
    if not wanted:
        return {}
    rows = store.dashboard_worker_names.run(app.db, {"ids": wanted})
    return {str(row["id"]): str(row["name"]) for row in rows}


def db_now(app: App) -> datetime:
    value: datetime = store.dashboard_now.run(app.db, {})[0]["now"]
    return value


def job_id(text: str) -> int | None:
    """The job id that ``text`` spells in ASCII digits (what a bigint holds), else None.
    ``str.isdigit`` also accepts "²" and ``int`` accepts "1_0": neither is an id."""
    text = text.strip()
    return int(text) if ID_DIGITS.fullmatch(text) else None
