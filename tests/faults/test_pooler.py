"""pgq behind PgBouncer in transaction mode (Debian's `pgbouncer`)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq
from tests.faults.consistency import Counts
from tests.processes import FAST_MAINTENANCE, WorkerProcess, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def bouncer(database_url: str) -> Iterator[str]:
    with run_bouncer(database_url) as url:
        yield url


@contextlib.contextmanager
def run_bouncer(database_url: str) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of ``database_url``; yields its URL."""
    if not Path(PGBOUNCER).exists():
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    folder = Path(tempfile.mkdtemp(prefix="pgqbouncer-", dir="/tmp"))
    port = _free_port()
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={params.get('host') or '127.0.0.1'} port={params.get('port') or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 10\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root. Run it as the user that owns the server's
        # socket folder (the embedded server's socket lives in its private data folder).
        host = str(params.get("host") or "")
        user = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else "postgres"
        shutil.chown(folder, user, user)
        for entry in folder.iterdir():
            shutil.chown(entry, user, user)
        command = ["runuser", "-u", user, "--", *command]
    # A process group of its own, signalled whole: under root, runuser does not pass SIGINT on,
    # and each test left a PgBouncer running after the suite.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: _accepts(port), 20, "pgbouncer to listen")
        yield psycopg.conninfo.make_conninfo(database_url, host="127.0.0.1", port=str(port))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        wait_for(lambda: not _accepts(port), 10, "pgbouncer to stop")
        shutil.rmtree(folder, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_enqueue_claim_and_finish_through_pgbouncer(
    db: Any, database_url: str, bouncer: str, start_worker: Callable[..., WorkerProcess], settle: Callable[..., Counts]
) -> None:
    app = pgq.App(bouncer, pooler="transaction")
    # More enqueues than psycopg's prepare threshold: prepared statements would break here.
    ids = [app.enqueue("record", {"n": i}) for i in range(30)]
    ids += app.enqueue_many([pgq.JobSpec("record", {"n": i}) for i in range(300)])
    assert app.enqueue("record", {"n": 0}, key="once") == app.enqueue("record", {"n": 0}, key="once")
    ids.append(app.enqueue("record", {"n": 0}, key="once"))
    env = {
        **FAST_MAINTENANCE,
        "PGQ_DATABASE_URL": bouncer,
        "PGQ_POOLER": "transaction",
        "PGQ_LISTEN_URL": database_url,
        "RUNS_DATABASE_URL": database_url,
    }
    workers = [start_worker("--concurrency", "10", env=env) for _ in range(2)]
    wait_for(lambda: all((j := app.get_job(i)) is not None and j.is_finished for i in ids), 120, "jobs via pgbouncer")
    # LISTEN goes past the pooler: an idle worker wakes within milliseconds.
    time.sleep(0.5)
    lags = []
    for n in range(5):
        job_id = app.enqueue("record", {"n": n})
        job = wait_for(lambda i=job_id: (j := app.get_job(i)) is not None and j.is_finished and j, 30, "a wake-up")
        lags.append((job.started_at - job.created_at).total_seconds() * 1000)
        ids.append(job_id)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(30) == 0, worker.output()[-2000:]
        assert "Traceback" not in worker.output()
    counts = settle(ids, via="pgbouncer transaction mode", wake_latency_max_ms=round(max(lags), 1))
    assert counts.lost == 0 and counts.overlapping == 0 and counts.completed == len(set(ids))
    assert sorted(lags)[2] < 1000  # the poll interval is 2 s: these were woken by notifications
    app.close()


def test_without_a_direct_url_pgq_says_so_and_polls(
    db: Any, database_url: str, bouncer: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    env = {
        **FAST_MAINTENANCE,
        "PGQ_DATABASE_URL": bouncer,
        "PGQ_POOLER": "transaction",
        "RUNS_DATABASE_URL": database_url,
    }
    worker = start_worker("--poll-interval", "0.5", env=env)
    app = pgq.App(bouncer, pooler="transaction")
    ids = app.enqueue_many([pgq.JobSpec("record", {"n": i}) for i in range(20)])
    wait_for(lambda: all((j := app.get_job(i)) is not None and j.is_finished for i in ids), 60, "jobs by polling")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    log = worker.output()
    assert log.count("no PGQ_LISTEN_URL") == 1 and "is now the sweeper" not in log
    app.close()


def test_migrate_through_pgbouncer(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQ_POOLER", "transaction")
    with run_bouncer(empty_database_url) as url:
        pgq.migrate(url)
        pgq.migrate(url)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("select count(*) from pgq.alembic_version").fetchone() == (1,)


def test_transactional_handlers_through_pgbouncer_without_a_direct_url(
    db: Any, database_url: str, bouncer: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A transactional handler's transaction is one pooled transaction: it works behind a
    transaction pooler with no direct URL (the worker polls), statements never prepared."""
    db.execute("create table effects (job_id bigint not null, attempt int not null, pid int)")
    app = pgq.App(bouncer, pooler="transaction")
    ids = [app.enqueue("transfer", {"seconds": 0}) for _ in range(30)]  # past psycopg's prepare threshold
    env = {
        **FAST_MAINTENANCE,
        "PGQ_DATABASE_URL": bouncer,
        "PGQ_POOLER": "transaction",
        "PGQ_POLL_INTERVAL": "0.2",
        "RUNS_DATABASE_URL": database_url,
    }
    worker = start_worker("--concurrency", "5", env=env)
    wait_for(lambda: all((j := app.get_job(i)) is not None and j.is_finished for i in ids), 120, "jobs via pgbouncer")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()[-2000:]
    assert "Traceback" not in worker.output()
    assert {app.get_job(i).status for i in ids} == {"completed"}  # type: ignore[union-attr]
    effects = db.execute("select job_id, count(*) as n from effects group by job_id").fetchall()
    assert sorted((row["job_id"], row["n"]) for row in effects) == [(i, 1) for i in sorted(ids)]
    app.close()
