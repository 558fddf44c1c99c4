"""Two versions of pgq's worker, drained alternately: the worker's CPU per job and the rate.

    python benchmarks/ab_drain.py --a /tmp/old/src --b src [--database-url URL]
                                  [--jobs 60000] [--concurrency 100] [--pairs 5]

On a shared machine a whole drain's rate moves by 30 % from one minute to the next, more than
most changes to the worker's hot path are worth. This script narrows that three ways:

- the two versions run in pairs, A B then B A, so that a slow minute falls on both;
- besides the rate it reads the worker process's own CPU time (``/proc``, user + system) from
  the moment the jobs are committed to the moment the queue is empty: what one version's code
  costs a job, which moves less than the rate when the machine is busy;
- it prints every run and the medians, so that the spread is seen, not hidden.

Each run gets a fresh database, migrated by its own version (``python -m pgq migrate``), and
starts ``pgq worker cmp.pgq_tasks:app`` from its own ``src/`` on the empty queue. Once the worker
is registered, the jobs (no-op) are committed in one ``enqueue_many`` (one transaction, so the
drain starts after the fill) by that version's code; the rate comes from the database's
timestamps, as in ``compare.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

BENCHMARKS = Path(__file__).resolve().parent
DATABASE = "pgq_ab_drain"
FILL = """
import sys
import pgq
from cmp.pgq_tasks import app
app.enqueue_many([pgq.JobSpec("noop", {"i": i}) for i in range(int(sys.argv[1]))])
app.close()
"""


def environment(src: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}
    env.update(PYTHONPATH=f"{src}{os.pathsep}{BENCHMARKS}", PGQ_DATABASE_URL=url, PGQ_EVENT_LOOP="asyncio")
    return env


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_drain(server: str, src: Path, jobs: int, concurrency: int) -> tuple[float, float]:
    """(worker CPU µs per job, jobs/s) of one drain by the pgq in ``src``."""
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"drop database if exists {DATABASE}")
        conn.execute(f"create database {DATABASE}")
    url = f"{server}/{DATABASE}"
    env = environment(src, url)
    subprocess.run([sys.executable, "-m", "pgq", "migrate"], env=env, check=True, capture_output=True)
    command = [sys.executable, "-m", "pgq", "worker", "cmp.pgq_tasks:app", "--concurrency", str(concurrency)]
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while not conn.execute("select exists (select from pgq.workers where status = 'running')").fetchone()[0]:  # type: ignore[index]
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError(f"the worker of {src} did not start")
                time.sleep(0.1)
            time.sleep(1.0)  # its sessions opened and warmed
            before = cpu_seconds(worker.pid)
            subprocess.run([sys.executable, "-c", FILL, str(jobs)], env=env, check=True)
            while conn.execute("select exists (select from pgq.jobs)").fetchone()[0]:  # type: ignore[index]
                time.sleep(0.01)
            used = cpu_seconds(worker.pid) - before
            (rate,) = conn.execute(
                "select count(*) / extract(epoch from max(finished_at) - min(started_at)) from pgq.job_history"
            ).fetchone()  # type: ignore[misc]
    finally:
        worker.terminate()
        worker.wait(30)
    return used / jobs * 1e6, float(rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="the src/ folder of version A")
    parser.add_argument("--b", type=Path, required=True, help="the src/ folder of version B")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432", help="a server (no database)")
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=5)
    options = parser.parse_args()
    server = options.database_url.rstrip("/")
    versions = {"A": options.a.resolve(), "B": options.b.resolve()}
    runs: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for pair in range(options.pairs):
        for name in ("A", "B") if pair % 2 == 0 else ("B", "A"):
            cpu, rate = one_drain(server, versions[name], options.jobs, options.concurrency)
            runs[name].append((cpu, rate))
            print(f"pair {pair + 1} {name}: {cpu:6.1f} µs CPU a job, {rate:8,.0f} jobs/s", flush=True)
    medians = {
        name: (statistics.median(c for c, _ in r), statistics.median(j for _, j in r)) for name, r in runs.items()
    }
    for name in ("A", "B"):
        cpu, rate = medians[name]
        print(f"{name} ({versions[name]}): median {cpu:.1f} µs CPU a job, {rate:,.0f} jobs/s")
    print(f"B / A: CPU a job {medians['B'][0] / medians['A'][0]:.2f}, rate {medians['B'][1] / medians['A'][1]:.2f}")


if __name__ == "__main__":
    main()
