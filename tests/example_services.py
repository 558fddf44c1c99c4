"""The examples' processes in tests: an example's API under uvicorn, or one of its scripts, started
the way its README says, against the test's database. examples/conftest.py gives every example's
tests the ``serve`` fixture; ``Service`` and ``free_port`` are imported where a test starts its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, wait_for


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
