"""Two versions of pgq's worker, drained alternately: the worker's CPU per job and the rate.

    python benchmarks/ab_drain.py --a /tmp/old/src --b src [--database-url URL]
                                  [--jobs 60000] [--concurrency 100] [--pairs 5]

On a shared machine a whole drain's rate moves by 30 % from one minute to the next, more than
most changes to the worker's hot path are worth. This script narrows that three ways:

- the two versions run in pairs, A B then B A, so that a slow minute falls on both;
- besides the rate it reads what the drain cost a job in CPU, as ``compare.py`` does
  (``cmp.common.watch_drain``): the worker process's own and its database's backends', from
  the first finished job to the empty queue. What one version's code costs a job moves less
  than the rate when the machine is busy;
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
from cmp.common import BENCHMARKS, Result, python_env, stop_processes, watch_drain
from cmp.pgq_rows import DRAIN

DATABASE = "pgq_ab_drain"
FILL = """
import sys
import pgq
from cmp.pgq_tasks import app
app.enqueue_many([pgq.JobSpec("noop", {"i": i}) for i in range(int(sys.argv[1]))])
app.close()
"""


def one_drain(server: str, src: Path, jobs: int, concurrency: int) -> Result:
    """One drain by the pgq in ``src``: its rate, and the worker's and the server's CPU a job."""
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"drop database if exists {DATABASE}")
        conn.execute(f"create database {DATABASE}")
    url = f"{server}/{DATABASE}"
    # This version's src/ alone ahead of benchmarks/: python_env would put this checkout's first.
    env = python_env(PYTHONPATH=f"{src}{os.pathsep}{BENCHMARKS}", PGQ_DATABASE_URL=url, PGQ_EVENT_LOOP="asyncio")
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
        subprocess.run([sys.executable, "-c", FILL, str(jobs)], env=env, check=True)
        result = watch_drain(url, DRAIN, [worker], jobs, timeout=max(120.0, jobs / 200))
    finally:
        stop_processes([worker])
    if result.note:
        raise RuntimeError(f"the drain of {src} went wrong: {result.note}")
    return result


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
    runs: dict[str, list[Result]] = {"A": [], "B": []}
    for pair in range(options.pairs):
        for name in ("A", "B") if pair % 2 == 0 else ("B", "A"):
            result = one_drain(server, versions[name], options.jobs, options.concurrency)
            runs[name].append(result)
            print(f"pair {pair + 1} {name}: {described(result)}", flush=True)
    medians = {name: median_of(results) for name, results in runs.items()}
    for name in ("A", "B"):
        print(f"{name} ({versions[name]}): median {described(medians[name])}")
    a, b = medians["A"], medians["B"]
    print(
        f"B / A: worker CPU a job {ratio(b.client_cpu_ms, a.client_cpu_ms)}, "
        f"server CPU a job {ratio(b.server_cpu_ms, a.server_cpu_ms)}, rate {ratio(b.jobs_per_s, a.jobs_per_s)}"
    )
    # When the machine drifts during the run (every rate falling by a third over ten
    # minutes), the medians of each side mix fast and slow minutes; the ratio within each
    # pair, a minute apart, does not.
    pairs = [within_pair(ra, rb) for ra, rb in zip(runs["A"], runs["B"], strict=True)]
    worker, server_cpu, rate = ([p[i] for p in pairs] for i in range(3))
    faster = sum(1 for value in rate if (value or 0) > 1)
    print(
        f"B / A within each pair, median: worker CPU a job {median_ratio(worker)}, "
        f"server CPU a job {median_ratio(server_cpu)}, rate {median_ratio(rate)} (B faster in {faster} of {len(rate)})"
    )


def within_pair(a: Result, b: Result) -> tuple[float | None, float | None, float | None]:
    """B's figures over A's, in one pair."""
    return (
        quotient(b.client_cpu_ms, a.client_cpu_ms),
        quotient(b.server_cpu_ms, a.server_cpu_ms),
        quotient(b.jobs_per_s, a.jobs_per_s),
    )


def median_ratio(values: list[float | None]) -> str:
    middle = median_known(values)
    return "n/a" if middle is None else f"{middle:.2f}"


def median_of(results: list[Result]) -> Result:
    """Each figure's median over the runs that have it (a server CPU reading may be missing)."""
    return Result(
        median_known([r.jobs_per_s for r in results]),
        median_known([r.client_cpu_ms for r in results]),
        median_known([r.server_cpu_ms for r in results]),
    )


def median_known(values: list[float | None]) -> float | None:
    """The median of the values that were read (None: none was)."""
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def quotient(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None or a == 0 else b / a


def described(result: Result) -> str:
    def us(ms: float | None) -> str:
        return "n/a" if ms is None else f"{ms * 1000:.1f} µs"

    rate = "n/a" if result.jobs_per_s is None else f"{result.jobs_per_s:,.0f} jobs/s"
    return f"worker {us(result.client_cpu_ms)}, server {us(result.server_cpu_ms)} CPU a job, {rate}"


def ratio(b: float | None, a: float | None) -> str:
    value = quotient(b, a)
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
