"""Every public call on pgq's own pool survives its session being killed (issue 15, item 3).

A call whose pooled session the server ended (``pg_terminate_backend``, a restart)
retries once on a fresh connection when nothing can have been committed; otherwise it
raises ``pgq.DatabaseUnavailable`` with the driver's error chained. A caller's own
connection gets its driver's error untouched. The rule is in docs/guarantees.md.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import pgq
from tests import pgservers
from tests.faults.proxy import Proxy
from tests.processes import wait_for

pytestmark = pytest.mark.faults


def kill_pgq_sessions(conn: Any) -> int:
    """End every session of pgq's pools in this database (again, for one the pool was
    still opening), until none is left; returns how many were ended."""
    killed = 0

    def none_left() -> bool:
        nonlocal killed
        row = conn.execute(
            """select count(*) as n, count(*) filter (where pg_terminate_backend(pid)) as ended
                 from pg_stat_activity
                where datname = current_database() and application_name like 'pgq client%%'"""
        ).fetchone()
        killed += row["ended"]
        return bool(row["n"] == 0)

    wait_for(none_left, 10, "pgq's sessions to end")
    return killed


def history_row(conn: Any, status: str) -> int:
    """A finished job written straight into job_history (failed ones can be retried)."""
    return int(
        conn.execute(
            """insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,
                                            run_at, created_at, started_at, finished_at)
               values (nextval('pgq.jobs_id_seq'), 'default', 't', '{}', 0, %s, 3, 3, now(), now(), now(), now())
               returning id""",
            [status],
        ).fetchone()["id"]
    )


def jobs(conn: Any) -> int:
    return int(conn.execute("select count(*) as n from pgq.all_jobs").fetchone()["n"])


# Each call: (what to set up, returning a context) and (the call, checking its own effect).
Setup = Callable[[pgq.App, Any], Any]
Call = Callable[[pgq.App, Any, Any], None]


def _enqueue(app: pgq.App, conn: Any, _: Any) -> None:
    before = jobs(conn)
    assert app.enqueue("t", {"n": 1}) > 0
    assert jobs(conn) == before + 1


def _enqueue_keyed(app: pgq.App, conn: Any, _: Any) -> None:
    first = app.enqueue("t", {}, key="k")
    assert app.enqueue("t", {}, key="k") == first


def _enqueue_many(app: pgq.App, conn: Any, _: Any) -> None:
    before = jobs(conn)
    assert len(app.enqueue_many([pgq.JobSpec("t", {"i": i}) for i in range(5)])) == 5
    assert jobs(conn) == before + 5


def _enqueue_workflow(app: pgq.App, conn: Any, _: Any) -> None:
    ids = app.enqueue_workflow(pgq.chain(pgq.JobSpec("a"), pgq.JobSpec("b")))
    assert len(ids) == 2


def _cancel(app: pgq.App, conn: Any, job_id: Any) -> None:
    assert app.cancel(job_id) == "cancelled"


def _retry(app: pgq.App, conn: Any, job_id: Any) -> None:
    app.retry(job_id)
    assert app.get_job(job_id).status == "pending"  # type: ignore[union-attr]


def _promote(app: pgq.App, conn: Any, job_id: Any) -> None:
    app.promote(job_id)


def _delete(app: pgq.App, conn: Any, job_id: Any) -> None:
    app.delete(job_id)
    assert app.get_job(job_id) is None


def _retry_failed(app: pgq.App, conn: Any, _: Any) -> None:
    assert app.retry_failed() == 2


def _trigger_schedule(app: pgq.App, conn: Any, _: Any) -> None:
    assert app.trigger_schedule("nightly") > 0


CALLS: dict[str, tuple[Setup | None, Call]] = {
    "enqueue": (None, _enqueue),
    "enqueue with a key": (None, _enqueue_keyed),
    "enqueue_many": (None, _enqueue_many),
    "enqueue_workflow": (None, _enqueue_workflow),
    "get_job": (lambda app, conn: app.enqueue("t"), lambda app, conn, i: None if app.get_job(i) else pytest.fail()),
    "list_jobs": (lambda app, conn: app.enqueue("t"), lambda app, conn, i: None if app.list_jobs() else pytest.fail()),
    "cancel": (lambda app, conn: app.enqueue("t"), _cancel),
    "retry": (lambda app, conn: history_row(conn, "failed"), _retry),
    "promote": (lambda app, conn: app.enqueue("t", delay=3600), _promote),
    "delete": (lambda app, conn: history_row(conn, "completed"), _delete),
    "retry_failed": (lambda app, conn: [history_row(conn, "failed") for _ in range(2)], _retry_failed),
    "explain": (lambda app, conn: app.enqueue("t"), lambda app, conn, i: None if app.explain(i) else pytest.fail()),
    "stats": (None, lambda app, conn, _: app.stats() and None),
    "list_queues": (None, lambda app, conn, _: app.list_queues() and None),
    "list_workers": (None, lambda app, conn, _: app.list_workers() and None),
    "pause_queue": (None, lambda app, conn, _: app.pause_queue("q")),
    "resume_queue": (lambda app, conn: app.pause_queue("q"), lambda app, conn, _: app.resume_queue("q")),
    "set_queue": (None, lambda app, conn, _: app.set_queue("q", concurrency=3) and None),
    "add_schedule": (None, lambda app, conn, _: app.add_schedule("nightly", "0 3 * * *", "t") and None),
    "list_schedules": (
        lambda app, conn: app.add_schedule("nightly", "0 3 * * *", "t"),
        lambda app, conn, _: None if app.list_schedules() else pytest.fail(),
    ),
    "trigger_schedule": (lambda app, conn: app.add_schedule("nightly", "0 3 * * *", "t"), _trigger_schedule),
    "disable_schedule": (
        lambda app, conn: app.add_schedule("nightly", "0 3 * * *", "t"),
        lambda app, conn, _: app.disable_schedule("nightly") and None,
    ),
    "remove_schedule": (
        lambda app, conn: app.add_schedule("nightly", "0 3 * * *", "t"),
        lambda app, conn, _: app.remove_schedule("nightly"),
    ),
    "prune": (None, lambda app, conn, _: app.prune() and None),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_each_call_survives_its_pooled_session_killed(app: pgq.App, conn: Any, name: str) -> None:
    setup, call = CALLS[name]
    context = setup(app, conn) if setup else None
    app.get_job(0)  # the pool holds a session now, idle
    assert kill_pgq_sessions(conn) >= 1
    call(app, conn, context)  # neither AdminShutdown nor DatabaseUnavailable: retried on a fresh session


def test_async_calls_survive_their_pooled_sessions_killed(app: pgq.App, conn: Any) -> None:
    async def run() -> None:
        await app.enqueue_async("t")
        kill_pgq_sessions(conn)
        before = jobs(conn)
        await app.enqueue_async("t", {"n": 2})
        assert jobs(conn) == before + 1
        kill_pgq_sessions(conn)
        assert len(await app.enqueue_many_async([pgq.JobSpec("t", {"i": i}) for i in range(3)])) == 3
        kill_pgq_sessions(conn)
        assert len(await app.enqueue_workflow_async(pgq.chain(pgq.JobSpec("a"), pgq.JobSpec("b")))) == 2
        assert jobs(conn) == before + 6
        await app.aclose()

    asyncio.run(run())


def test_threads_enqueueing_through_a_kill_storm_lose_nothing(
    app: pgq.App, conn: Any, reliability: Callable[..., None]
) -> None:
    """Concurrent enqueues (grouped into shared statements) while pgq's sessions are killed
    over and over: every call returns an id or raises DatabaseUnavailable, and every id
    returned is a job, once."""
    returned: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    killed = [0]

    def client(offset: int) -> None:
        for i in range(150):
            try:
                returned.append(app.enqueue("t", {"i": offset + i}))
            except pgq.DatabaseUnavailable as exc:
                failures.append(exc)

    def storm() -> None:
        with psycopg.connect(conn.info.dsn, autocommit=True, row_factory=dict_row) as killer:
            while not stop.is_set():
                row = killer.execute(
                    """select count(*) filter (where pg_terminate_backend(pid)) as n from pg_stat_activity
                        where datname = current_database() and application_name like 'pgq client%%'"""
                ).fetchone()
                killed[0] += row["n"]  # type: ignore[index]
                time.sleep(0.02)

    killer = threading.Thread(target=storm)
    killer.start()
    clients = [threading.Thread(target=client, args=(t * 1000,)) for t in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    stop.set()
    killer.join()
    rows = conn.execute("select id from pgq.jobs").fetchall()
    assert sorted(returned) == sorted({row["id"] for row in rows} & set(returned))
    assert len(set(returned)) == len(returned)
    # A kill can land after the commit and before the answer: those calls raise (the job
    # may exist), never return a wrong id, and never write a job twice.
    written = {row["id"] for row in rows}
    assert len(written) <= len(returned) + len(failures)
    for failure in failures:
        assert isinstance(failure.__cause__, psycopg.Error)
    reliability(
        calls=600,
        returned=len(returned),
        database_unavailable=len(failures),
        of_which_outcome_unknown=sum("may or may not" in str(failure) for failure in failures),
        written=len(written),
        lost=len(set(returned) - written),
        duplicated=0,
        sessions_terminated=killed[0],
    )


def test_a_caller_connection_gets_the_driver_error_untouched(app: pgq.App, database_url: str, conn: Any) -> None:
    mine = psycopg.connect(database_url)
    try:
        mine.execute("select 1")  # inside the caller's transaction
        pid = mine.info.backend_pid
        conn.execute("select pg_terminate_backend(%s)", [pid])
        wait_for(
            lambda: (
                conn.execute("select count(*) as n from pg_stat_activity where pid = %s", [pid]).fetchone()["n"] == 0
            ),
            10,
            "the session to end",
        )
        for call in (
            lambda: app.enqueue("t", connection=mine),
            lambda: app.enqueue_many([pgq.JobSpec("t")], connection=mine),
        ):
            with pytest.raises(psycopg.OperationalError) as raised:
                call()
            assert not isinstance(raised.value, pgq.PgqError)  # theirs, as the driver raised it
    finally:
        mine.close()
    assert jobs(conn) == 0


def test_no_fresh_connection_means_database_unavailable_with_the_reason(
    database_url: str, conn: Any, pg_server: pgservers.Server
) -> None:
    app = pgq.App(database_url, connect_timeout=1)
    admin = psycopg.connect(pg_server.url, autocommit=True)  # the database's own sessions cannot refuse it
    try:
        job_id = app.enqueue("t")
        dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
        admin.execute(f"alter database {dbname} allow_connections false")
        try:
            kill_pgq_sessions(conn)
            for call in (lambda: app.get_job(job_id), lambda: app.enqueue("t"), lambda: app.cancel(job_id)):
                with pytest.raises(pgq.DatabaseUnavailable, match="nothing was written") as raised:
                    call()
                assert isinstance(raised.value.__cause__, psycopg.OperationalError)
                assert "not currently accepting connections" in str(raised.value)
        finally:
            admin.execute(f"alter database {dbname} allow_connections true")
        # Back once the database is (the pool reconnects with its own backoff meanwhile).
        wait_for(lambda: not isinstance(_call(lambda: app.enqueue("t")), BaseException), 30, "the pool to reconnect")
    finally:
        app.close()
        admin.close()
    assert jobs(conn) == 2


@pytest.fixture
def proxied(database_url: str) -> Iterator[tuple[Proxy, str]]:
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    host = str(params.get("host") or "127.0.0.1")
    if host.startswith("/"):
        proxy = Proxy(f"{host}/.s.PGSQL.{params.get('port') or 5432}", None)
    else:
        proxy = Proxy(host, int(params.get("port") or 5432))
    params.update(host="127.0.0.1", port=str(proxy.port))
    try:
        yield proxy, psycopg.conninfo.make_conninfo(**params)
    finally:
        proxy.close()


def test_a_connection_cut_while_idle_is_replaced_before_use(proxied: tuple[Proxy, str], conn: Any) -> None:
    proxy, via_proxy = proxied
    app = pgq.App(via_proxy)
    try:
        app.enqueue("t")
        assert proxy.cut() >= 1  # no goodbye from the server: the socket just breaks
        time.sleep(0.1)
        assert app.enqueue("t") > 0  # a write: sent only on a connection checked alive
        proxy.cut()
        time.sleep(0.1)
        assert len(app.list_jobs()) == 2
    finally:
        app.close()


def test_a_write_cut_mid_statement_is_not_repeated(proxied: tuple[Proxy, str], conn: Any, database_url: str) -> None:
    """The socket breaks while an enqueue waits inside the server: the insert may still
    commit there (it does, here), so pgq must not run it again. The caller gets
    DatabaseUnavailable saying the outcome is unknown, and there is one job."""
    proxy, via_proxy = proxied
    app = pgq.App(via_proxy)
    try:
        app.set_queue("q", max_pending=100)  # an enqueue into q locks q's row in queues
        outcome: list[BaseException | int] = []
        with psycopg.connect(database_url) as holder:
            holder.execute("select * from pgq.queues where name = 'q' for update")
            thread = threading.Thread(target=lambda: outcome.append(_call(lambda: app.enqueue("t", queue="q"))))
            thread.start()
            wait_for(
                lambda: (
                    conn.execute(
                        """select count(*) as n from pg_stat_activity
                        where datname = current_database() and application_name like 'pgq client%%'
                          and wait_event_type = 'Lock'"""
                    ).fetchone()["n"]
                    == 1
                ),
                10,
                "the enqueue to wait on the queue's lock",
            )
            proxy.cut()
            thread.join(10)
        # holder committed: the waiting insert went on, and committed with nobody to tell.
        assert len(outcome) == 1 and isinstance(outcome[0], pgq.DatabaseUnavailable), outcome
        assert "may or may not have been written" in str(outcome[0])
        assert isinstance(outcome[0].__cause__, psycopg.OperationalError)
        wait_for(
            lambda: conn.execute("select count(*) as n from pgq.jobs where queue = 'q'").fetchone()["n"] == 1,
            10,
            "the cut insert to commit",
        )
        time.sleep(0.5)
        assert conn.execute("select count(*) as n from pgq.jobs where queue = 'q'").fetchone()["n"] == 1
    finally:
        app.close()


def _call(fn: Callable[[], int]) -> BaseException | int:
    try:
        return fn()
    except BaseException as exc:
        return exc
