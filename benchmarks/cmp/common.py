"""What every row shares: its result, a fresh database, CPU meters and the watch over a drain."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

BENCHMARKS = Path(__file__).resolve().parent.parent
REPO = BENCHMARKS.parent
PEERS = BENCHMARKS / "peers"


class Skipped(Exception):
    """A contender that cannot run here (a missing package, binary or service): its row says why."""


@dataclass
class Result:
    """One row of the table: a rate and/or latencies, and what it cost per job."""

    jobs_per_s: float | None = None
    client_cpu_ms: float | None = None
    server_cpu_ms: float | None = None
    lags_ms: list[float] = field(default_factory=list)
    note: str = ""
    #: Extra figures a row carries for the targets (e.g. RSS readings).
    extra: dict[str, float] = field(default_factory=dict)


#: Jobs each idle-latency row runs untimed before its timed ones, 20 ms apart: every contender's
#: first jobs pay first-use costs (statements prepared on their sixth run, plans cached per server
#: session, code paths run once), and with 200 timed jobs two such outliers make the p99.
LATENCY_WARM_UP = 10


def pct(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def p50(values: Sequence[float]) -> float:
    return statistics.median(values)


def fresh_database(server_url: str) -> tuple[str, Callable[[], None]]:
    name = f"cmp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    params["dbname"] = name
    url = psycopg.conninfo.make_conninfo(**params)

    def drop() -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")

    return url, drop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python_env(**extra: str) -> dict[str, str]:
    """The environment of a Python subprocess: our src/ and benchmarks/ importable, no PGQ_ settings
    of the caller's (the row sets its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}
    paths = [str(REPO / "src"), str(BENCHMARKS), str(PEERS)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


# ------------------------------------------------------------------------ CPU

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a process in seconds, from /proc/<pid>/stat; None once it has gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


def proc_tree(pid: int) -> list[int]:
    """A process and all its descendants (``pgq worker --processes 2`` runs a supervisor and children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children", encoding="ascii") as children:
                todo.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return found


def tree_cpu(pids: Sequence[int]) -> float:
    return sum(proc_cpu(p) or 0.0 for root in pids for p in proc_tree(root))


def rss_mb(pids: Sequence[int]) -> float:
    """Resident memory of the worker processes (the leaves of each tree: a supervisor is not a worker)."""
    total = 0.0
    for root in pids:
        tree = proc_tree(root)
        for pid in tree[1:] or tree:
            try:
                with open(f"/proc/{pid}/status", encoding="ascii") as status:
                    for line in status:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) / 1024
            except OSError:
                continue
    return total


class CpuMeter:
    """Server CPU over one measured window, as milliseconds per job (and the client's, when the
    client is this process).

    Server: utime + stime of the postmaster's children whose process title names the contender's
    database (its client backends, and an autovacuum worker if one happens to run there), read
    from /proc every ``interval`` seconds by a thread. Backends that exist when the window opens
    count from their reading then (or not at all with ``only_new``); backends born inside the
    window count from zero. A backend that exits loses at most its last interval. Shared
    processes (WAL writer, checkpointer, background writer) cannot be attributed to one database
    and are left out. Server CPU is None when the server is not on this machine.
    """

    def __init__(self, url: str, only_new: bool = False, interval: float = 0.1) -> None:
        self.only_new = only_new
        self.interval = interval
        self.postmaster, self.title = self._find_server(url)
        self.baseline: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.others: set[int] = set()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.client_start = 0.0

    @staticmethod
    def _find_server(url: str) -> tuple[int | None, str]:
        with psycopg.connect(url) as conn:
            pid, dbname = conn.execute("select pg_backend_pid(), current_database()").fetchone()  # type: ignore[misc]
        title = f" {dbname} "
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if title not in cmdline.read().decode(errors="replace"):
                    return None, title  # that pid is not this server's backend: a remote server
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                return int(stat.read().rsplit(")", 1)[1].split()[1]), title
        except (OSError, IndexError, ValueError):
            return None, title

    def _backends(self) -> list[int]:
        try:
            with open(f"/proc/{self.postmaster}/task/{self.postmaster}/children", encoding="ascii") as children:
                pids = [int(pid) for pid in children.read().split()]
        except OSError:
            return []
        mine = []
        for pid in pids:
            if pid in self.others:
                continue
            if pid not in self.last and pid not in self.baseline:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        title = cmdline.read().decode(errors="replace")
                except OSError:
                    continue
                if self.title not in title:
                    self.others.add(pid)
                    continue
            mine.append(pid)
        return mine

    def _sample(self) -> None:
        for pid in self._backends():
            cpu = proc_cpu(pid)
            if cpu is not None:
                self.last[pid] = cpu

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            self._sample()

    def start(self) -> CpuMeter:
        if self.postmaster is not None:
            for pid in self._backends():
                cpu = proc_cpu(pid)
                if cpu is None:
                    continue
                if self.only_new:
                    self.others.add(pid)
                else:
                    self.baseline[pid] = cpu
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        self.client_start = time.process_time()
        return self

    def stop(self, jobs: int) -> tuple[float, float | None]:
        """(client, server) CPU in ms per job since :meth:`start`."""
        client = (time.process_time() - self.client_start) * 1000 / max(jobs, 1)
        if self.thread is None:
            return client, None
        self.stopping.set()
        self.thread.join()
        self._sample()
        server = sum(cpu - self.baseline.get(pid, 0.0) for pid, cpu in self.last.items())
        return client, server * 1000 / max(jobs, 1)


# ---------------------------------------------------------------- the drain


@dataclass
class Drain:
    """The tables a drain empties: ``jobs`` empties, ``history`` fills with ``started_at`` and
    ``finished_at`` stamped by the database."""

    jobs: str
    history: str
    #: Only these history rows are the drain's (ageing rows put others there).
    history_filter: str = "true"
    #: With ``history_filter`` ``finished_at >= since``: the first finish is looked for as
    #: ``max(finished_at)``, which reads one index entry per partition. The ``exists`` of the
    #: filter was planned as a parallel scan of the whole history (the planner counts on an
    #: early match, and there is none before the first finish): with a million rows or more it
    #: took both cores from the drain's first seconds, inside its timestamps.
    since: str | None = None


def watch_drain(
    url: str,
    drain: Drain,
    processes: Sequence[subprocess.Popen[Any]],
    expected: int,
    timeout: float,
) -> Result:
    """Wait, from a side connection, until ``drain.jobs`` is empty, with the worker processes
    running meanwhile; then take the rate from the database's own timestamps (first
    ``started_at`` to last ``finished_at`` in history), as the referee does.

    CPU per job counts from the first finished job (the processes' start-up is not the drain's)
    to the empty table: the worker processes' own (client), and the backends of the contender's
    database (server). The poll (``exists`` on a small table every 5 ms) is the cheapest query
    there is and its backend counts in the server's CPU: about 1 % of a core. The jobs finished
    before the window are counted after it: inside it, that count of the history (a parallel
    scan of a million rows after the ageing churn, 150 ms on both cores) was charged to the drain.
    """
    pids = [p.pid for p in processes]
    deadline = time.monotonic() + timeout
    note = ""
    with psycopg.connect(url, autocommit=True) as conn:
        has_jobs = f"select exists(select from {drain.jobs})"
        has_finished = f"select exists(select from {drain.history} where {drain.history_filter})"
        if drain.since is not None:
            has_finished = f"select coalesce(max(finished_at) >= '{drain.since}', false) from {drain.history}"

        def dead() -> str:
            for proc in processes:
                if proc.poll() is not None:
                    return f"a worker process exited with {proc.returncode} before the end"
            return ""

        while not conn.execute(has_finished).fetchone()[0]:  # type: ignore[index]
            note = dead() or ("timed out before any job finished" if time.monotonic() > deadline else "")
            if note:
                return Result(note=note)
            time.sleep(0.005)
        meter = CpuMeter(url).start()
        client_start = tree_cpu(pids)
        (window_start,) = conn.execute("select clock_timestamp()").fetchone()  # type: ignore[misc]
        while conn.execute(has_jobs).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() > deadline:
                note = "timed out"
                break
            if note := dead():
                break
            time.sleep(0.005)
        client_end = tree_cpu(pids)
        (finished_before,) = conn.execute(
            f"select count(*) from {drain.history} where {drain.history_filter} and finished_at < %s",
            [window_start],
        ).fetchone()  # type: ignore[misc]
        window_jobs = max(1, expected - finished_before)
        _, server = meter.stop(window_jobs)
        rate, done = history_rate(conn, drain)
    if done != expected and not note:
        note = f"only {done:,} of {expected:,} jobs reached the history"
    return Result(rate, (client_end - client_start) * 1000 / window_jobs, server, note=note)


def history_rate(conn: psycopg.Connection[Any], drain: Drain) -> tuple[float | None, int]:
    row = conn.execute(
        f"select count(*), extract(epoch from max(finished_at) - min(started_at)) "
        f"from {drain.history} where {drain.history_filter}"
    ).fetchone()
    count, seconds = row  # type: ignore[misc]
    return (count / float(seconds) if seconds else None), count


def stop_processes(processes: Sequence[subprocess.Popen[Any]], grace: float = 30.0) -> None:
    import signal

    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
