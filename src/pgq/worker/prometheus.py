"""``pgq worker --metrics-port``: the worker's own Prometheus metrics, measured in process.

Where the dashboard's ``/metrics`` reads the database, these come from the
worker's job events (:mod:`pgq.events`), so run and wait times are real
histograms. Each worker process serves its own port; label your scrape
targets by process.

| metric | type | labels |
| --- | --- | --- |
| ``pgq_worker_jobs_started_total`` | counter | queue, task |
| ``pgq_worker_jobs_finished_total`` | counter | queue, task, outcome (completed, failed, retried, ...) |
| ``pgq_worker_job_run_seconds`` | histogram | queue, task |
| ``pgq_worker_job_wait_seconds`` | histogram | queue (from due time to start) |
| ``pgq_worker_slots`` | gauge | |
| ``pgq_worker_slots_in_use`` | gauge | |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pgq.errors import ConfigurationError
from pgq.events import Event

if TYPE_CHECKING:
    from pgq.app import App

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
OUTCOMES = {
    "job_completed": "completed",
    "job_failed": "failed",
    "job_retrying": "retried",
    "job_cancelled": "cancelled",
    "job_returned": "returned",
    "job_snoozed": "snoozed",
}


def parse_address(text: str) -> tuple[str, int]:
    """``9100`` (all addresses, as exporters do) or ``127.0.0.1:9100``."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ConfigurationError(f"--metrics-port takes PORT or HOST:PORT, got {text!r}") from None
    if not 0 < number < 65536:
        raise ConfigurationError(f"--metrics-port: {number} is not a TCP port")
    return host.strip("[]") or "0.0.0.0", number


class WorkerMetrics:
    def __init__(self, concurrency: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.started = Counter(
            "pgq_worker_jobs_started", "Jobs this worker started", ["queue", "task"], registry=self.registry
        )
        self.finished = Counter(
            "pgq_worker_jobs_finished",
            "Attempts this worker ended, by outcome",
            ["queue", "task", "outcome"],
            registry=self.registry,
        )
        self.run = Histogram(
            "pgq_worker_job_run_seconds",
            "Run time of an attempt",
            ["queue", "task"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.wait = Histogram(
            "pgq_worker_job_wait_seconds", "Time from due to start", ["queue"], buckets=BUCKETS, registry=self.registry
        )
        Gauge("pgq_worker_slots", "Jobs this worker may run at once", registry=self.registry).set(concurrency)
        self.running: set[int] = set()
        in_use = Gauge("pgq_worker_slots_in_use", "Jobs this worker runs now", registry=self.registry)
        in_use.set_function(lambda: len(self.running))

    def on_started(self, event: Event) -> None:
        job = event.job
        self.running.add(job.id)
        self.started.labels(job.queue, job.task).inc()
        if job.started_at is not None:
            due = max(job.run_at, job.created_at)
            self.wait.labels(job.queue).observe(max((job.started_at - due).total_seconds(), 0.0))

    def on_finished(self, event: Event) -> None:
        job = event.job
        self.running.discard(job.id)
        self.finished.labels(job.queue, job.task, OUTCOMES[event.name]).inc()
        if event.duration is not None and event.name != "job_returned":
            self.run.labels(job.queue, job.task).observe(event.duration)

    def install(self, app: App) -> None:
        app.on("job_started", self.on_started)
        for name in OUTCOMES:
            app.on(name, self.on_finished)


def serve_worker_metrics(app: App, address: str, concurrency: int) -> Any:
    """Hook the metrics into ``app``'s workers and serve them on ``address`` (in a thread)."""
    host, port = parse_address(address)
    metrics = WorkerMetrics(concurrency)
    metrics.install(app)
    try:
        return start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise ConfigurationError(f"--metrics-port {address}: cannot listen there ({exc})") from None
