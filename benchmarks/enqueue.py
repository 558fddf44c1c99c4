"""Enqueue speed against its ceilings, in one run: the four ratios of the speed issue's enqueue targets.

    python benchmarks/enqueue.py [--database-url URL] [--segments 20] [--batches 5] [--single 200]

(PgQueuer's row needs the ``bench`` extra, in a venv of its own: see benchmarks/README.md.)

Contenders are compared in pairs, each in a fresh database of its own (cloned from one
migrated template), and timed in short interleaved segments: segment 1 of A, segment 1
of B, segment 2 of B, segment 2 of A, and so on. On a shared machine a whole-run
figure moves by 30 % as others' load comes and goes; interleaving puts each pair
under the same load. A rate is a contender's jobs over its summed time; a ratio is
the median of the ratios of the segments run side by side, so a burst of someone
else's load in one segment cannot tip it. Each contender first runs one untimed
segment (connections, prepared statements, the first pages of its table).

- raw COPY: ``cursor.copy(... FORMAT BINARY)`` with ``write_row``, 1,000 rows per
  transaction, into a table made ``LIKE pgq.jobs INCLUDING ALL`` (same columns,
  defaults, checks and indexes), of (task, args, queue, priority, max_attempts);
- ``app.enqueue_many``: 1,000 ``JobSpec`` per call, built inside the timing (as the
  raw COPY builds its rows);
- PgQueuer: ``Queries.enqueue`` with 1,000 jobs per call (asyncpg, payload None),
  on an event loop of its own thread;
- plain insert + commit: one psycopg connection in autocommit, one ``insert`` of
  (task, args, queue) per job into a ``LIKE pgq.jobs`` table;
- ``app.enqueue``: one job per call on pgq's own pool, from 1 and from 8 threads.

Args are ``{"i": n}`` everywhere but PgQueuer's. The server should have fsync on
(the script prints its settings).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import pgq

BATCH = 1000
THREADS = 8


class Server:
    """A PostgreSQL server on which each contender gets a fresh database from one migrated template."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.template = f"enq_tpl_{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"create database {self.template}")
        pgq.migrate(self.url_for(self.template))
        with psycopg.connect(self.url_for(self.template), autocommit=True) as conn:
            conn.execute("create table bench_copy (like pgq.jobs including all)")
            conn.execute("create table bench_insert (like pgq.jobs including all)")

    def url_for(self, name: str) -> str:
        params = psycopg.conninfo.conninfo_to_dict(self.url)
        params["dbname"] = name
        return psycopg.conninfo.make_conninfo(**params)

    def fresh(self) -> str:
        name = f"enq_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"create database {name} template {self.template}")
        self.made.append(name)
        return self.url_for(name)

    def settings(self) -> str:
        with psycopg.connect(self.url) as conn:
            shown = [conn.execute(f"show {name}").fetchone()[0] for name in ("server_version", "fsync")]  # type: ignore[index]
            sync = conn.execute("show synchronous_commit").fetchone()[0]  # type: ignore[index]
        return f"PostgreSQL {shown[0]}, fsync {shown[1]}, synchronous_commit {sync}"

    def drop(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for name in [*self.made, self.template]:
                conn.execute(f"drop database if exists {name} with (force)")


class Contender:
    """Runs segments of one way to enqueue; ``run(first, count)`` writes ``count`` jobs."""

    name = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.jobs = 0
        self.seconds = 0.0
        self.segments: list[float] = []

    def run(self, first: int, count: int) -> None:
        raise NotImplementedError

    def segment(self, count: int, timed: bool = True) -> None:
        start = time.perf_counter()
        self.run(self.jobs + (0 if timed else 10**9), count)
        elapsed = time.perf_counter() - start
        if timed:
            self.seconds += elapsed
            self.jobs += count
            self.segments.append(count / elapsed)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    def close(self) -> None:
        pass


class RawCopy(Contender):
    name = "raw binary COPY, 1,000 per transaction"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.conn = psycopg.connect(url, autocommit=True)

    def run(self, first: int, count: int) -> None:
        for offset in range(first, first + count, BATCH):
            with self.conn.transaction(), self.conn.cursor() as cur:
                sql = "copy bench_copy (task, args, queue, priority, max_attempts) from stdin (format binary)"
                with cur.copy(sql) as copy:
                    copy.set_types(["text", "jsonb", "text", "int4", "int4"])
                    for i in range(offset, offset + BATCH):
                        copy.write_row(("noop", Jsonb({"i": i}), "default", 0, 3))

    def close(self) -> None:
        self.conn.close()


class EnqueueMany(Contender):
    name = "pgq enqueue_many, 1,000 per call"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.app = pgq.App(url)
        self.app.get_job(0)  # the pool and the schema check, outside the timing

    def run(self, first: int, count: int) -> None:
        for offset in range(first, first + count, BATCH):
            self.app.enqueue_many([pgq.JobSpec("noop", {"i": i}) for i in range(offset, offset + BATCH)])

    def close(self) -> None:
        self.app.close()


class PgQueuer(Contender):
    name = "PgQueuer Queries.enqueue, 1,000 per call"

    def __init__(self, url: str) -> None:
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries

        super().__init__(url)
        params = psycopg.conninfo.conninfo_to_dict(url)
        dsn = (
            f"postgresql://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
            f"{params.get('port', 5432)}/{params['dbname']}"
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def setup() -> Any:
            conn = await asyncpg.connect(dsn)
            queries = Queries(AsyncpgDriver(conn))
            await queries.install()
            return conn, queries

        self.conn, self.queries = self._call(setup())

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def run(self, first: int, count: int) -> None:
        async def enqueue() -> None:
            for _ in range(first, first + count, BATCH):
                await self.queries.enqueue(["noop"] * BATCH, [None] * BATCH, [0] * BATCH)

        self._call(enqueue())

    def close(self) -> None:
        self._call(self.conn.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


class PlainInsert(Contender):
    name = "plain insert + commit, one connection"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.conn = psycopg.connect(url, autocommit=True)

    def run(self, first: int, count: int) -> None:
        sql = "insert into bench_insert (task, args, queue) values (%s, %s, %s)"
        for i in range(first, first + count):
            self.conn.execute(sql, ("noop", Jsonb({"i": i}), "default"))

    def close(self) -> None:
        self.conn.close()


class Enqueue(Contender):
    name = "pgq enqueue, 1 thread"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.app = pgq.App(url)
        self.app.get_job(0)

    def run(self, first: int, count: int) -> None:
        for i in range(first, first + count):
            self.app.enqueue("noop", {"i": i})

    def close(self) -> None:
        self.app.close()


class EnqueueThreads(Enqueue):
    name = f"pgq enqueue, {THREADS} threads"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # The threads live across segments (as an application's do); each segment
        # hands each of them an equal share.
        self.starts = [threading.Semaphore(0) for _ in range(THREADS)]
        self.done = threading.Semaphore(0)
        self.share = (0, 0)
        self.threads = [threading.Thread(target=self._client, args=(t,), daemon=True) for t in range(THREADS)]
        for thread in self.threads:
            thread.start()

    def _client(self, index: int) -> None:
        while True:
            self.starts[index].acquire()
            first, per_thread = self.share
            if per_thread < 0:
                return
            for i in range(first + index * per_thread, first + (index + 1) * per_thread):
                self.app.enqueue("noop", {"i": i})
            self.done.release()

    def run(self, first: int, count: int) -> None:
        self.share = (first, count // THREADS)
        for start in self.starts:
            start.release()
        for _ in range(THREADS):
            self.done.acquire()

    def close(self) -> None:
        self.share = (0, -1)
        for start in self.starts:
            start.release()
        for thread in self.threads:
            thread.join()
        super().close()


def interleave(contenders: list[Contender], segments: int, count: int) -> None:
    for contender in contenders:
        contender.segment(count, timed=False)
    for segment in range(segments):
        order = contenders if segment % 2 == 0 else list(reversed(contenders))
        for contender in order:
            contender.segment(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--segments", type=int, default=20, help="interleaved segments per contender (default 20)")
    parser.add_argument("--batches", type=int, default=5, help="1,000-job calls per batch segment (default 5)")
    parser.add_argument("--single", type=int, default=200, help="jobs per one-job-a-call segment (default 200)")
    parser.add_argument("--threaded", type=int, default=800, help="jobs per segment of the threads pair (default 800)")
    args = parser.parse_args()

    server = Server(args.database_url)
    print(server.settings())
    made: list[Contender] = []

    def make(kind: Callable[[str], Contender]) -> Contender | None:
        try:
            contender = kind(server.fresh())
        except ImportError:
            return None
        made.append(contender)
        return contender

    try:
        batch = [c for c in (make(RawCopy), make(EnqueueMany), make(PgQueuer)) if c is not None]
        interleave(batch, args.segments, args.batches * BATCH)
        single = [c for c in (make(PlainInsert), make(Enqueue)) if c is not None]
        interleave(single, args.segments, args.single)
        threads = [c for c in (make(Enqueue), make(EnqueueThreads)) if c is not None]
        interleave(threads, args.segments, args.threaded - args.threaded % THREADS)
    finally:
        for contender in made:
            contender.close()
        server.drop()

    rates: dict[str, float] = {}
    print(f"\n{'measure':<44} {'jobs/s':>10}   jobs")
    for pair in (batch, single, threads):
        for contender in pair:
            rates[contender.name] = contender.rate
            print(f"{contender.name:<44} {contender.rate:>10,.0f}   {contender.jobs:,}")
    copy, many = RawCopy.name, EnqueueMany.name
    peer = PgQueuer.name
    one = Enqueue.name
    ratios = [
        ("enqueue_many / PgQueuer batch enqueue", many, peer, 2.0, batch),
        ("enqueue_many / raw binary COPY", many, copy, 0.5, batch),
        ("enqueue / plain insert + commit", one, PlainInsert.name, 0.8, single),
        (f"enqueue {THREADS} threads / 1 thread", EnqueueThreads.name, one, 3.0, threads),
    ]
    print(f"\n{'ratio (median of paired segments)':<44} {'value':>8}   target")
    for label, top, bottom, target, pair in ratios:
        found = {c.name: c.segments for c in pair}
        if top in found and bottom in found:
            value = statistics.median(a / b for a, b in zip(found[top], found[bottom], strict=True))
            verdict = "met" if value >= target else "NOT met"
            print(f"{label:<44} {value:>8.2f}   >= {target:g} ({verdict})")
        else:
            print(f"{label:<44} {'-':>8}   >= {target:g} (not measured: PgQueuer is not installed)")


if __name__ == "__main__":
    main()
