"""A busy worker's claim writes the plain completions waiting for the completer, in the
claim's transaction (migration 0011, ``repo.claim_finishing``; for a queue with limits,
migration 0021, ``repo.claim_limited_finishing``): same fences, same history rows and
events as the completer's own write, and nothing lost when it fails."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import tuple_row

import pgq
from pgq.db import repo
from pgq.db.session import Session
from pgq.events import Event
from pgq.job import Job
from pgq.settings import Settings
from pgq.worker.completer import CARRY_LIMIT, Completer
from pgq.worker.outcome import Outcome


async def _registered_session(database_url: str, worker_id: uuid.UUID) -> Session:
    session = Session(database_url, Settings(database_url=database_url), "test claims", 10.0)
    await session.fetch(
        "insert into pgq.workers (id, name, host, pid, queues, concurrency, version, tasks) "
        "values (%s, 'test', 'here', 1, '{default}', 10, 'test', '{work}')",
        [worker_id],
        tuple_row,
    )
    return session


def _count_carried(monkeypatch: pytest.MonkeyPatch, claim: str) -> list[int]:
    """Wrap the carrying claim ``repo.<claim>``: the returned list gets how many
    completions each of its calls carried (its sixth argument)."""
    carried: list[int] = []
    real = getattr(repo, claim)

    async def spied(*args: Any, **kwargs: Any) -> Any:
        answer = await real(*args, **kwargs)
        carried.append(len(args[5]))
        return answer

    monkeypatch.setattr(repo, claim, spied)
    return carried


async def test_a_claim_writes_the_completions_it_carries_and_names_the_refused(app: pgq.App, conn: Any) -> None:
    @app.task
    def work(n: int) -> None: ...

    ids = [work.enqueue(n=n) for n in range(4)]
    worker_id = uuid.uuid4()
    session = await _registered_session(app.url, worker_id)
    try:
        first, _ = await repo.claim(session, "pgq", worker_id, ["default"], 2)
        assert [job.id for job in first] == ids[:2]
        kept, lost = first
        # The sweeper gave the second job away while it ran; another worker runs it now.
        conn.execute(
            "update pgq.jobs set worker_id = gen_random_uuid(), attempts = attempts + 1 where id = %s", [lost.id]
        )
        jobs, wait, accepted = await repo.claim_finishing(session, "pgq", worker_id, ["default"], 5, first)
    finally:
        await session.close()
    assert accepted == {kept.id}
    assert [job.id for job in jobs] == ids[2:]  # the rows of the refused outcome made no job
    assert wait is None  # nothing delayed
    history = conn.execute("select id, status, worker_id, attempts from pgq.job_history").fetchall()
    assert history == [{"id": kept.id, "status": "completed", "worker_id": worker_id, "attempts": 1}]
    row = conn.execute("select status, attempts from pgq.jobs where id = %s", [lost.id]).fetchone()
    assert row == {"status": "running", "attempts": 2}  # the late finish did not touch it


async def test_a_claim_that_fails_writes_nothing_and_claims_nothing(app: pgq.App, conn: Any) -> None:
    @app.task
    def work(n: int) -> None: ...

    ids = [work.enqueue(n=n) for n in range(3)]
    worker_id = uuid.uuid4()
    session = await _registered_session(app.url, worker_id)
    try:
        first, _ = await repo.claim(session, "pgq", worker_id, ["default"], 1)
        # The claim fails after the outcome was written, in the same transaction.
        with pytest.raises(psycopg.errors.InvalidRowCountInLimitClause):
            await repo.claim_finishing(session, "pgq", worker_id, ["default"], -1, first)
    finally:
        await session.close()
    assert conn.execute("select count(*) as n from pgq.job_history").fetchone()["n"] == 0
    rows = conn.execute("select id, status from pgq.jobs order by id").fetchall()
    assert rows == [{"id": ids[0], "status": "running"}] + [{"id": i, "status": "pending"} for i in ids[1:]]


async def test_a_limited_claim_writes_its_completions_first_so_that_their_slots_serve_it(
    app: pgq.App, conn: Any
) -> None:
    @app.task
    def work(n: int) -> None: ...

    app.set_queue("default", concurrency=2)
    ids = [work.enqueue(n=n) for n in range(5)]
    worker_id = uuid.uuid4()
    session = await _registered_session(app.url, worker_id)
    try:
        first = await repo.claim_limited(session, "pgq", worker_id, "default", 5)
        assert [job.id for job in first] == ids[:2]  # the limit
        assert await repo.claim_limited(session, "pgq", worker_id, "default", 5) == []
        kept, lost = first
        # The sweeper gave the second job away while it ran; another worker runs it now,
        # so its slot stays taken.
        conn.execute(
            "update pgq.jobs set worker_id = gen_random_uuid(), attempts = attempts + 1 where id = %s", [lost.id]
        )
        jobs, accepted = await repo.claim_limited_finishing(session, "pgq", worker_id, "default", 5, first)
    finally:
        await session.close()
    assert accepted == {kept.id}
    assert [job.id for job in jobs] == [ids[2]]  # the one slot the written completion freed
    history = conn.execute("select id, status, worker_id, attempts from pgq.job_history").fetchall()
    assert history == [{"id": kept.id, "status": "completed", "worker_id": worker_id, "attempts": 1}]
    row = conn.execute("select status, attempts from pgq.jobs where id = %s", [lost.id]).fetchone()
    assert row == {"status": "running", "attempts": 2}


def _outcome(job_id: int, owner: uuid.UUID, kind: str = "completed") -> Outcome:
    now = datetime.now(UTC)
    job = Job(job_id, "default", "work", {}, 0, "running", 1, 3, now, now, worker_id=owner)
    return Outcome(job, kind)


async def test_the_completer_lends_only_plain_completions_and_counts_them_unwritten() -> None:
    owner = uuid.uuid4()
    written: list[tuple[list[int], set[int]]] = []

    async def on_written(batch: list[Outcome], accepted: set[int]) -> None:
        written.append(([outcome.job.id for outcome in batch], accepted))

    async def never(owner: uuid.UUID, columns: Any) -> set[int]:
        raise AssertionError("not written by the completer here")

    completer = Completer(never, on_written=on_written)
    completer.add(_outcome(1, owner))
    completer.add(_outcome(2, owner))
    assert completer.take_completions(uuid.uuid4()) == []  # jobs held under another id
    taken = completer.take_completions(owner)
    assert [o.job.id for o in taken] == [1, 2]
    # In flight: still unwritten for the heartbeat (which returns running jobs this
    # worker holds nowhere) and for the shutdown's count.
    assert completer.unflushed_ids() == {1, 2} and completer.pending() == 2
    completer.add(_outcome(3, owner))
    assert completer.take_completions(owner) == []  # one carried batch at a time
    completer.give_back()
    assert [o.job.id for o in completer.unflushed()] == [1, 2, 3]  # back first, in order
    assert [o.job.id for o in completer.take_completions(owner)] == [1, 2, 3]
    await completer.taken_written({1, 3})
    assert written == [([1, 2, 3], {1, 3})] and completer.pending() == 0

    completer.add(_outcome(4, owner, kind="retry"))
    assert completer.take_completions(owner) == []  # not a plain completion
    for job_id in range(5, 6 + CARRY_LIMIT):
        completer.add(_outcome(job_id, owner))
    assert completer.take_completions(owner) == []  # more than a claim carries


async def test_a_busy_worker_finishes_through_its_claims_and_reports_after_the_write(
    app: pgq.App, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task
    async def work(n: int) -> None: ...

    carried = _count_carried(monkeypatch, "claim_finishing")
    seen_in_history: list[bool] = []

    def completed(event: Event) -> None:
        # Fired after the write: the job is in history by then.
        found = conn.execute("select 1 from pgq.job_history where id = %s", [event.job.id]).fetchone()
        seen_in_history.append(found is not None)

    app.on("job_completed", completed)
    count = 300
    app.enqueue_many([pgq.JobSpec("work", {"n": n}) for n in range(count)])
    await _drain(app, count, concurrency=5)
    assert carried, "no claim carried completions"
    assert sum(carried) <= count
    assert len(seen_in_history) == count and all(seen_in_history)
    rows = conn.execute("select status, count(*) as n, max(attempts) as a from pgq.job_history group by 1").fetchall()
    assert rows == [{"status": "completed", "n": count, "a": 1}]


@pytest.mark.parametrize(
    "claim, limit",
    [("claim_finishing", None), ("claim_limited_finishing", 5)],
    ids=["unlimited", "limited"],
)
async def test_completions_a_failed_claim_carried_are_written_by_the_completer(
    app: pgq.App, conn: Any, monkeypatch: pytest.MonkeyPatch, claim: str, limit: int | None
) -> None:
    @app.task
    async def work(n: int) -> None: ...

    failures = 0
    lost_with_a_claim: list[int] = []
    carrying = getattr(repo, claim)

    async def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal failures
        if failures < 3:
            failures += 1
            lost_with_a_claim.extend(job.id for job in args[5])
            raise psycopg.OperationalError("the connection was lost (test)")
        return await carrying(*args, **kwargs)

    monkeypatch.setattr(repo, claim, failing)
    if limit is not None:
        app.set_queue("default", concurrency=limit)
    count = 100
    app.enqueue_many([pgq.JobSpec("work", {"n": n}) for n in range(count)])
    await _drain(app, count, concurrency=5)
    # How many claims carry completions depends on how fast the completer flushes
    # meanwhile (a loaded machine may see one): at least one failed with some.
    assert 1 <= failures <= 3 and lost_with_a_claim
    rows = conn.execute("select status, count(*) as n, max(attempts) as a from pgq.job_history group by 1").fetchall()
    assert rows == [{"status": "completed", "n": count, "a": 1}]  # none lost, none run twice
    written = conn.execute(
        "select count(*) as n from pgq.job_history where id = any(%s) and status = 'completed'", [lost_with_a_claim]
    ).fetchone()
    assert written == {"n": len(set(lost_with_a_claim))}  # the completer wrote what the failed claims carried


async def test_a_worker_at_a_queue_limit_finishes_through_its_claims_and_keeps_the_limit(
    app: pgq.App, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = 0
    most = 0

    @app.task
    async def work(n: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.002)
        running -= 1

    carried = _count_carried(monkeypatch, "claim_limited_finishing")
    app.set_queue("default", concurrency=3)
    count = 200
    app.enqueue_many([pgq.JobSpec("work", {"n": n}) for n in range(count)])
    await _drain(app, count, concurrency=10)
    assert carried, "no limited claim carried completions"
    assert most <= 3
    rows = conn.execute("select status, count(*) as n, max(attempts) as a from pgq.job_history group by 1").fetchall()
    assert rows == [{"status": "completed", "n": count, "a": 1}]


async def _drain(app: pgq.App, count: int, concurrency: int) -> None:
    deadline = time.monotonic() + 60
    async with app.worker(concurrency=concurrency, poll_interval=0.2, sweeper=False, scheduler=False):
        while True:
            done = await asyncio.to_thread(_history_count, app)
            if done == count:
                break
            assert time.monotonic() < deadline, f"{done} of {count} jobs finished within 60 s"
            await asyncio.sleep(0.05)


def _history_count(app: pgq.App) -> int:
    with psycopg.connect(app.url) as conn:
        row = conn.execute("select count(*) from pgq.job_history").fetchone()
        return int(row[0]) if row else 0
