"""``/metrics`` in Prometheus' text format, read from pgq's tables at each scrape.

| metric | type | labels | from |
| --- | --- | --- | --- |
| ``pgq_jobs`` | gauge | queue, state | live jobs now, finished ones over 24 hours (``App.stats``) |
| ``pgq_jobs_completed_24h`` | gauge | queue | sum of the sweeper's ``metrics`` rows of the last 24 hours |
| ``pgq_jobs_failed_24h`` | gauge | queue | same |
| ``pgq_jobs_retried_24h`` | gauge | queue | same |
| ``pgq_jobs_cancelled_24h`` | gauge | queue | same |
| ``pgq_jobs_rejected_24h`` | gauge | queue | same: enqueues refused and pending jobs dropped (max_pending) |
| ``pgq_jobs_rejected_total`` | counter | queue | ``queues.rejected``, the same since the queue's row was made |

Those four are gauges over a window, not counters: a sum over rows that retention
deletes goes down, which Prometheus would read as a counter reset. The workers'
own counters (``pgq worker --metrics-port``) are real counters.
| ``pgq_job_run_seconds`` | gauge | queue, stat (mean, p95) | the queue's latest ``metrics`` row |
| ``pgq_job_wait_seconds`` | gauge | queue, stat (mean, p95) | same |
| ``pgq_workers`` | gauge | | live workers |
| ``pgq_worker_slots`` | gauge | | their concurrency, summed |
| ``pgq_worker_slots_in_use`` | gauge | | jobs they run now |
| ``pgq_queue_utilization_ratio`` | gauge | queue | busy over serving slots, last minute (``App.stats``) |
| ``pgq_queue_error_rate_ratio`` | gauge | queue | failed / (completed + failed), last 24 hours |
| ``pgq_queue_completion_rate_ratio`` | gauge | queue | completed / (completed + failed + cancelled), same |
| ``pgq_queue_slo_breached`` | gauge | queue, objective | 1 while broken, 0 while held (see :mod:`pgq.slo`) |
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pgq.db import store
from pgq.slo import OBJECTIVES
from pgq.web import data

if TYPE_CHECKING:
    from pgq.app import App


class PgqCollector:
    def __init__(self, app: App) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        return []  # nothing to read at registration

    def collect(self) -> Iterator[Metric]:
        app = self.app
        table = data.counts(app)
        jobs = GaugeMetricFamily(
            "pgq_jobs", "Jobs by queue and state (finished states: the last 24 hours)", labels=["queue", "state"]
        )
        for queue, states in table.items():
            for state, n in states.items():
                jobs.add_metric([queue, state], n)
        yield jobs

        totals = store.dashboard_metric_totals.run(app.db, {})
        for name in ("completed", "failed", "retried", "cancelled", "rejected"):
            window = GaugeMetricFamily(
                f"pgq_jobs_{name}_24h",
                f"Jobs {name} over the last 24 hours (the sweeper's metrics rows)",
                labels=["queue"],
            )
            for row in totals:
                window.add_metric([row["queue"]], float(row[name] or 0))
            yield window
        rejected = CounterMetricFamily(
            "pgq_jobs_rejected",
            "Enqueues refused and pending jobs dropped by max_pending or group_max_pending (queues.rejected)",
            labels=["queue"],
        )
        for row in store.dashboard_rejected_totals.run(app.db, {}):
            rejected.add_metric([row["queue"]], float(row["rejected"]))
        yield rejected
        for kind in ("run", "wait"):
            gauge = GaugeMetricFamily(
                f"pgq_job_{kind}_seconds", f"Job {kind} time in the latest metrics interval", labels=["queue", "stat"]
            )
            for row in totals:
                for stat in ("mean", "p95"):
                    value = row[f"{kind}_ms_{stat}"]
                    if value is not None:
                        gauge.add_metric([row["queue"], stat], float(value) / 1000)
            yield gauge

        slots = store.dashboard_worker_slots.run(app.db, {})[0]
        yield GaugeMetricFamily("pgq_workers", "Live workers", value=float(slots["workers"]))
        yield GaugeMetricFamily("pgq_worker_slots", "Job slots of the live workers", value=float(slots["slots"]))
        yield GaugeMetricFamily("pgq_worker_slots_in_use", "Jobs the live workers run now", value=float(slots["busy"]))
        yield from _objectives(app)


def _objectives(app: App) -> Iterator[Metric]:
    """The figures of the service-level objectives, and which objectives each queue breaks."""
    stats = app.stats()
    for name, field, text in (
        ("utilization", "utilization_pct", "Busy slots over the slots of the workers serving the queue, last minute"),
        ("error_rate", "error_rate_pct", "Failed over completed + failed, last 24 hours"),
        ("completion_rate", "completion_rate_pct", "Completed over completed + failed + cancelled, last 24 hours"),
    ):
        gauge = GaugeMetricFamily(f"pgq_queue_{name}_ratio", text, labels=["queue"])
        for queue in stats:
            value = getattr(queue, field)
            if value is not None:
                gauge.add_metric([queue.queue], value / 100.0)
        yield gauge
    breached = GaugeMetricFamily(
        "pgq_queue_slo_breached", "1 while the queue breaks the service-level objective", labels=["queue", "objective"]
    )
    for queue in stats:
        for objective in OBJECTIVES:
            if objective.key in queue.slo:
                breached.add_metric([queue.queue, objective.name], float(objective.name in queue.slo_breaches))
    yield breached


def registry_for(app: App) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PgqCollector(app))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
