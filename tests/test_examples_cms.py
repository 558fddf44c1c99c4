"""examples/cms_jobs end to end: the FastAPI app (uvicorn) and `pgq worker`, as two real processes
started the way its README says, against the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.processes import ROOT, WorkerProcess, wait_for


class Service:
    """A Python command (an example's API or script) running against the test database."""

    def __init__(self, database_url: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}
        full_env.update(PGQ_DATABASE_URL=database_url, PYTHONUNBUFFERED="1", **(env or {}))
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=full_env, stdout=log.open("ab"), stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator[Callable[..., httpx.Client]]:
    """serve("examples.x.api:api") runs it under uvicorn and returns a client once it answers."""
    started: list[tuple[Service, httpx.Client]] = []

    def start(asgi_app: str, env: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> httpx.Client:
        port = free_port()
        args = ["-m", "uvicorn", asgi_app, "--host", "127.0.0.1", "--port", str(port)]
        service = Service(database_url, args, tmp_path / f"api-{len(started)}.log", env)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=headers)
        started.append((service, client))

        def up() -> bool:
            assert service.process.poll() is None, f"{asgi_app} exited:\n{service.output()}"
            try:
                return client.get("/openapi.json").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 30, f"{asgi_app} to answer")
        return client

    yield start
    for service, client in started:
        client.close()
        service.stop()


TOKEN_ENV = {"CMS_API_TOKEN": "s3cret"}
AUTH = {"Authorization": "Bearer s3cret"}


def finished(client: httpx.Client, ids: list[int]) -> list[dict[str, Any]] | None:
    jobs = [client.get(f"/jobs/{job_id}").json() for job_id in ids]
    return jobs if all(job["finished_at"] for job in jobs) else None


@pytest.mark.slow
def test_cms_jobs_end_to_end(
    database_url: str, serve: Callable[..., httpx.Client], start_worker: Callable[..., WorkerProcess]
) -> None:
    client = serve("examples.cms_jobs.api:api", env=TOKEN_ENV, headers=AUTH)
    worker = start_worker("--queues", "cms", app="examples.cms_jobs.jobs:app")

    article = {"title": "Hello", "slug": "hello", "author_email": "ed@example.com", "tags": ["news"]}
    created = client.post("/articles", json={**article, "images": ["https://cdn.test/a.png", "https://cdn.test/b.gif"]})
    assert created.status_code == 201, created.text
    ids = created.json()["jobs"]
    assert len(ids) == 4

    # A failed write leaves no job: a duplicate slug, and an unknown tag written after the enqueues.
    assert client.post("/articles", json=article).status_code == 409
    unknown_tag = client.post("/articles", json={**article, "slug": "other", "tags": ["gossip"]})
    assert unknown_tag.status_code == 409 and "no job enqueued" in unknown_tag.json()["detail"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from articles").fetchone() == (1,)
        assert conn.execute("select count(*) from pgq.all_jobs").fetchone() == (4,)

    # The worker runs them; b.gif fails 3 times (retried after ~2 s and ~4 s) and ends failed.
    jobs = {
        job["payload"].get("image_url", job["type"]): job for job in wait_for(lambda: finished(client, ids), 30, "jobs")
    }
    email = jobs["send-email"]
    assert email["status"] == "completed" and email["payload"] == {
        "article_id": created.json()["id"],
        "to": "ed@example.com",
    }
    assert email["priority"] == 10 and email["attempts"] == 1 and email["error"] is None
    assert email["processed_at"] and email["completed_at"] and email["result"] == {"sent_to": "ed@example.com"}
    assert jobs["generate-report"]["status"] == "completed"
    assert jobs["https://cdn.test/a.png"]["status"] == "completed"
    broken = jobs["https://cdn.test/b.gif"]
    assert broken["status"] == "failed" and broken["attempts"] == 3 and broken["max_attempts"] == 3
    assert broken["error"] == "ValueError: cannot decode https://cdn.test/b.gif" and broken["completed_at"] is None
    assert [job["id"] for job in client.get("/jobs", params={"status": "failed"}).json()] == [broken["id"]]

    # The admin endpoint's SQL over the history: today's failures here (yesterday by default).
    with psycopg.connect(database_url) as conn:
        today = conn.execute("select current_date").fetchone()[0]  # type: ignore[index]
    report = client.get("/admin/failures", params={"day": today.isoformat()}).json()
    assert [(f["type"], f["failed"]) for f in report["failures"]] == [("process-image", 1)]
    assert client.get("/admin/failures").json()["failures"] == []  # nothing failed yesterday
    assert "job" in worker.output()


@pytest.mark.slow
def test_cms_jobs_api_manages_jobs_behind_its_token(database_url: str, serve: Callable[..., httpx.Client]) -> None:
    """The job collection's API without a worker: jobs stay waiting, so they can be changed."""
    client = serve("examples.cms_jobs.api:api", env=TOKEN_ENV, headers=AUTH)
    anonymous = httpx.Client(base_url=client.base_url, timeout=10)
    assert anonymous.get("/jobs").status_code == 401
    assert anonymous.post("/jobs", json={"type": "send-email"}).status_code == 401
    wrong = anonymous.get("/jobs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "CMS_API_TOKEN" in wrong.json()["detail"]

    # A closed set of types, each checked against its handler.
    unknown = client.post("/jobs", json={"type": "send-sms", "payload": {}})
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == (
        "unknown job type 'send-sms'; the CMS's types are generate-report, process-image, send-email"
    )
    bad = client.post("/jobs", json={"type": "send-email", "payload": {"article_id": "x", "to": "a@b.c"}})
    assert bad.status_code == 422 and "article_id" in bad.json()["detail"]

    created = client.post(
        "/jobs", json={"type": "send-email", "payload": {"article_id": 1, "to": "a@b.c"}, "delay": 3600}
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "pending" and job["type"] == "send-email" and job["priority"] == 10
    assert job["created_at"] and job["updated_at"] == job["created_at"] and job["run_at"] > job["created_at"]

    changed = client.patch(f"/jobs/{job['id']}", json={"priority": 50, "payload": {"article_id": 2, "to": "x@y.z"}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["priority"] == 50 and changed.json()["payload"] == {"article_id": 2, "to": "x@y.z"}
    due_now = client.patch(f"/jobs/{job['id']}", json={"delay": 0}).json()
    assert due_now["run_at"] < job["run_at"]  # due now, not in an hour
    assert client.patch(f"/jobs/{job['id']}", json={"payload": {"to": 1}}).status_code == 422
    assert client.patch("/jobs/999999", json={"priority": 1}).status_code == 404

    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    assert client.get(f"/jobs/{job['id']}").status_code == 404
    assert client.delete(f"/jobs/{job['id']}").status_code == 404

    # pgq's dashboard, mounted in the CMS's admin, behind the same token.
    assert anonymous.get("/admin/jobs/api/queues").status_code == 401
    queues = client.get("/admin/jobs/api/queues")
    assert queues.status_code == 200, queues.text
