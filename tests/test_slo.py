"""Service-level objectives (issue 19): the figures, the thresholds, and what shows a breach."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

import pgq
from pgq import slo
from pgq.flow import UNSET
from tests.processes import pgq_cli


def test_objective_values_are_checked_before_anything_connects() -> None:
    app = pgq.App("postgresql://nobody@127.0.0.1:1/nothing")
    with pytest.raises(pgq.ConfigurationError, match="slo_wait_p95 must be a positive number of seconds"):
        app.set_queue("q", slo_wait_p95=0)
    with pytest.raises(pgq.ConfigurationError, match="slo_error_rate must be a percentage from 0 to 100, got 150"):
        app.set_queue("q", slo_error_rate=150)
    with pytest.raises(pgq.ConfigurationError, match="slo_utilization must be a percentage"):
        app.set_queue("q", slo_utilization="80%")  # type: ignore[arg-type]
    assert slo.changes(wait_p95=0.1, run_p95=UNSET, utilization=None, error_rate=0.1, completion_rate=UNSET) == (
        {"wait_p95_ms": 100.0, "error_rate_pct": 0.1},
        ["utilization_pct"],
    )


def test_breaches_take_the_queues_own_threshold_else_the_settings() -> None:
    settings = pgq.App("postgresql://x@127.0.0.1:1/y", slo_completion_rate=99.9, slo_run_p95=1).settings
    limits = slo.thresholds({"run_p95_ms": 50.0}, settings)
    assert limits == {"run_p95_ms": 50.0, "completion_rate_pct": 99.9}
    figures = {"run_ms_p95": 60.0, "completion_rate_pct": 99.95, "error_rate_pct": 5.0, "utilization_pct": None}
    assert slo.breaches(figures, limits) == ["run_p95"]
    assert slo.breaches({"run_ms_p95": None, "completion_rate_pct": 99.0}, limits) == ["completion_rate"]


async def test_figures_thresholds_and_breaches_of_a_queue(app: pgq.App) -> None:
    @app.task
    async def work() -> None:
        await asyncio.sleep(0.3)

    @app.task(max_attempts=1)
    def broken() -> None:
        raise RuntimeError("no")

    info = app.set_queue("default", slo_wait_p95=60, slo_run_p95=0.05, slo_utilization=99, slo_error_rate=10)
    assert info.slo == {"wait_p95_ms": 60000.0, "run_p95_ms": 50.0, "utilization_pct": 99.0, "error_rate_pct": 10.0}
    for _ in range(4):
        app.enqueue("work")
    app.enqueue("broken")
    async with app.worker(concurrency=2, poll_interval=0.1) as worker:
        deadline = time.monotonic() + 20
        while sum(1 for j in app.list_jobs(status="completed")) + len(app.list_jobs(status="failed")) < 5:
            assert time.monotonic() < deadline, "the jobs did not finish"
            await asyncio.sleep(0.1)
        await worker.heartbeat.run_once()  # the worker writes its utilisation
        (mine,) = [w for w in app.list_workers() if w.id == worker.id]
        assert mine.utilization_pct is not None and 0 < mine.utilization_pct <= 100
        (stats,) = [s for s in app.stats() if s.queue == "default"]
    assert (stats.completed, stats.failed) == (4, 1)
    assert stats.error_rate_pct == pytest.approx(20.0) and stats.completion_rate_pct == pytest.approx(80.0)
    assert stats.utilization_pct is not None and 0 < stats.utilization_pct < 99
    assert stats.run_ms_p95 is not None and stats.run_ms_p95 >= 250
    # wait p95 holds (well under 60 s); processing time, utilisation and errors do not.
    assert stats.slo_breaches == ["run_p95", "utilization", "error_rate"]

    # A threshold removed (None) gives way to the setting; with neither, it is not checked.
    app.set_queue("default", slo_error_rate=None, slo_utilization=None, slo_run_p95=None)
    (stats,) = [s for s in app.stats() if s.queue == "default"]
    assert stats.slo == {"wait_p95_ms": 60000.0} and stats.slo_breaches == []
    strict = pgq.App(app.settings.database_url, slo_completion_rate=99.9)
    try:
        (stats,) = [s for s in strict.stats() if s.queue == "default"]
        assert stats.slo_breaches == ["completion_rate"]
    finally:
        strict.close()


def test_the_cli_sets_objectives_and_pgq_stats_shows_the_breach(database_url: str, app: pgq.App) -> None:
    result = pgq_cli(database_url, "queues", "set", "default", "--slo-error-rate", "0.1", "--slo-wait-p95", "0.5")
    assert result.returncode == 0, result.stderr
    assert "objectives: error_rate_pct 0.1, wait_p95_ms 500" in result.stdout
    for flags, message in (
        (["--slo-error-rate", "200"], "--slo-error-rate is a percentage from 0 to 100, got '200'"),
        (["--slo-run-p95", "soon"], "--slo-run-p95 takes a number of seconds or none, got 'soon'"),
        (["--slo-wait-p95", "-1"], "--slo-wait-p95 must be a positive number of seconds"),
    ):
        bad = pgq_cli(database_url, "queues", "set", "default", *flags)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    app.cancel(app.enqueue("t"))  # a cancelled job: the error rate is 0 of 0, nothing breaks
    stats = pgq_cli(database_url, "stats")
    assert stats.returncode == 0 and re.search(r"default .* ok", stats.stdout), stats.stdout
    _fail_one(app)
    stats = pgq_cli(database_url, "stats")
    assert "breached: error_rate" in stats.stdout, stats.stdout
    removed = pgq_cli(database_url, "queues", "set", "default", "--slo-error-rate", "none", "--json")
    assert removed.returncode == 0 and '"error_rate_pct"' not in removed.stdout


def _fail_one(app: pgq.App) -> None:
    """A job that failed for good, written as a worker would."""
    from pgq.testing import drain

    @app.task(max_attempts=1)
    def fails() -> None:
        raise RuntimeError("no")

    app.enqueue("fails")
    drain(app)


def test_prometheus_and_the_dashboard_show_a_breach(app: pgq.App) -> None:
    from pgq.web.metrics import registry_for, render

    app.set_queue("default", slo_error_rate=1, slo_completion_rate=50)
    _fail_one(app)
    text = render(registry_for(app)).decode()
    assert 'pgq_queue_slo_breached{objective="error_rate",queue="default"} 1.0' in text
    assert 'pgq_queue_slo_breached{objective="completion_rate",queue="default"} 1.0' in text
    assert 'pgq_queue_error_rate_ratio{queue="default"} 1.0' in text

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from pgq.web import create_app

    with TestClient(create_app(app), base_url="https://127.0.0.1") as client:
        page: Any = client.get("/")
    assert page.status_code == 200
    assert re.search(r'class="num breach">100.0%</td>', page.text), "the error rate is not in red"
    assert "breached: error_rate, completion_rate" in page.text
