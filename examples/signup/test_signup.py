"""examples/signup: the API and one worker per queue as real processes, started with the README's
commands; and its docker-compose file, which cannot run here, checked for services and commands."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from psycopg.rows import dict_row

from pgq.cli import build_parser
from tests.example_services import Service, free_port
from tests.processes import ROOT, wait_for

EXAMPLE = ROOT / "examples" / "signup"


def test_compose_services_commands_and_secrets() -> None:
    compose = yaml.safe_load((EXAMPLE / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "api", "worker-emails", "worker-crm"} <= set(services)
    known = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert services["migrate"]["command"][:2] == ["pgq", "migrate"] and "migrate" in known
    api = services["api"]["command"]
    assert api[0] == "uvicorn" and api[1] == "examples.signup.api:api" and (EXAMPLE / "api.py").exists()
    for queue in ("emails", "crm"):
        service = services[f"worker-{queue}"]
        assert service["command"] == ["python", "-m", "examples.signup.worker", queue]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert int(service["stop_grace_period"].rstrip("s")) > 30  # longer than PGQ_SHUTDOWN_TIMEOUT
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Secrets only from the environment: every password or key is a ${VARIABLE}.
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            if any(word in variable for word in ("PASSWORD", "KEY", "DATABASE_URL")):
                assert "${" in value, f"{name}: {variable} is written in the file"
    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    assert "'.[examples]'" in dockerfile and (ROOT / "pyproject.toml").read_text().count("examples = [") == 1


def jobs_of(database_url: str, *ids: int) -> dict[int, dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute("select * from pgq.all_jobs where id = any(%s)", [list(ids)]).fetchall()
    return {row["id"]: row for row in rows}


def finished(database_url: str, *ids: int) -> dict[int, dict[str, Any]] | None:
    jobs = jobs_of(database_url, *ids)
    return jobs if len(jobs) == len(ids) and all(job["finished_at"] for job in jobs.values()) else None


@pytest.mark.slow
def test_signup_end_to_end(
    database_url: str,
    serve: Callable[..., httpx.Client],
    tmp_path: Path,
) -> None:
    with psycopg.connect(database_url) as conn:  # an old failure waits in the dead-letter set
        conn.execute(
            "insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,"
            " run_at, created_at, finished_at) values (1000, 'emails', 'send_welcome_email', '{\"user_id\": 0}',"
            " 0, 'failed', 5, 5, now(), now(), now())"
        )
    client = serve("examples.signup.api:api")

    def worker(queue: str) -> Service:
        args = ["-m", "examples.signup.worker", queue]
        return Service(database_url, args, tmp_path / f"worker-{queue}.log", env={"CRM_DELAY": "2"})

    # No worker yet: the health check says so (what a load balancer or an uptime check reads).
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["workers"] == {"crm": 0, "emails": 0}
    assert health.json()["database"] == "ok"

    # A double submit, while its jobs wait (the workers are not started yet): one user, one job each.
    ada = client.post("/signup", json={"email": "ada@example.com", "name": "Ada"}).json()
    again = client.post("/signup", json={"email": "ada@example.com", "name": "Ada"}).json()
    assert again == ada
    emails, crm = worker("emails"), worker("crm")
    try:
        flaky = client.post("/signup", json={"email": "ada+flaky@example.com", "name": "Ada"}).json()
        bad = client.post("/signup", json={"email": "bob@nowhere.invalid", "name": "Bob"}).json()
        welcome = [r["jobs"]["welcome_email"] for r in (ada, flaky, bad)]
        crm_jobs = [r["jobs"]["crm_sync"] for r in (ada, flaky, bad)]

        # SIGTERM while the CRM worker (2 slots) runs two 2-second jobs: they finish, the third waits.
        wait_for(
            lambda: sum(j["status"] == "running" for j in jobs_of(database_url, *crm_jobs).values()) == 2,
            30,
            "crm jobs running",
        )
        crm.process.send_signal(signal.SIGTERM)
        assert crm.process.wait(30) == 0, crm.output()
        after = jobs_of(database_url, *crm_jobs)
        assert sorted(j["status"] for j in after.values()) == ["completed", "completed", "pending"], crm.output()
        assert all(j["attempts"] == 1 for j in after.values() if j["status"] == "completed")
        assert "finishing running jobs" in crm.output()

        done = wait_for(lambda: finished(database_url, *welcome), 30, "welcome emails")
        assert done[welcome[0]]["status"] == "completed" and done[welcome[0]]["attempts"] == 1
        # A 503 is transient: retried, then sent.
        assert done[welcome[1]]["status"] == "completed" and done[welcome[1]]["attempts"] == 2
        assert done[welcome[1]]["errors"][0]["type"] == "MailerUnavailable"
        # An invalid address is permanent: failed at the first attempt.
        assert done[welcome[2]]["status"] == "failed" and done[welcome[2]]["attempts"] == 1
        assert done[welcome[2]]["errors"][0]["permanent"] is True
        assert done[welcome[0]]["args"] == {"user_id": ada["user_id"]}  # ids, not blobs

        # Submitted again after it ran: the key is free, but the handler sees the mail was sent.
        later = client.post("/signup", json={"email": "ada@example.com", "name": "Ada"}).json()["jobs"]["welcome_email"]
        assert later != welcome[0]
        assert wait_for(lambda: finished(database_url, later), 15, "re-submit")[later]["result"] == "already sent"

        log = emails.output()
        assert "1 failed jobs in the dead-letter set" in log and "1000 send_welcome_email" in log
        assert f"job {welcome[1]} send_welcome_email attempt 1 failed (MailerUnavailable), retry in" in log
        assert f"job {welcome[2]} send_welcome_email failed for good: PermanentError" in log
        assert f"job {welcome[0]} send_welcome_email done in" in log
    finally:
        emails.stop()
        crm.stop()


@pytest.mark.slow
def test_one_command_runs_the_api_and_both_workers(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    everything = Service(
        database_url,
        ["-m", "examples.signup"],
        tmp_path / "signup.log",
        env={"PORT": str(port), "CRM_DELAY": "0", "PGQ_LOG_FORMAT": "json"},
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:

        def healthy() -> dict[str, Any] | None:
            assert everything.process.poll() is None, everything.output()
            try:
                answer = client.get("/health")
            except httpx.TransportError:
                return None
            return answer.json() if answer.status_code == 200 else None

        health = wait_for(healthy, 60, "the API and both workers")
        assert health["status"] == "ok" and health["workers"] == {"crm": 1, "emails": 1}
        assert set(health["backlog"]) == {"crm", "emails"}

        # The seed's form and answer.
        seed = client.post("/signup", json={"userId": "u-42", "email": "grace@example.com"}).json()
        assert seed["success"] is True and seed["jobId"] == seed["jobs"]["welcome_email"]
        # Each failure kind, on demand.
        transient = client.post("/simulate-error", json={"kind": "transient"}).json()
        permanent = client.post("/simulate-error", json={"kind": "permanent"}).json()
        assert client.post("/simulate-error", json={"kind": "meteor"}).status_code == 422
        ids = [seed["jobId"], transient["jobId"], permanent["jobId"]]
        done = wait_for(lambda: finished(database_url, *ids), 60, "the three welcome emails")
        assert done[seed["jobId"]]["status"] == "completed"
        assert done[transient["jobId"]]["status"] == "completed" and done[transient["jobId"]]["attempts"] == 2
        assert done[permanent["jobId"]]["status"] == "failed" and done[permanent["jobId"]]["attempts"] == 1
        # The workers log JSON lines (PGQ_LOG_FORMAT=json), the job events among them.
        wait_for(
            lambda: f"job {permanent['jobId']} send_welcome_email failed for good" in everything.output(), 15, "log"
        )
        lines = [json.loads(line) for line in everything.output().splitlines() if line.startswith("{")]
        events = [line["message"] for line in lines if line.get("logger") == "signup.events"]
        assert any(f"job {seed['jobId']} send_welcome_email active" in m for m in events), events
        assert any(f"job {transient['jobId']} send_welcome_email attempt 1 failed" in m for m in events), events
    finally:
        client.close()
        everything.process.send_signal(signal.SIGTERM)
        code = everything.process.wait(60)
    assert code == 0, f"exit {code}\n" + everything.output()[-3000:]
