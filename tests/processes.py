"""Helpers for tests that start real `pgq worker` processes, and for waiting on them (or on a
sweeper's election)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from pgq.maintenance.sweeper import Sweeper, SweepResult

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.apps.recording:app"
#: Fast heartbeats and sweeps, so that deaths are noticed in seconds.
FAST_MAINTENANCE = {
    "PGQ_HEARTBEAT_INTERVAL": "0.5",
    "PGQ_HEARTBEAT_TIMEOUT": "3",
    "PGQ_SWEEP_INTERVAL": "1",
}


class WorkerProcess:
    def __init__(
        self, database_url: str, *args: str, log: Path, app: str = APP, env: dict[str, str] | None = None
    ) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}
        full_env.update(PGQ_DATABASE_URL=database_url, PGQ_HEARTBEAT_INTERVAL="0.5", PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pgq", "worker", app, "--poll-interval", "0.5", *args],
            cwd=ROOT,
            env=full_env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"worker did not exit within {timeout} s; log:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def stop_all(workers: list[WorkerProcess], *, died_ok: bool = False) -> None:
    """SIGTERM to every worker still running; each must exit within 60 s with code 0. A worker
    that had already exited passes only with ``died_ok`` (a plain worker that ran a job which
    killed its own process, say)."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.signal(signal.SIGTERM)
        elif died_ok:
            continue
        assert worker.wait(60) == 0, worker.output()[-3000:]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


async def sweep_until_leader(sweeper: Sweeper, what: str, within: float = 5.0) -> SweepResult:
    """Sweep every 0.1 s until ``sweeper`` leads: after the leader closed its lock session, the
    server ends that session (and frees the lock) a moment later, not at once."""
    deadline = time.monotonic() + within
    while True:
        result = await sweeper.run_once()
        if result.leader:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not the sweeper within {within} s")
        await asyncio.sleep(0.1)


def count(conn: psycopg.Connection[Any], sql: str, *params: Any) -> int:
    return int(conn.execute(sql, params or None).fetchone()["n"])  # type: ignore[index]


def finished(conn: psycopg.Connection[Any], ids: list[int]) -> int:
    """How many of these jobs are in the history (completed, failed or cancelled)."""
    return count(conn, "select count(*) as n from pgq.job_history where id = any(%s)", ids)


def pgq_cli(database_url: str, *args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    """``python -m pgq ARGS`` against ``database_url``, with no other PGQ_ setting or colour
    choice of the environment leaking in; ``extra`` adds environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_") and k not in ("NO_COLOR", "FORCE_COLOR")}
    env["PGQ_DATABASE_URL"] = database_url
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-m", "pgq", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
