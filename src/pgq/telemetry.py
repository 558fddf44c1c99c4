"""OpenTelemetry: a span per enqueue and per attempt, and the job metrics.

Active when the ``opentelemetry-api`` package is importable (``pip install
'pgq-jobs[otel]'``) and ``PGQ_OTEL`` is not false. Spans and metrics go to the
global providers, which the application (or ``opentelemetry-instrument``)
sets up: pgq configures no exporter of its own. Until a provider is set, the
API's proxies make every call a no-op.

The trace context of the enqueue is stored in the job's ``meta`` under
:data:`TRACE_KEY` (W3C ``traceparent``/``tracestate``), so the attempt's span
is a child of the enqueue's, and a trace runs from the request that enqueued
a job to the handler that ran it, across processes and restarts. Keeping it in
``meta`` costs the claim nothing (it already returns ``meta``) and adds no
column; a job enqueued with no span current carries none.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from pgq.app import App
    from pgq.job import Job
    from pgq.settings import Settings
    from pgq.worker.outcome import Outcome

log = logging.getLogger("pgq.telemetry")

#: The key of ``meta`` that holds the enqueue's trace context.
TRACE_KEY = "pgq.trace"

#: The status each outcome kind counts as in ``pgq.jobs.finished``.
_STATUS = {
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "retry": "retried",
    "snooze": "snoozed",
    "return": "returned",
}


class Telemetry:
    """The tracer and the instruments; one per process (see :func:`get`)."""

    def __init__(self) -> None:
        from opentelemetry import context, metrics, propagate, trace
        from opentelemetry.metrics import Observation
        from opentelemetry.metrics import _internal as metrics_internal
        from opentelemetry.trace import Status, StatusCode

        from pgq import __version__

        # Kept here: a job's span and counters are made tens of thousands of times a
        # second, and a function-level import is a lookup each time.
        self._trace, self._context, self._propagate, self._metrics = trace, context, propagate, metrics
        self._metrics_internal = metrics_internal
        self._tracing = self._metering = False
        # Providers named by OTEL_PYTHON_TRACER_PROVIDER / OTEL_PYTHON_METER_PROVIDER are
        # set by the API's first get_*_provider() call: make it here, once.
        trace.get_tracer_provider()
        metrics.get_meter_provider()
        self._status, self._status_error = Status, StatusCode.ERROR
        self._observation = Observation
        self._producer, self._consumer = trace.SpanKind.PRODUCER, trace.SpanKind.CONSUMER
        self.tracer = trace.get_tracer("pgq", __version__)
        meter = metrics.get_meter("pgq", __version__)
        self.enqueued = meter.create_counter(
            "pgq.jobs.enqueued", unit="{job}", description="Jobs enqueued through this process's App."
        )
        self.finished = meter.create_counter(
            "pgq.jobs.finished",
            unit="{job}",
            description="Attempts that ended, by status (completed, failed, cancelled, retried, snoozed, returned).",
        )
        self.run_time = meter.create_histogram(
            "pgq.job.run_time", unit="s", description="Time an attempt's handler ran."
        )
        self.wait_time = meter.create_histogram(
            "pgq.job.wait_time", unit="s", description="Time from a job's run time to its attempt's start."
        )
        self._watched: weakref.WeakSet[App] = weakref.WeakSet()
        meter.create_observable_gauge(
            "pgq.queue.depth",
            callbacks=[self._depths],
            unit="{job}",
            description="Live jobs per queue and status (pending, delayed, running, blocked).",
        )

    def tracing(self) -> bool:
        """True once the application has set a tracer provider. Until then every span
        would be a no-op, and pgq skips them: opentelemetry-api often comes with other
        libraries, and a no-op span cost 1.8 us a job, an enqueue's span 7 us. Read
        from the API's global (what ``get_tracer_provider()`` reads, without its
        environment lookup): this runs for every job and every enqueue."""
        if not self._tracing:
            self._tracing = self._trace._TRACER_PROVIDER is not None
        return self._tracing

    def metering(self) -> bool:
        """:meth:`tracing` for the meter provider."""
        if not self._metering:
            self._metering = self._metrics_internal._METER_PROVIDER is not None
        return self._metering

    def active(self) -> bool:
        """Whether the application has set a provider, so that pgq has anything to do."""
        return self.tracing() or self.metering()

    # ------------------------------------------------------------ enqueue

    @contextmanager
    def enqueue_span(self, task: str, queue: str | None, count: int = 1) -> Iterator[Any]:
        """The ``pgq.enqueue`` span, current while the jobs are written."""
        attributes: dict[str, Any] = {
            "messaging.system": "pgq",
            "messaging.operation.type": "send",
            "pgq.task": task,
        }
        if queue is not None:
            attributes["messaging.destination.name"] = queue
        if count != 1:
            attributes["messaging.batch.message_count"] = count
        if self.tracing():
            with self.tracer.start_as_current_span("pgq.enqueue", kind=self._producer, attributes=attributes) as span:
                yield span
        else:
            yield self._trace.INVALID_SPAN
        if self.metering():
            self.enqueued.add(count, {"pgq.task": task} if count == 1 else {})

    def carrier(self) -> dict[str, str] | None:
        """The current trace context as W3C headers, or None when no span is current."""
        headers: dict[str, str] = {}
        self._propagate.inject(headers)
        return headers or None

    # ------------------------------------------------------------ attempts

    def start_run(self, job: Job) -> tuple[Any, Any]:
        """Start the attempt's ``pgq.run`` span, child of its enqueue's, and make it
        current; returns the span and the token that :meth:`end_run` detaches."""
        carrier = job.meta.get(TRACE_KEY) if type(job.meta) is dict else None
        parent = self._propagate.extract(carrier) if type(carrier) is dict else None
        span = self.tracer.start_span(
            "pgq.run",
            context=parent,
            kind=self._consumer,
            attributes={
                "messaging.system": "pgq",
                "messaging.operation.type": "process",
                "messaging.destination.name": job.queue,
                "messaging.message.id": str(job.id),
                "pgq.job.id": job.id,
                "pgq.task": job.task,
                "pgq.attempt": job.attempts,
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        return span, token

    def end_run(self, span: Any, token: Any, outcome: Outcome | None) -> None:
        self._context.detach(token)
        if outcome is not None:
            span.set_attribute("pgq.outcome", _STATUS.get(outcome.kind, outcome.kind))
            error = outcome.error
            if error is not None and outcome.kind in ("failed", "retry"):
                attributes = {"exception.type": str(error.get("type")), "exception.message": str(error.get("message"))}
                if error.get("traceback"):
                    attributes["exception.stacktrace"] = str(error["traceback"])
                span.add_event("exception", attributes)
                span.set_status(self._status(self._status_error, f"{error.get('type')}: {error.get('message')}"))
        span.end()

    def written(self, outcome: Outcome) -> None:
        """Count an outcome the database accepted, with its run and wait times."""
        job = outcome.job
        attributes = {"pgq.task": job.task, "pgq.queue": job.queue}
        self.finished.add(1, {**attributes, "pgq.status": _STATUS.get(outcome.kind, outcome.kind)})
        if outcome.kind == "return":
            return
        self.run_time.record(outcome.duration, attributes)
        if job.started_at is not None and job.run_at is not None:
            self.wait_time.record(max(0.0, (job.started_at - job.run_at).total_seconds()), attributes)

    # ------------------------------------------------------------ queue depth

    def watch(self, app: App) -> None:
        """Report ``app``'s queue depths with the gauge (a worker calls this at start)."""
        self._watched.add(app)

    def _depths(self, _options: Any) -> Iterator[Any]:
        for app in list(self._watched):
            try:
                queues = app.list_queues()
            except Exception as exc:  # the reader's thread must not die of a database error
                log.debug("pgq.queue.depth: cannot read the queues: %s", exc)
                continue
            for queue in queues:
                for status, count in (
                    ("pending", queue.waiting),
                    ("delayed", queue.delayed),
                    ("running", queue.active),
                    ("blocked", queue.blocked),
                ):
                    yield self._observation(count, {"pgq.queue": queue.name, "pgq.status": status})


def with_trace(meta_json: str | None, carrier: dict[str, str]) -> str:
    """A job's ``meta`` (as stored: JSON text or None) with the trace context added."""
    meta = orjson.loads(meta_json) if meta_json is not None else {}
    meta[TRACE_KEY] = carrier
    return orjson.dumps(meta).decode()


_telemetry: Telemetry | None = None
_installed: bool | None = None


def get(settings: Settings) -> Telemetry | None:
    """This process's :class:`Telemetry`, or None when OpenTelemetry is not installed
    or ``settings.otel`` is false."""
    global _telemetry, _installed
    if not settings.otel or _installed is False:
        return None
    if _telemetry is None:
        try:
            _telemetry = Telemetry()
        except ImportError:
            _installed = False
            return None
    return _telemetry
