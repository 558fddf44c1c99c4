"""OpenTelemetry: spans per enqueue and attempt, the trace carried by the job, the metrics.

The SDK's in-memory exporter and reader stand in for a collector. The global
providers can be set once per process, so this module sets them once and
reads only the spans and points of its own jobs and tasks.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import opentelemetry.metrics._internal as metrics_internal
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

import pgq
import pgq.telemetry
from pgq.telemetry import TRACE_KEY

SPANS = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(autouse=True)
def providers() -> Iterator[None]:
    """The SDK's providers for each test only: set, then taken away again, so that every
    other test of this process runs as an application without OpenTelemetry does (pytest
    interleaves modules when it groups tests by server)."""
    global SPANS, READER
    reset_globals()
    SPANS, READER = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    yield
    reset_globals()


def reset_globals() -> None:
    # What opentelemetry-test-utils' reset_*_globals do: the API sets a provider once per
    # process. The proxies go too: a proxy made before (by an App of another test) would bind
    # to the next provider set, and its instruments would take the names this module's use.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace._PROXY_TRACER_PROVIDER = trace.ProxyTracerProvider()
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()
    # pgq's Telemetry holds proxies bound to the providers it saw: the next App makes a new one.
    pgq.telemetry._telemetry = None


def spans_of(name: str, job_id: int) -> list[ReadableSpan]:
    return [
        span
        for span in SPANS.get_finished_spans()
        if span.name == name and (span.attributes or {}).get("pgq.job.id") == job_id
    ]


def points(metric: str, **attributes: Any) -> list[Any]:
    data = READER.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for item in scope.metrics:
                if item.name != metric:
                    continue
                for point in item.data.data_points:
                    if all(point.attributes.get(k) == v for k, v in attributes.items()):
                        found.append(point)
    return found


def total(metric: str, **attributes: Any) -> float:
    return sum(getattr(point, "value", None) or getattr(point, "count", 0) for point in points(metric, **attributes))


async def run_until(app: pgq.App, done: Callable[[], bool], timeout: float = 30.0) -> None:
    async with app.worker(poll_interval=0.2, concurrency=2):
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(done):
            assert time.monotonic() < deadline, f"the worker did not finish within {timeout} s"
            await asyncio.sleep(0.05)


def finished(app: pgq.App, *ids: int) -> Callable[[], bool]:
    return lambda: all((job := app.get_job(i)) is not None and job.is_finished for i in ids)


async def test_a_trace_runs_from_the_request_that_enqueued_to_the_handler(app: pgq.App) -> None:
    seen: dict[str, Any] = {}

    @app.task()
    async def traced_async(name: str) -> None:
        seen[name] = trace.get_current_span().get_span_context()

    @app.task()
    def traced_sync(name: str) -> None:  # runs in the worker's thread pool
        seen[name] = trace.get_current_span().get_span_context()

    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("POST /signup") as request:
        first = app.enqueue(traced_async, {"name": "async"})
        second = await app.enqueue_async("traced_sync", {"name": "sync"})
    await run_until(app, finished(app, first, second))

    trace_id = request.get_span_context().trace_id
    for job_id, task, name in ((first, "traced_async", "async"), (second, "traced_sync", "sync")):
        job = app.get_job(job_id)
        assert job is not None and job.status == "completed"
        assert set(job.meta[TRACE_KEY]) >= {"traceparent"}
        (enqueue,) = spans_of("pgq.enqueue", job_id)
        (run,) = spans_of("pgq.run", job_id)
        assert enqueue.kind == SpanKind.PRODUCER and run.kind == SpanKind.CONSUMER
        assert enqueue.parent is not None and enqueue.parent.span_id == request.get_span_context().span_id
        assert run.context.trace_id == enqueue.context.trace_id == trace_id
        assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
        attributes = dict(run.attributes or {})
        assert attributes["pgq.task"] == task and attributes["pgq.attempt"] == 1
        assert attributes["messaging.destination.name"] == "default"
        assert attributes["pgq.outcome"] == "completed"
        assert run.status.status_code != StatusCode.ERROR
        # The handler ran inside the attempt's span: its own spans nest under it.
        assert seen[name].span_id == run.context.span_id and seen[name].trace_id == trace_id


async def test_a_failed_attempt_is_an_error_span_and_is_counted(app: pgq.App) -> None:
    @app.task(max_attempts=2, backoff=0)
    async def otel_fails() -> None:
        raise ValueError("no such customer")

    before = {
        status: total("pgq.jobs.finished", **{"pgq.task": "otel_fails", "pgq.status": status})
        for status in ("retried", "failed")
    }
    runs_before = total("pgq.job.run_time", **{"pgq.task": "otel_fails"})
    job_id = app.enqueue(otel_fails)  # no span current: the enqueue's span starts the trace
    await run_until(app, finished(app, job_id))

    job = app.get_job(job_id)
    assert job is not None and job.status == "failed"
    (enqueue,) = spans_of("pgq.enqueue", job_id)
    assert enqueue.parent is None
    runs = sorted(spans_of("pgq.run", job_id), key=lambda span: (span.attributes or {})["pgq.attempt"])
    assert [(span.attributes or {})["pgq.outcome"] for span in runs] == ["retried", "failed"]
    for span in runs:
        assert span.parent is not None and span.parent.span_id == enqueue.context.span_id
        assert span.status.status_code == StatusCode.ERROR
        (event,) = [e for e in span.events if e.name == "exception"]
        assert (event.attributes or {})["exception.type"] == "ValueError"
        assert "no such customer" in str((event.attributes or {})["exception.message"])
    for status in ("retried", "failed"):
        after = total("pgq.jobs.finished", **{"pgq.task": "otel_fails", "pgq.status": status})
        assert after - before[status] == 1, status
    assert total("pgq.job.run_time", **{"pgq.task": "otel_fails"}) - runs_before == 2
    assert points("pgq.job.wait_time", **{"pgq.task": "otel_fails"})


def test_enqueue_many_carries_the_trace_by_copy_and_by_insert(app: pgq.App) -> None:
    @app.task()
    def otel_many(n: int) -> None: ...

    with trace.get_tracer("tests").start_as_current_span("import") as request:
        ids = app.enqueue_many(
            [pgq.JobSpec("otel_many", {"n": n}) for n in range(3)]  # plain: written by COPY
            + [pgq.JobSpec("otel_many", {"n": 3}, key="k", meta={"source": "csv"})]  # by insert
        )
    trace_id = f"{request.get_span_context().trace_id:032x}"
    for job_id in ids:
        job = app.get_job(job_id)
        assert job is not None
        assert trace_id in job.meta[TRACE_KEY]["traceparent"]
    last = app.get_job(ids[-1])
    assert last is not None and last.meta["source"] == "csv"  # the caller's meta is kept
    (span,) = [
        s
        for s in SPANS.get_finished_spans()
        if s.name == "pgq.enqueue" and s.parent is not None and s.parent.span_id == request.get_span_context().span_id
    ]
    assert (span.attributes or {})["messaging.batch.message_count"] == 4
    assert (span.attributes or {})["pgq.task"] == "otel_many"


def test_the_queue_depth_gauge_reads_the_live_jobs(app: pgq.App) -> None:
    assert app.telemetry is not None
    app.enqueue("otel_depth", {}, queue="otel_depth")
    app.enqueue("otel_depth", {}, queue="otel_depth")
    app.enqueue("otel_depth", {}, queue="otel_depth", delay=3600)
    app.telemetry.watch(app)  # a worker does this at its start
    depth = {
        point.attributes["pgq.status"]: point.value
        for point in points("pgq.queue.depth", **{"pgq.queue": "otel_depth"})
    }
    assert depth["pending"] == 2 and depth["delayed"] == 1 and depth["running"] == 0


def test_pgq_otel_false_turns_it_off(database_url: str) -> None:
    app = pgq.App(database_url, otel=False)
    try:
        assert app.telemetry is None
        with trace.get_tracer("tests").start_as_current_span("request"):
            job_id = app.enqueue("anything", {})
        job = app.get_job(job_id)
        assert job is not None and job.meta is None
        assert not spans_of("pgq.enqueue", job_id)
    finally:
        app.close()


def test_without_a_provider_the_worker_makes_no_spans(tmp_path: Any) -> None:
    # In a process of its own: this module's providers are set for good in this one.
    script = """
import datetime
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from pgq.settings import Settings
from pgq.telemetry import get
telemetry = get(Settings(database_url="postgresql://localhost/x"))
assert telemetry is not None and not telemetry.tracing() and not telemetry.metering()
trace.set_tracer_provider(TracerProvider())
assert telemetry.tracing() and not telemetry.metering()
metrics.set_meter_provider(MeterProvider())
assert telemetry.metering()
assert get(Settings(database_url="postgresql://localhost/x", otel=False)) is None
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
