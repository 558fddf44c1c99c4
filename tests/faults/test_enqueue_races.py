"""Enqueues racing each other, rolling back and using savepoints; hostile names."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgq
from tests.faults.consistency import Counts

pytestmark = pytest.mark.faults


def test_ten_thousand_concurrent_enqueues_with_rollbacks_savepoints_and_racing_keys(
    database_url: str, conn: Any, settle: Callable[..., Counts]
) -> None:
    conn.execute(
        "create table runs (job_id bigint, attempt int, pid int, started_at timestamptz default "
        "clock_timestamp(), finished_at timestamptz)"
    )
    app = pgq.App(database_url, pool_max_size=8)
    committed: set[int] = set()
    rolled_back: set[int] = set()
    keyed: dict[str, set[int]] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(database_url) as caller:
                for _ in range(25):  # 25 transactions x 50 enqueues x 8 threads = 10,000
                    mine: list[tuple[int, str | None]] = []
                    doomed: list[int] = []
                    deadlocked = False
                    try:
                        for _ in range(50):
                            key = f"k{rng.randrange(40)}" if rng.random() < 0.2 else None
                            if rng.random() < 0.1:
                                caller.execute("savepoint s")
                                doomed.append(app.enqueue("touch", {"n": seed}, key=key, connection=caller))
                                caller.execute("rollback to savepoint s")
                            else:
                                job_id = app.enqueue("touch", {"n": seed}, key=key, connection=caller)
                                mine.append((job_id, key))
                    except psycopg.errors.DeadlockDetected:
                        # Two transactions taking the same keys in opposite orders: PostgreSQL
                        # aborts one, as with any unique index. Its jobs are simply not there.
                        deadlocked = True
                    if deadlocked or rng.random() < 0.2:
                        caller.rollback()
                        doomed += [job_id for job_id, _ in mine]
                        mine = []
                    else:
                        caller.commit()
                    with lock:
                        rolled_back.update(doomed)
                        for job_id, key in mine:
                            committed.add(job_id)
                            if key:
                                keyed.setdefault(key, set()).add(job_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    # A rolled-back id may equal a committed one only when a key returned an existing job.
    rolled_back -= committed
    # One live job per key: every committed enqueue of a key got the same id.
    assert all(len(ids) == 1 for ids in keyed.values()), {k: v for k, v in keyed.items() if len(v) > 1}
    in_table = {row["id"] for row in conn.execute("select id from pgq.jobs")}
    assert in_table == committed
    assert not (in_table & rolled_back)

    ran: set[int] = set()

    @app.task(pass_context=True)
    async def touch(ctx: pgq.JobContext, n: int) -> None:
        ran.add(ctx.job.id)
        await asyncio.to_thread(
            conn.execute,
            "insert into runs (job_id, attempt, pid, finished_at) values (%s, %s, 0, now())",
            [ctx.job.id, ctx.attempt],
        )

    async def drain() -> None:
        async with app.worker(concurrency=20, poll_interval=0.2):
            while len(ran) < len(committed):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)

    asyncio.run(asyncio.wait_for(drain(), 300))
    app.close()
    assert ran == committed and not (ran & rolled_back)
    counts = settle(sorted(committed), enqueues=10_000, rolled_back=len(rolled_back), keys=len(keyed))
    assert counts.lost == 0 and counts.duplicated == 0 and counts.completed == len(committed)


EVIL = "x'); drop table pgq.jobs; --"


def test_hostile_names_are_data_or_rejected(app: pgq.App, conn: Any, database_url: str) -> None:
    # Task names and keys are data: stored as given, never interpreted.
    job_id = app.enqueue(EVIL, {"q": EVIL}, key=EVIL)
    job = app.get_job(job_id)
    assert job is not None and job.task == EVIL and job.key == EVIL and job.args == {"q": EVIL}
    # Queue and schema names are identifiers-to-be: checked against a strict pattern.
    with pytest.raises(pgq.InvalidJob, match="queue must be"):
        app.enqueue("t", {}, queue=EVIL)
    with pytest.raises(pgq.ConfigurationError, match="PGQ_SCHEMA"):
        pgq.App(database_url, schema='pgq"; drop schema pgq cascade; --')
    with pytest.raises(pgq.ConfigurationError, match="queue must be 1-128 ASCII letters"):
        from pgq.worker import Worker

        Worker(app, queues=[EVIL])
    # The CLI refuses them with exit code 2; the SQL function stores them as data.
    result = subprocess.run(
        [sys.executable, "-m", "pgq", "enqueue", "t", "--queue", EVIL, "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "queue must be" in result.stderr
    sql_id = conn.execute("select pgq.enqueue(%s, '{}', key => %s) as id", [EVIL, EVIL]).fetchone()["id"]
    assert sql_id == job_id  # the same key in the same queue: the live job's id
    assert conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"] == 1
