"""pgq side by side with its ceilings and its peers, in one run, with issue 14's targets met or not.

    python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]'
    .venv-bench/bin/python benchmarks/compare.py [--database-url URL] [--quick] [--rounds N] [--ageing]

(a venv of its own: PgQueuer installs a command also named ``pgq``; compare.py runs pgq's worker
as ``python -m pgq worker``, so it never picks that one up).

Without a URL it starts the embedded PostgreSQL (durable defaults: fsync on) in a temporary folder.
Each contender gets a fresh database on that server, dropped afterwards. The Redis peers (Celery,
RQ, BullMQ) each get a redis-server of their own with AOF everysec; a peer that cannot run here
(no package, no redis-server, no Node) is skipped with the reason, never a crash.

Rows (benchmarks/README.md explains each):

- the ceilings: a tight asyncio + psycopg loop with pgq's job life and no pgq code (10 and 100
  slots, 2 processes), a raw binary COPY, a plain insert + commit, the plain-SQL job life;
- pgq through its public API and the ``pgq worker`` command;
- PgQueuer and Procrastinate on the same server; Celery, RQ and BullMQ on Redis.

Drains are timed by the database's own timestamps (first ``started_at`` to last ``finished_at``)
where the contender writes them, else from the broker (see the README). ``--rounds N`` runs the
drains and the enqueue rows N times, alternating the order of the contenders, and reports each
one's median and spread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE), str(HERE / "peers")]

from cmp import pg_peers, pgq_rows, redis_peers, tight_loop  # noqa: E402
from cmp.common import Result, Skipped, fresh_database, p50, pct  # noqa: E402
from cmp.targets import Rows, checks, context  # noqa: E402

import pgq  # noqa: E402

GROUPS = ("plain", "drains", "flow", "transactional", "procrastinate", "enqueue", "latency", "redis")


class Run:
    """Measures rows one after the other; keeps every result by key, in order of first measure."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.names: dict[str, str] = {}
        self.results: dict[str, list[Result]] = {}
        self.skipped: dict[str, str] = {}

    def measure(self, key: str, name: str, fn: Callable[[str], Result] | Callable[[], Result], db: bool = True) -> None:
        self.names.setdefault(key, name)
        drop: Callable[[], None] | None = None
        try:
            if db:
                url, drop = fresh_database(self.server)
                result = fn(url)  # type: ignore[call-arg]
            else:
                result = fn()  # type: ignore[call-arg]
        except Skipped as exc:
            self.skipped[key] = str(exc)
            print(f"  {name}: skipped: {exc}", file=sys.stderr, flush=True)
            return
        except Exception as exc:  # one failing row must not lose the run's other figures
            traceback.print_exc()
            result = Result(note=f"failed: {type(exc).__name__}: {exc}"[:300])
        finally:
            if drop is not None:
                drop()
        self.results.setdefault(key, []).append(result)
        shown = [f"{result.jobs_per_s:,.0f} jobs/s" if result.jobs_per_s else ""]
        if result.lags_ms:
            shown.append(f"p50 {p50(result.lags_ms):.2f} ms, p99 {pct(result.lags_ms, 0.99):.2f} ms")
        print(f"  {name}: {', '.join(x for x in [*shown, result.note] if x)}", file=sys.stderr, flush=True)

    def table(self) -> str:
        lines = [
            "| row | jobs/s | client CPU ms/job | server CPU ms/job | p50 ms | p95 ms | p99 ms | note |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        rows = Rows(self.results)
        for key, name in self.names.items():
            if key in self.skipped:
                lines.append(f"| {name} | | | | | | | skipped: {self.skipped[key]} |")
                continue
            results = self.results.get(key, [])
            if not results:
                continue
            rates = rows.rates(key)
            lags = rows.lags(key)
            client = [r.client_cpu_ms for r in results if r.client_cpu_ms is not None]
            server = [r.server_cpu_ms for r in results if r.server_cpu_ms is not None]
            notes = list(dict.fromkeys(r.note for r in results if r.note))
            if len(results) > 1 and rates:
                spread = rows.spread(key)
                shown = ", ".join(f"{x:,.0f}" for x in rates)
                notes.insert(0, f"median of {len(rates)} rounds ({shown}; spread {spread:.0%})")
            cells = [
                _number(rows.rate(key)),
                _number(p50(client) if client else None, 3),
                _number(p50(server) if server else None, 3),
                _number(p50(lags) if lags else None, 2),
                _number(pct(lags, 0.95) if lags else None, 2),
                _number(pct(lags, 0.99) if lags else None, 2),
            ]
            lines.append(f"| {name} | {' | '.join(cells)} | {'; '.join(notes)} |")
        return "\n".join(lines)


def _number(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="a server to use (a fresh database per contender); default: embedded")
    parser.add_argument("--quick", action="store_true", help="fewer jobs: a rough figure in a few minutes")
    parser.add_argument(
        "--rounds", type=int, help="run the drains and enqueues this many times, alternating (default 1 quick, 2)"
    )
    parser.add_argument(
        "--ageing", action="store_true", help="also the ageing targets (1,000,000 jobs, 10,000,000 history rows: slow)"
    )
    parser.add_argument("--skip", default="", help=f"comma-separated groups to leave out: {', '.join(GROUPS)}")
    parser.add_argument("--json", metavar="FILE", help="write every result and check to FILE")
    options = parser.parse_args()
    skip = {g.strip() for g in options.skip.split(",") if g.strip()}
    if unknown := skip - set(GROUPS):
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; known: {', '.join(GROUPS)}")

    if options.database_url:
        server = options.database_url
    else:
        folder = Path(tempfile.mkdtemp(prefix="pgqcmp-", dir="/tmp"))
        server = pgq.App(data_dir=folder).url
    quick = options.quick
    rounds = options.rounds or (1 if quick else 2)
    n = 10_000 if quick else 30_000  # the drains: 30,000 jobs
    singles = 1_000 if quick else 3_000
    # Procrastinate, Celery and RQ drain at hundreds to a few thousand jobs/s: a rate needs fewer jobs.
    slow = 2_000 if quick else 5_000
    run = Run(server)
    print(f"server: {server.split('@')[-1]}; {n:,} jobs per drain, {rounds} round(s)", file=sys.stderr)

    if "plain" not in skip:
        run.measure(
            "plain_1_1", "plain SQL, 1 job/transaction, 1 connection", lambda u: tight_loop.plain_sql(u, singles, 1, 1)
        )
        run.measure(
            "plain_1_16",
            "plain SQL, 1 job/transaction, 16 connections",
            lambda u: tight_loop.plain_sql(u, singles * 4, 1, 16),
        )
        run.measure(
            "plain_100_1", "plain SQL, 100 jobs/transaction, 1 connection", lambda u: tight_loop.plain_sql(u, n, 100, 1)
        )
        run.measure(
            "plain_100_16",
            "plain SQL, 100 jobs/transaction, 16 connections",
            lambda u: tight_loop.plain_sql(u, n, 100, 16),
        )

    if "drains" not in skip:
        # Pairs at equal slots, then PgQueuer; every other round runs each pair the other way round.
        pairs: list[list[tuple[str, str, Callable[[str], Result]]]] = [
            [
                ("tight_10", "tight loop, 10 slots", lambda u: tight_loop.tight_drain(u, n, 10)),
                ("pgq_10", "pgq worker --concurrency 10", lambda u: pgq_rows.pgq_drain(u, n, 10)),
            ],
            [
                ("tight_100", "tight loop, 100 slots", lambda u: tight_loop.tight_drain(u, n, 100)),
                (
                    "pgq_100",
                    "pgq worker at its defaults (concurrency 100: its tasks are async)",
                    lambda u: pgq_rows.pgq_drain(u, n),
                ),
            ],
            [
                ("tight_2p", "tight loop, 2 processes of 100 slots", lambda u: tight_loop.tight_drain(u, n, 100, 2)),
                ("pgq_2p", "pgq worker --processes 2 --concurrency 100", lambda u: pgq_rows.pgq_drain(u, n, 100, 2)),
            ],
            [
                ("pgqueuer_100", "PgQueuer, batch_size 100", lambda u: pg_peers.pgqueuer_drain(u, n, 100)),
                (
                    "pgqueuer_10",
                    "PgQueuer at its defaults (batch_size 10)",
                    lambda u: pg_peers.pgqueuer_drain(u, n, 10),
                ),
            ],
        ]
        for number in range(rounds):
            if rounds > 1:
                print(f"round {number + 1} of {rounds}", file=sys.stderr)
            for pair in pairs:
                for key, name, fn in pair if number % 2 == 0 else reversed(pair):
                    run.measure(key, name, fn)

    if "flow" not in skip:
        flow_jobs = min(n, 10_000)
        run.measure(
            "pgq_5", "pgq worker --concurrency 5, queue without limits", lambda u: pgq_rows.pgq_drain(u, flow_jobs, 5)
        )
        run.measure(
            "pgq_limit5",
            "pgq worker at its defaults, queue limited to 5 at once",
            lambda u: pgq_rows.pgq_drain(u, flow_jobs, limit=5),
        )
        run.measure(
            "pgq_groups",
            "pgq worker at its defaults, 1,000 groups at group concurrency 1",
            lambda u: pgq_rows.pgq_drain(u, flow_jobs, groups=1000),
        )

    if "transactional" not in skip:
        # Transactional no-op jobs (issue 21): a transaction per job that also completes it,
        # against the plain drains above at the same concurrency.
        tx_jobs = min(n, 10_000)
        run.measure(
            "pgq_tx_10",
            "pgq worker --concurrency 10, transactional no-op tasks",
            lambda u: pgq_rows.pgq_drain(u, tx_jobs, 10, task="noop_tx"),
        )
        run.measure(
            "pgq_tx_100",
            "pgq worker --concurrency 100, transactional no-op tasks",
            lambda u: pgq_rows.pgq_drain(u, tx_jobs, 100, task="noop_tx"),
        )

    if "procrastinate" not in skip:
        run.measure(
            "procrastinate_1",
            "Procrastinate at its defaults (concurrency 1)",
            lambda u: pg_peers.procrastinate_drain(u, slow, 1),
        )
        # Its best of those tried: at concurrency 10 its default pool (4 connections) halves the rate,
        # concurrency 100 with a pool of 20 is slower than 10 with 10.
        run.measure(
            "procrastinate_10",
            "Procrastinate, concurrency 10, pool 10",
            lambda u: pg_peers.procrastinate_drain(u, slow, 10, 10),
        )

    if "enqueue" not in skip:
        # Short rows, so each group of ratios runs in every round too, alternating like the drains.
        groups: list[list[tuple[str, str, Callable[[str], Result]]]] = [
            [
                ("copy", "raw binary COPY into the jobs' shape", lambda u: tight_loop.copy_enqueue(u, n)),
                ("pgq_many", "pgq enqueue_many, 1,000 per call", lambda u: pgq_rows.pgq_enqueue_many(u, n)),
                (
                    "pgqueuer_many",
                    "PgQueuer batch enqueue, 1,000 per call",
                    lambda u: pg_peers.pgqueuer_enqueue_many(u, n),
                ),
            ],
            [
                ("insert", "plain insert + commit, one connection", lambda u: tight_loop.insert_commit(u, singles)),
                (
                    "pgq_one",
                    "pgq app.enqueue, one job per call, 1 thread",
                    lambda u: pgq_rows.pgq_enqueue_one(u, singles),
                ),
                (
                    "pgq_8",
                    "pgq app.enqueue, one job per call, 8 threads",
                    lambda u: pgq_rows.pgq_enqueue_one(u, singles * 2, 8),
                ),
            ],
        ]
        for number in range(rounds):
            for group in groups:
                for key, name, fn in group if number % 2 == 0 else reversed(group):
                    run.measure(key, name, fn)
        if "procrastinate" not in skip:
            run.measure(
                "procrastinate_many",
                "Procrastinate batch defer, 1,000 per call",
                lambda u: pg_peers.procrastinate_enqueue_many(u, n),
            )

    if "latency" not in skip:
        run.measure(
            "tight_latency", "tight loop idle latency, LISTEN/NOTIFY (200 jobs, 20 ms apart)", tight_loop.tight_latency
        )
        run.measure("pgq_latency", "pgq idle latency (200 jobs, 20 ms apart)", pgq_rows.pgq_latency)
        drained = Rows(run.results).rate("pgq_100")
        load_rate = drained / 2 if drained else 1000.0
        seconds = 3.0 if quick else 10.0
        run.measure(
            "pgq_latency_load",
            "pgq latency under load at half its default drain rate",
            lambda u: pgq_rows.pgq_latency_under_load(u, load_rate, seconds),
        )
        run.measure(
            "tight_latency_load",
            "tight loop latency under the same load",
            lambda u: tight_loop.tight_latency_under_load(u, load_rate, seconds),
        )
        run.measure("pgqueuer_latency", "PgQueuer idle latency (200 jobs, 20 ms apart)", pg_peers.pgqueuer_latency)

    if "redis" not in skip:
        run.measure("celery", "Celery on Redis (AOF everysec)", lambda: redis_peers.celery_drain(slow), db=False)
        run.measure("rq", "RQ on Redis (AOF everysec)", lambda: redis_peers.rq_drain(slow // 2), db=False)
        run.measure("bullmq", "BullMQ on Redis (AOF everysec)", lambda: redis_peers.bullmq_drain(n), db=False)
        run.measure(
            "celery_latency", "Celery idle latency (200 jobs, 20 ms apart)", redis_peers.celery_latency, db=False
        )
        run.measure("rq_latency", "RQ idle latency (200 jobs, 20 ms apart)", redis_peers.rq_latency, db=False)
        run.measure(
            "bullmq_latency", "BullMQ idle latency (200 jobs, 20 ms apart)", redis_peers.bullmq_latency, db=False
        )

    if options.ageing:
        ageing(run, n, quick)

    rows = Rows(run.results)
    found = checks(rows)
    print("\n" + run.table())
    print("\nIssue 14's targets (ratios of this run's rows):\n")
    print("| target | value | target | verdict | detail |\n| --- | --- | --- | --- | --- |")
    for check in found:
        print(check.line())
    print("\nWhere pgq stands (no target):")
    print("\n".join(context(rows)))
    if options.json:
        report = {
            "server": server.split("@")[-1],
            "options": {"quick": quick, "rounds": rounds, "jobs": n, "ageing": options.ageing},
            "rows": {
                key: {"name": run.names[key], "results": [r.__dict__ for r in run.results.get(key, [])]}
                for key in run.names
            },
            "skipped": run.skipped,
            "checks": [check.__dict__ for check in found],
        }
        Path(options.json).write_text(json.dumps(report, indent=2, default=str))


def ageing(run: Run, n: int, quick: bool) -> None:
    """One database through the ageing sequence (pgq_rows.pgq_ageing); its four rows."""
    churn, history = (100_000, 1_000_000) if quick else (1_000_000, 10_000_000)
    if quick:
        print(
            f"ageing at a tenth of the issue's scale under --quick ({churn:,} jobs, {history:,} rows)", file=sys.stderr
        )
    url, drop = fresh_database(run.server)
    names = {
        "fresh": ("ageing_fresh", "ageing: fresh drain, pgq worker at its defaults"),
        "rss": ("ageing_rss", f"ageing: worker RSS over {churn:,} jobs"),
        "churned": ("ageing_churned", f"ageing: drain after {churn:,} jobs passed through jobs"),
        "history": ("ageing_history", f"ageing: drain with {history:,} more rows in job_history"),
    }
    try:
        results = pgq_rows.pgq_ageing(url, n, churn, history, lambda line: print(line, file=sys.stderr, flush=True))
    except Exception as exc:
        traceback.print_exc()
        results = {"fresh": Result(note=f"failed: {type(exc).__name__}: {exc}"[:300])}
    finally:
        drop()
    for step, (key, name) in names.items():
        if step in results:
            run.names[key] = name
            run.results.setdefault(key, []).append(results[step])


if __name__ == "__main__":
    main()
