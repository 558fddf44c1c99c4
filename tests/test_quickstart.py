"""The first run a newcomer makes: no database configured, so pgq starts the
embedded PostgreSQL, migrates it and enqueues; and the deployment files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import pgq
from pgq.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # The embedded server's Unix socket path must stay under ~100 characters.
    folder = Path(tempfile.mkdtemp(prefix="pgqqs-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}


@pytest.mark.slow
def test_demo_on_embedded_postgres(short_tmp: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgq", "demo"],
        cwd=short_tmp,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "embedded PostgreSQL" in result.stdout
    assert "enqueued jobs 1, 2, 3, 4, 5" in result.stdout
    # The demo's worker ran them all: four completed (one after a retry), one failed for good.
    table = result.stdout.split("running a worker until they finish", 1)[1]
    assert table.count(" completed ") == 4 and table.count(" failed ") == 1
    assert (short_tmp / ".pgq" / "pg" / "PG_VERSION").read_text().strip() == "18"
    # A second command finds the same data (the server stopped and starts again).
    listing = subprocess.run(
        [sys.executable, "-m", "pgq", "jobs", "list", "--json"],
        cwd=short_tmp,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count('"task"') == 5


@pytest.mark.slow
def test_app_without_url_uses_embedded_and_migrates(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PGQ_"):
            monkeypatch.delenv(name)
    app = pgq.App(data_dir=short_tmp / "data")
    assert app.uses_embedded
    job_id = app.enqueue("hello", {"name": "world"})
    job = app.get_job(job_id)
    assert job is not None and job.args == {"name": "world"}
    app.close()


def test_docker_compose_services_and_commands() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "worker"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    known = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for name in ("migrate", "worker"):
        command = services[name]["command"]
        assert command[0] == "pgq" and command[1] in known, f"{name}: unknown command {command}"
        assert services[name]["environment"]["PGQ_DATABASE_URL"].startswith("postgresql://")
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # The worker's app path names a module that exists in this repository.
    module, _, attribute = services["worker"]["command"][2].partition(":")
    assert (ROOT / (module.replace(".", "/") + ".py")).exists() and attribute == "app"
    assert (ROOT / "Dockerfile").exists()
