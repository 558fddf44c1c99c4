"""examples/media_pipeline end to end: a worker process, the submit and ops scripts, a local webhook receiver;
its HTTP API (/api/queue/*) and its own webhook receiver under uvicorn, and its /queue-demo page in headless
Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

import pgq
from tests.example_browser import shot
from tests.example_services import Service
from tests.processes import ROOT, WorkerProcess, wait_for


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


API = "examples.media_pipeline.api:api"
WORKER = ("--queues", "emails,images,webhooks")
TASKS_APP = "examples.media_pipeline.tasks:app"


def error(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json()["detail"]


@pytest.mark.slow
def test_media_pipeline_http_api(database_url: str, serve: Callable[..., httpx.Client]) -> None:
    """/api/queue/* without a worker (jobs wait, so they can be listed, cancelled and retried)."""
    client = serve(API)

    # Submit: one of each kind, with the demo's data when none is given.
    def submit(kind: str, **body: Any) -> dict[str, Any]:
        response = client.post("/api/queue/submit", json={"kind": kind, **body})
        assert response.status_code == 201, response.text
        return dict(response.json())

    email = submit("email", data={"user_id": 3, "template": "welcome"}, priority=5)["job_ids"][0]
    image = submit("image", data={"url": "https://cdn.example.com/a.jpg"}, delay=3600)["job_ids"][0]
    batch = submit("image_batch")
    webhook = submit("webhook", data={"event": "test.ping", "data": {"n": 1}})["job_ids"][0]
    receiver = f"{client.base_url}/webhook-receiver"
    assert batch["callback_url"] == receiver and len(batch["job_ids"]) == 6  # five images, then the callback

    job = client.get(f"/api/queue/jobs/{email}").json()
    assert (job["queue"], job["task"], job["args"], job["priority"]) == (
        "emails", "send_email", {"user_id": 3, "template": "welcome"}, 5
    )  # fmt: skip
    assert client.get(f"/api/queue/jobs/{image}").json()["state"] == "delayed"  # pending, due in an hour
    callback = client.get(f"/api/queue/jobs/{batch['job_ids'][-1]}").json()
    assert callback["task"] == "batch_finished" and callback["status"] == "blocked"
    assert sorted(callback["depends_on"]) == batch["job_ids"][:-1]
    hook = client.get(f"/api/queue/jobs/{webhook}").json()
    assert hook["args"] == {"url": receiver, "event": "test.ping", "data": {"n": 1}}  # the local receiver by default

    # Bad submissions: what was wrong.
    assert client.post("/api/queue/submit", json={"kind": "sms"}).status_code == 422
    assert "unexpected keyword argument 'colour'" in error(
        client.post("/api/queue/submit", json={"kind": "email", "data": {"colour": "red"}}), 422
    )
    assert error(client.post("/api/queue/submit", json={"kind": "image", "data": {"size": 3}}), 422) == (
        "unknown field 'size' in data; image takes url"
    )
    assert "urls must be a non-empty list" in error(
        client.post("/api/queue/submit", json={"kind": "image_batch", "data": {"urls": []}}), 422
    )
    assert "takes neither" in error(client.post("/api/queue/submit", json={"kind": "image_batch", "priority": 1}), 422)
    assert client.post("/api/queue/submit", json={"kind": "email", "delay": -1}).status_code == 422

    # List, with filters.
    def ids(**params: Any) -> list[int]:
        response = client.get("/api/queue/jobs", params=params)
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["jobs"]]

    everything = ids()
    assert len(everything) == 9 and everything == sorted(everything, reverse=True)  # newest first
    assert ids(queue="emails") == [email]
    assert ids(task="process_image") == sorted([image, *batch["job_ids"][:-1]], reverse=True)
    assert ids(state="blocked") == [batch["job_ids"][-1]]
    assert ids(queue="images", state="pending", task="process_image", limit=2) == sorted(batch["job_ids"][:-1])[:-3:-1]
    assert ids(queue="webhooks", state="completed") == []
    assert error(client.get("/api/queue/jobs", params={"state": "waiting"}), 422) == (
        "unknown state 'waiting'; the states are pending, blocked, running, completed, failed, cancelled"
    )
    assert error(client.get("/api/queue/jobs", params={"queue": "videos"}), 422) == (
        "unknown queue 'videos'; the pipeline's queues are emails, images, webhooks"
    )
    assert error(client.get("/api/queue/jobs", params={"task": "transcode"}), 422) == (
        "unknown task 'transcode'; the pipeline's tasks are batch_finished, deliver_webhook, process_image, send_email"
    )
    assert client.get("/api/queue/jobs", params={"limit": 0}).status_code == 422

    # Get, cancel, retry.
    assert error(client.get("/api/queue/jobs/999999"), 404).startswith("no job 999999")
    assert client.post(f"/api/queue/jobs/{email}/cancel").json() == {"job_id": email, "outcome": "cancelled"}
    assert "already finished (cancelled)" in error(client.post(f"/api/queue/jobs/{email}/cancel"), 409)
    assert client.post(f"/api/queue/jobs/{email}/retry").json() == {"job_id": email, "outcome": "retried"}
    assert client.get(f"/api/queue/jobs/{email}").json()["status"] == "pending"
    assert "only failed or cancelled jobs" in error(client.post(f"/api/queue/jobs/{image}/retry"), 409)
    assert error(client.post("/api/queue/jobs/999999/cancel"), 404) == "no job 999999"
    assert error(client.post("/api/queue/jobs/999999/retry"), 404) == "no job 999999"

    # Stats: the pipeline's three queues, live counts now; and the API process's fast lane, which
    # warmed the preview of each image submitted on its own (nothing of it in the database).
    fast = wait_for(lambda: (f := client.get("/api/queue/stats").json()["fast_lane"])["live"] == 0 and f, 10, "lane")
    assert fast["completed"] == fast["enqueued"] == fast["warmed"] >= 1 and fast.get("failed", 0) == 0
    queues = client.get("/api/queue/stats").json()["queues"]
    assert list(queues) == ["emails", "images", "webhooks"]
    assert (queues["emails"]["waiting"], queues["images"]["waiting"], queues["images"]["delayed"]) == (1, 5, 1)
    assert (queues["images"]["blocked"], queues["webhooks"]["waiting"]) == (1, 1)

    # Cleanup: the retention now. Old history (7 days for completed, 30 for failed) goes; the rest stays.
    with psycopg.connect(database_url) as conn:
        for job_id, status, days in [(900001, "completed", 8), (900002, "completed", 6), (900003, "failed", 8)]:
            conn.execute(
                "insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,"
                " run_at, created_at, finished_at) values (%s, 'images', 'process_image', '{}', 0, %s, 1, 3,"
                " now(), now(), now() - make_interval(days => %s))",
                [job_id, status, days],
            )
    cleaned = client.post("/api/queue/cleanup").json()
    assert cleaned["deleted"]["jobs"] == 1
    assert cleaned["retention_seconds"] == {"completed": 7 * 86400, "failed": 30 * 86400, "cancelled": 7 * 86400}
    assert client.get("/api/queue/jobs/900001").status_code == 404
    assert client.get("/api/queue/jobs/900002").status_code == client.get("/api/queue/jobs/900003").status_code == 200
    assert client.post("/api/queue/cleanup").json()["deleted"]["jobs"] == 0

    # The local webhook receiver: it records what it gets (JSON, or text) and lists it, oldest first.
    assert client.get("/webhook-receiver").json() == {"received": []}
    assert client.post("/webhook-receiver", json={"event": "x", "data": {"n": 1}}).status_code == 200
    assert client.post("/webhook-receiver", content=b"not json").status_code == 200
    got = client.get("/webhook-receiver").json()["received"]
    assert [r["body"] for r in got] == [{"event": "x", "data": {"n": 1}}, {"text": "not json"}]
    assert [r["body"] for r in client.get("/webhook-receiver", params={"limit": 1}).json()["received"]] == [
        {"text": "not json"}
    ]
    assert client.get("/queue-demo").status_code == 200 and "queue-demo.js" in client.get("/queue-demo").text


@pytest.mark.slow
def test_media_pipeline_runs_offline_with_its_own_receiver(
    database_url: str,
    tmp_path: Path,
    serve: Callable[..., httpx.Client],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """submit.py and the API's webhooks go to the example's own receiver: nothing leaves the machine."""
    from examples.media_pipeline import tasks

    assert tasks.WEBHOOK_URL == "http://127.0.0.1:8000/webhook-receiver"  # uvicorn's default port
    readme = (ROOT / "examples" / "media_pipeline" / "README.md").read_text()
    assert "httpbin" not in readme and "/webhook-receiver" in readme

    client = serve(API)
    worker = start_worker(*WORKER, app=TASKS_APP)
    receiver = f"{client.base_url}/webhook-receiver"  # the test's port; MEDIA_WEBHOOK_URL says so
    service = Service(
        database_url,
        ["-m", "examples.media_pipeline.submit"],
        tmp_path / "submit.log",
        env={"MEDIA_WEBHOOK_URL": receiver},
    )
    assert service.process.wait(60) == 0, service.output()
    assert f"the callback goes to {receiver}" in service.output()
    client.post("/api/queue/submit", json={"kind": "webhook", "data": {"event": "demo.ping", "data": {"n": 2}}})

    def received() -> list[Any]:
        bodies = [r["body"] for r in client.get("/webhook-receiver").json()["received"]]
        return bodies if len(bodies) >= 2 else []

    bodies = wait_for(received, 30, "two webhooks at the example's receiver")
    summary = {"batch_id": 1, "done": 4, "failed": 1, "failed_images": [5]}
    assert sorted(bodies, key=lambda b: b["event"]) == [
        {"event": "batch.finished", "data": summary},
        {"event": "demo.ping", "data": {"n": 2}},
    ]
    webhooks = client.get("/api/queue/jobs", params={"task": "deliver_webhook", "state": "completed"}).json()["jobs"]
    assert sorted(j["result"] for j in webhooks) == [200, 200]
    assert client.get("/api/queue/stats").json()["queues"]["webhooks"]["completed"] == 2
    assert "Traceback" not in worker.output()


def row_state(page: Any, job_id: int) -> str:
    return str(page.locator(f"#jobs tr[data-job-id='{job_id}']").get_attribute("data-state"))


@pytest.mark.slow
def test_queue_demo_page_in_chromium(
    serve: Callable[..., httpx.Client],
    start_worker: Callable[..., WorkerProcess],
    tab: Any,
    tmp_path: Path,
    database_url: str,
) -> None:
    """/queue-demo: each kind submitted by its button, seen waiting, then moving once a worker runs."""
    client = serve(API)
    tab.goto(f"{client.base_url}/queue-demo")
    for label in ("Submit email", "Submit image", "Submit image batch (5, the gif fails)", "Submit webhook"):
        tab.get_by_role("button", name=label, exact=True).click()
        tab.wait_for_function("!document.querySelector('#message').className")
    tab.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 9")
    jobs = {j["id"]: j for j in client.get("/api/queue/jobs").json()["jobs"]}
    assert sorted(j["task"] for j in jobs.values()).count("process_image") == 6
    assert {row_state(tab, job_id) for job_id in jobs} == {"pending", "blocked"}
    tab.wait_for_function(
        "document.querySelector('#stats tr[data-queue=images] [data-count=waiting]').textContent === '6'"
    )
    shot(tab, tmp_path, "queue-demo-waiting")

    # Cancel, from its button, an email no worker took yet.
    tab.get_by_role("button", name="Submit email", exact=True).click()
    tab.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 10")
    extra = max(j["id"] for j in client.get("/api/queue/jobs").json()["jobs"])
    tab.locator(f"#jobs tr[data-job-id='{extra}']").get_by_role("button", name="Cancel").click()
    wait_for(lambda: row_state(tab, extra) == "cancelled", 10, "the cancelled email")

    # A worker: they move, and the page saw it.
    worker = start_worker(*WORKER, app=TASKS_APP)
    by_task = {j["task"]: j["id"] for j in jobs.values() if j["task"] != "process_image"}
    # The gif's image row, by its URL: identity values may skip (a rolled-back insert takes one).
    with psycopg.connect(database_url) as conn:
        (gif_image,) = conn.execute("select id from images where url like '%.gif'").fetchone()  # type: ignore[misc]
    gif = next(i for i, j in jobs.items() if j["task"] == "process_image" and j["args"]["image_id"] == gif_image)
    wait_for(
        lambda: all(row_state(tab, i) in ("completed", "failed") for i in jobs), 30, "every job to finish on the page"
    )
    trail = lambda job_id: tab.locator(f"#jobs tr[data-job-id='{job_id}'] [data-cell=trail]").inner_text()  # noqa: E731
    assert trail(by_task["send_email"]).startswith("pending → ") and trail(by_task["send_email"]).endswith("completed")
    assert trail(by_task["batch_finished"]).startswith("blocked → ")
    assert row_state(tab, gif) == "failed" and row_state(tab, extra) == "cancelled"
    assert "PermanentError: unsupported format" in tab.locator(f"#jobs tr[data-job-id='{gif}']").inner_text()
    tab.wait_for_function("document.querySelectorAll('#webhooks li').length === 2")
    assert "batch.finished" in tab.locator("#webhooks").inner_text()
    shot(tab, tmp_path, "queue-demo-finished")

    # Retry the gif from its button (it fails again), a filter, and the cleanup button.
    tab.locator(f"#jobs tr[data-job-id='{gif}']").get_by_role("button", name="Retry").click()
    wait_for(lambda: client.get(f"/api/queue/jobs/{gif}").json()["attempts"] == 2, 20, "the retried gif")
    tab.select_option("#filter-state", "failed")
    tab.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 1")
    assert row_state(tab, gif) == "failed"
    tab.get_by_role("button", name="Run cleanup").click()
    tab.wait_for_function("document.querySelector('#message').textContent.startsWith('cleanup: 0 finished')")
    shot(tab, tmp_path, "queue-demo-filtered")
    assert "Traceback" not in worker.output()
