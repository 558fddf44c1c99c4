"""Many workers against one PostgreSQL, through PgBouncer in transaction mode (issue 18).

Starts ``--workers`` ``pgq worker`` processes (``--active`` of them serve the queue the jobs go to,
the rest an empty one), all through a PgBouncer in transaction mode with ``PGQ_LISTEN_URL`` past
it, and prints what the issue asks to know:

- the server connections they hold (PgBouncer's pool, plus the direct sessions: LISTEN, and the
  sweeper's lock);
- CPU per idle worker (from /proc, over ``--idle-seconds``) and memory per worker;
- the drain rate of ``--jobs`` no-op jobs;
- latency, enqueue commit to handler start, of jobs enqueued 20 ms apart.

    python benchmarks/many_workers.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Needs the ``pgbouncer`` binary (Debian's package). Nothing here is a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from cmp.common import free_port, proc_cpu, rss_mb
from psycopg.rows import dict_row

import pgq
from pgq.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
DBNAME = "pgq_many_workers"


def start_bouncer(folder: Path, host: str, port: int, pool_size: int) -> tuple[subprocess.Popen[bytes], int]:
    listen = free_port()
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"""[databases]
{DBNAME} = host={host} port={port} dbname={DBNAME}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir = {folder}
auth_type = trust
auth_file = {folder / "users.txt"}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 5000
max_db_connections = {pool_size}
logfile = {folder / "pgbouncer.log"}
"""
    )
    command = [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    bouncer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{listen}/{DBNAME}", connect_timeout=1).close()
            return bouncer, listen
        except psycopg.Error:
            time.sleep(0.1)
    raise SystemExit("pgbouncer did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a server where the benchmark may create a database")
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--active", type=int, default=50, help="workers that serve the queue the jobs go to")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--direct",
        type=int,
        default=None,
        help="workers given PGQ_LISTEN_URL (LISTEN and the sweeper's election, a direct session each); the "
        "others only poll, through the pooler (default: all)",
    )
    parser.add_argument("--pool-size", type=int, default=20, help="PgBouncer's server connections")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    options = parser.parse_args()

    base = psycopg.conninfo.conninfo_to_dict(options.database_url)
    host, port = str(base.get("host") or "127.0.0.1"), int(base.get("port") or 5432)
    with psycopg.connect(options.database_url, autocommit=True) as admin:
        admin.execute(f'drop database if exists "{DBNAME}" with (force)')
        admin.execute(f'create database "{DBNAME}"')
    direct = f"postgresql://postgres@{host}:{port}/{DBNAME}"
    migrate(direct)
    folder = Path(tempfile.mkdtemp(prefix="pgq-many-"))
    bouncer, bouncer_port = start_bouncer(folder, host, port, options.pool_size)
    pooled = f"postgresql://postgres@127.0.0.1:{bouncer_port}/{DBNAME}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}
    env.update(
        PGQ_DATABASE_URL=pooled,
        PGQ_POOLER="transaction",
        PGQ_LISTEN_URL=direct,
        PGQ_POOL_MAX_SIZE="2",
        PYTHONPATH=str(ROOT / "src"),
    )
    direct_count = options.workers if options.direct is None else options.direct
    workers: list[subprocess.Popen[bytes]] = []
    try:
        started = time.monotonic()
        for i in range(options.workers):
            queue = "work" if i < options.active else "idle"
            # The first active workers and the first idle ones LISTEN; the rest poll.
            listens = i < direct_count // 2 or options.active <= i < options.active + direct_count - direct_count // 2
            command = [sys.executable, "-m", "pgq", "worker", "pgq.bench.tasks:app", "--queues", queue]
            workers.append(
                subprocess.Popen(
                    [*command, "--concurrency", str(options.concurrency)],
                    env=env if listens else {k: v for k, v in env.items() if k != "PGQ_LISTEN_URL"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with psycopg.connect(direct, autocommit=True, row_factory=dict_row) as conn:
            deadline = time.monotonic() + 600
            while (
                conn.execute("select count(*) as n from pgq.workers where status = 'running'").fetchone()["n"]
                < options.workers
            ):
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not all register within 10 minutes")
                time.sleep(1)
        print(f"{options.workers} workers registered in {time.monotonic() - started:.0f} s")
        time.sleep(10)  # settle: first heartbeats, elections, schedules

        idle = workers[options.active :]
        before = {w.pid: proc_cpu(w.pid) or 0.0 for w in idle}
        time.sleep(options.idle_seconds)
        per_idle = [((proc_cpu(w.pid) or 0.0) - before[w.pid]) / options.idle_seconds * 1000 for w in idle]
        rss = [rss_mb([w.pid]) for w in workers]
        with psycopg.connect(direct, autocommit=True, row_factory=dict_row) as conn:
            sessions = conn.execute(
                "select coalesce(application_name, '') as name, count(*) as n from pg_stat_activity "
                "where datname = %s group by 1 order by 2 desc",
                [DBNAME],
            ).fetchall()
            server = conn.execute("show max_connections").fetchone()["max_connections"]

        app = pgq.App(direct, auto_migrate=False)
        specs = [pgq.JobSpec("bench_async", {"i": i}, queue="work") for i in range(options.jobs)]
        t0 = time.monotonic()
        for start in range(0, len(specs), 1000):
            app.enqueue_many(specs[start : start + 1000])
        with psycopg.connect(direct, autocommit=True, row_factory=dict_row) as conn:
            while conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"]:
                time.sleep(0.05)
        drain = options.jobs / (time.monotonic() - t0)

        ids = []
        for i in range(200):
            ids.append(app.enqueue("bench_async", {"i": i}, queue="work"))
            time.sleep(0.02)
        time.sleep(2)
        with psycopg.connect(direct, autocommit=True, row_factory=dict_row) as conn:
            waits = [
                float(r["ms"])
                for r in conn.execute(
                    "select extract(epoch from started_at - created_at) * 1000 as ms from pgq.job_history "
                    "where id = any(%s)",
                    [ids],
                ).fetchall()
            ]
        app.close()
        waits.sort()
        print(
            f"workers: {options.workers} ({options.active} serve the jobs' queue, concurrency {options.concurrency}; "
            f"{direct_count} with PGQ_LISTEN_URL, the others poll every 2 s)"
        )
        print(f"PgBouncer transaction pool: {options.pool_size} server connections; server max_connections {server}")
        print("sessions on the server, by application_name:")
        for row in sessions:
            print(f"  {row['n']:5d}  {row['name']}")
        print(f"total sessions: {sum(r['n'] for r in sessions)}")
        print(
            f"CPU per idle worker: median {statistics.median(per_idle):.1f} ms/s, "
            f"max {max(per_idle):.1f} ms/s ({statistics.median(per_idle) / 10:.2f} % of a core)"
        )
        print(f"memory per worker: median {statistics.median(rss):.0f} MB RSS, {sum(rss) / 1024:.1f} GB in all")
        print(f"drain of {options.jobs} no-op jobs: {drain:,.0f} jobs/s")
        if waits:
            p = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))]  # noqa: E731
            print(
                f"latency, commit to start ({len(waits)} jobs 20 ms apart): p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms"
            )
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(40)
            except subprocess.TimeoutExpired:
                worker.kill()
        bouncer.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
