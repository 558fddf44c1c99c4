"""examples/media_pipeline end to end: a worker process, the submit and ops scripts, a local webhook receiver."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import pgq
from tests.processes import ROOT, WorkerProcess, wait_for
from tests.test_examples_cms import Service


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1: its URL, and the JSON bodies it got."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def run(database_url: str, tmp_path: Path, *args: str) -> str:
    service = Service(database_url, list(args), tmp_path / f"{args[1].rsplit('.', 1)[-1]}.log")
    assert service.process.wait(60) == 0, service.output()
    return service.output()


def jobs(database_url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, params or None).fetchall()


@pytest.mark.slow
def test_media_pipeline_end_to_end(
    database_url: str,
    tmp_path: Path,
    receiver: tuple[str, list[dict[str, Any]]],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    url, received = receiver
    worker = start_worker("--queues", "emails,images,webhooks", app="examples.media_pipeline.tasks:app")
    assert "batch 1: 5 images" in run(database_url, tmp_path, "-m", "examples.media_pipeline.submit", url)

    # Four images done, the gif failed for good; once all five finished, the workflow ran the callback
    # (on_parent_failure="run": the gif's failure did not cancel it), which sent the webhook.
    wait_for(lambda: received, 30, "the batch webhook")
    summary = {"batch_id": 1, "done": 4, "failed": 1, "failed_images": [5]}
    assert received == [{"event": "batch.finished", "data": summary}]
    history = jobs(database_url, "select * from pgq.job_history where task in ('process_image', 'batch_finished')")
    images = [row for row in history if row["task"] == "process_image"]
    callbacks = [row for row in history if row["task"] == "batch_finished"]
    assert sorted(row["status"] for row in images) == ["completed"] * 4 + ["failed"]
    # Exactly once, one attempt, waiting for the five image jobs, and started after the last of them finished.
    [callback] = callbacks
    assert (callback["status"], callback["attempts"], callback["result"]) == ("completed", 1, summary)
    assert sorted(callback["depends_on"]) == sorted(row["id"] for row in images)
    assert callback["on_parent_failure"] == "run"
    assert callback["started_at"] >= max(row["finished_at"] for row in images)

    # Cancel, retry and stats from code.
    out = run(database_url, tmp_path, "-m", "examples.media_pipeline.ops")
    assert "cancelled" in out and "retried: 1" in out, out
    assert any(line.startswith("images") for line in out.splitlines()), out
    # The retried gif fails again; the batch already had its callback, so no second one.
    gif = jobs(database_url, "select id from pgq.all_jobs where args->>'image_id' = '5'")[0]["id"]
    wait_for(
        lambda: jobs(
            database_url, "select * from pgq.all_jobs where id = %s and attempts = 2 and status = 'failed'", gif
        ),
        20,
        "retried gif",
    )
    # And from the command line.
    cli = subprocess.run(
        [sys.executable, "-m", "pgq", "stats", "--json", "--database-url", database_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    stats = {q["queue"]: q for q in json.loads(cli.stdout)}
    # The gif failed twice (before and after its retry): a metrics snapshot taken in between counts both.
    assert stats["images"]["failed"] in (1, 2) and stats["images"]["completed"] == 5
    assert stats["webhooks"]["completed"] == 1
    assert stats["emails"]["cancelled"] == 1
    assert (
        len(received) == 1 and len(jobs(database_url, "select id from pgq.all_jobs where task = 'batch_finished'")) == 1
    )
    assert "Traceback" not in worker.output()


def test_media_pipeline_prunes_finished_jobs_after_7_days(database_url: str) -> None:
    from examples.media_pipeline.tasks import app as example

    with psycopg.connect(database_url) as conn:
        for job_id, status, days in [(1, "completed", 8), (2, "completed", 6), (3, "failed", 8), (4, "failed", 31)]:
            conn.execute(
                "insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,"
                " run_at, created_at, finished_at) values (%s, 'images', 'process_image', '{}', 0, %s, 1, 3,"
                " now(), now(), now() - make_interval(days => %s))",
                [job_id, status, days],
            )
    settings = example.settings.model_dump(include={"retention", "retention_failed"})
    with pgq.App(database_url, **settings) as app:  # what the example's sweeper does, now
        assert app.prune()["jobs"] == 2
        assert sorted(job.id for job in app.list_jobs(limit=10)) == [2, 3]
