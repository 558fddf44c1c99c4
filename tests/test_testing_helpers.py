"""pgq.testing: the helpers and the pytest plugin pgq's users test their apps with.

The helpers run on the suite's real databases (``app``); the plugin itself is
tested with pytest's ``pytester``, running a user's test file in a pytest
session of its own, against the embedded PostgreSQL (its default) or the
suite's servers (``PGQ_TEST_DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import pgq
from pgq.testing import (
    assert_enqueued,
    drain,
    drain_async,
    enqueued_jobs,
    refute_enqueued,
    run_job,
    run_job_async,
    use_database,
)
from tests import pgservers

pytest_plugins = ["pytester"]

# ---------------------------------------------------------- assert_enqueued


def test_assert_enqueued_matches_given_fields_and_args_as_a_subset(app: pgq.App) -> None:
    @app.task(queue="emails")
    def send(to: str, template: str, data: dict[str, Any] | None = None) -> None: ...

    first = send.enqueue(to="ada@example.com", template="welcome", data={"name": "Ada", "plan": "pro"})
    app.enqueue("other", {"x": 1}, queue="default", priority=5, key="k1")

    [job] = assert_enqueued(app, send, {"to": "ada@example.com"})
    assert job.id == first
    assert_enqueued(app, "send", {"data": {"plan": "pro"}}, queue="emails")  # nested objects: a subset too
    assert_enqueued(app, "other", priority=5, key="k1")
    assert_enqueued(app, queue="default")
    assert_enqueued(app, count=2)
    assert_enqueued(app, send, delayed=False)
    refute_enqueued(app, send, {"to": "bob@example.com"})
    refute_enqueued(app, "send", queue="default")
    refute_enqueued(app, "other", {"x": 2})
    refute_enqueued(app, send, delayed=True)


def test_assert_enqueued_says_what_is_enqueued(app: pgq.App) -> None:
    app.enqueue("send", {"to": "ada@example.com"}, queue="emails")
    app.enqueue("report", {"day": "2026-11-28"}, delay=3600)

    with pytest.raises(AssertionError) as failed:
        assert_enqueued(app, "send", {"to": "bob@example.com"})
    message = str(failed.value)
    assert "no enqueued job matches task='send', args={'to': 'bob@example.com'}" in message
    assert "Enqueued (2):" in message
    assert "send queue='emails'" in message and "{'to': 'ada@example.com'}" in message
    assert "report queue='default'" in message

    with pytest.raises(AssertionError, match=r"expected 2 enqueued job\(s\) matching task='send', found 1"):
        assert_enqueued(app, "send", count=2)

    with pytest.raises(AssertionError, match="expected no enqueued job matching task='report', found 1") as found:
        refute_enqueued(app, "report")
    assert "2026-11-28" in str(found.value)
    assert_enqueued(app, "report", delayed=True)


def test_nothing_enqueued_and_running_or_finished_jobs_do_not_count(app: pgq.App) -> None:
    with pytest.raises(AssertionError, match="Nothing is enqueued"):
        assert_enqueued(app, "send")
    refute_enqueued(app)

    @app.task
    def noop() -> None: ...

    noop.enqueue()
    assert len(enqueued_jobs(app, noop)) == 1
    drain(app)
    refute_enqueued(app)  # completed: in history, no longer enqueued
    assert enqueued_jobs(app) == []


def test_a_rolled_back_enqueue_is_not_enqueued(app: pgq.App, database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url) as conn:
        app.enqueue("send", {"to": "x"}, connection=conn)
        conn.rollback()
    refute_enqueued(app, "send")


# -------------------------------------------------------------------- drain


def test_drain_runs_due_jobs_and_the_jobs_they_enqueue_with_real_outcomes(app: pgq.App) -> None:
    @app.task(queue="emails")
    def send(to: str) -> dict[str, str]:
        return {"sent": to}

    @app.task
    async def signup(email: str) -> None:
        await send.enqueue_async(to=email)

    signup_id = signup.enqueue(email="ada@example.com")
    outcomes = drain(app)

    assert [(o.job.task, o.status) for o in outcomes] == [("signup", "completed"), ("send", "completed")]
    assert outcomes[0].job.id == signup_id and outcomes[0].job.attempts == 1
    assert outcomes[1].result == {"sent": "ada@example.com"}
    assert all(o.completed for o in outcomes)
    stored = app.get_job(outcomes[1].job.id)
    assert stored is not None and stored.status == "completed" and stored.result == {"sent": "ada@example.com"}
    assert drain(app) == []
    # The drain's worker row is stopped, so it never looks like a dead worker to the sweeper.
    assert [w.status for w in app.list_workers()] == ["stopped", "stopped"]


def test_drain_leaves_retries_and_delayed_jobs_unless_with_scheduled(app: pgq.App) -> None:
    @app.task(max_attempts=3, backoff=60)
    def flaky() -> None:
        raise ConnectionError("smtp down")

    @app.task
    def later() -> str:
        return "done"

    flaky_id = flaky.enqueue()
    later_id = later.options(delay=3600).enqueue()

    [outcome] = drain(app)
    assert outcome.status == "retry" and not outcome.completed
    assert outcome.error is not None and outcome.error["type"] == "ConnectionError"
    assert outcome.error["message"] == "smtp down" and "Traceback" in outcome.error["traceback"]
    assert outcome.retry_in is not None and outcome.retry_in > 1
    assert "attempt 1/3): retry: ConnectionError: smtp down" in str(outcome)
    job = app.get_job(flaky_id)
    assert job is not None and job.status == "pending" and job.attempts == 1
    assert_enqueued(app, "later", delayed=True)

    outcomes = drain(app, with_scheduled=True)
    assert sorted((o.job.task, o.status, o.job.attempts) for o in outcomes) == [
        ("flaky", "failed", 3),
        ("flaky", "retry", 2),
        ("later", "completed", 1),
    ]
    failed = app.get_job(flaky_id)
    assert failed is not None and failed.status == "failed" and len(failed.errors) == 3
    done = app.get_job(later_id)
    assert done is not None and done.status == "completed"


def test_drain_one_queue_and_skips_paused_queues(app: pgq.App) -> None:
    @app.task
    def work(n: int) -> int:
        return n

    work.options(queue="a").enqueue(n=1)
    work.options(queue="b").enqueue(n=2)
    work.options(queue="c").enqueue(n=3)
    app.pause_queue("c")

    assert [o.result for o in drain(app, "b")] == [2]
    assert [o.result for o in drain(app, ["a", "c"])] == [1]
    assert drain(app) == []
    assert_enqueued(app, "work", {"n": 3}, queue="c")


def test_drain_runs_in_priority_order_and_permanent_errors_fail_at_once(app: pgq.App) -> None:
    @app.task
    def step(n: int) -> None:
        if n == 0:
            raise pgq.PermanentError("invalid address")

    for n, priority in ((1, 0), (2, 10), (0, 5)):
        step.options(priority=priority).enqueue(n=n)
    outcomes = drain(app)
    assert [(o.job.args["n"], o.status) for o in outcomes] == [(2, "completed"), (0, "failed"), (1, "completed")]
    assert outcomes[1].error is not None and outcomes[1].error["permanent"] is True


def test_drain_calls_hooks_and_stops_a_job_that_enqueues_itself_forever(app: pgq.App) -> None:
    seen: list[tuple[str, int]] = []
    app.on("job_started", lambda event: seen.append((event.name, event.job.id)))
    app.on("job_completed", lambda event: seen.append((event.name, event.job.id)))

    @app.task
    def forever() -> None:
        forever.enqueue()

    first = forever.enqueue()
    with pytest.raises(RuntimeError, match="drain\\(\\) ran 3 jobs and more are due"):
        drain(app, max_jobs=3)
    assert seen[:2] == [("job_started", first), ("job_completed", first)]
    assert len(seen) == 6
    # Nothing was claimed and then left: the next job waits, pending, for another drain.
    assert [job.status for job in app.list_jobs(status="running")] == []
    assert len(app.list_jobs(status="pending")) == 1


def test_unknown_tasks_fail_for_good_in_drain(app: pgq.App) -> None:
    app.enqueue("nobody_registered_me")
    [outcome] = drain(app)
    assert outcome.status == "failed" and outcome.error is not None and outcome.error["type"] == "UnknownTask"


async def test_drain_async_and_the_sync_helpers_refuse_a_running_loop(app: pgq.App) -> None:
    @app.task
    async def ping() -> str:
        await asyncio.sleep(0)
        return "pong"

    await ping.enqueue_async()
    [outcome] = await drain_async(app)
    assert outcome.result == "pong"
    with pytest.raises(RuntimeError, match="use `await drain_async"):
        drain(app)
    with pytest.raises(RuntimeError, match="use `await run_job_async"):
        run_job(app, ping)
    assert (await run_job_async(app, ping)).result == "pong"


# ------------------------------------------------------------------ run_job

offline = pgq.App("postgresql://nobody@127.0.0.1:1/nothing")  # run_job never connects


@offline.task(pass_context=True, max_attempts=4)
def resize(ctx: pgq.JobContext, image_id: int, sizes: list[int]) -> dict[str, Any]:
    ctx.set_progress(0.5, "half way")
    if image_id < 0:
        raise pgq.Retry(30, "storage busy")
    if image_id == 0:
        raise pgq.PermanentError("no such image")
    if image_id == 13:
        raise ValueError("unlucky")
    return {"job": ctx.job.id, "attempt": ctx.attempt, "sizes": sizes, "queue": ctx.job.queue}


def test_run_job_calls_the_handler_with_a_real_context_and_no_database() -> None:
    outcome = run_job(offline, resize, {"image_id": 1, "sizes": (100, 200)}, job_id=42, attempt=2)
    assert outcome.completed
    # The args went through JSON, as from the queue: the tuple arrives as a list.
    assert outcome.result == {"job": 42, "attempt": 2, "sizes": [100, 200], "queue": "default"}
    assert outcome.progress == 0.5
    assert outcome.job.max_attempts == 4


def test_run_job_classifies_errors_like_a_worker() -> None:
    retry = run_job(offline, "resize", {"image_id": -1, "sizes": []})
    assert retry.status == "retry" and retry.retry_in == 30
    assert retry.error is not None and retry.error["message"] == "storage busy"
    assert run_job(offline, resize, {"image_id": 0, "sizes": []}).status == "failed"
    first = run_job(offline, resize, {"image_id": 13, "sizes": []})
    assert first.status == "retry" and first.error is not None and first.error["message"] == "unlucky"
    last = run_job(offline, resize, {"image_id": 13, "sizes": []}, attempt=4)
    assert last.status == "failed" and last.error is not None and last.error["type"] == "ValueError"


def test_run_job_rejects_what_enqueue_would_reject() -> None:
    with pytest.raises(pgq.InvalidJob, match="image_id"):
        run_job(offline, resize, {"sizes": []})
    with pytest.raises(pgq.ArgsNotSerializable):
        run_job(offline, resize, {"image_id": 1, "sizes": {1, 2}})
    with pytest.raises(pgq.UnknownTask, match="it knows resize"):
        run_job(offline, "resise", {})
    with pytest.raises(ValueError, match="attempt must be between 1 and max_attempts \\(4\\)"):
        run_job(offline, resize, {"image_id": 1, "sizes": []}, attempt=5)
    # The options are keywords of a TypedDict: a misspelt one is an error, never ignored.
    with pytest.raises(
        TypeError,
        match=r"run_job\(\) got an unexpected keyword argument 'atempt'; "
        "its options: attempt, max_attempts, queue, job_id",
    ):
        run_job(offline, resize, {"image_id": 1, "sizes": []}, atempt=2)  # type: ignore[call-arg]


def test_a_misspelt_field_to_match_is_an_error_not_a_match_of_anything(app: pgq.App) -> None:
    app.enqueue("send", {"to": "ada@example.com"}, queue="mail")
    with pytest.raises(TypeError, match="no field qeue to match; give queue, priority, key, delayed"):
        refute_enqueued(app, "send", qeue="other")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no field qeue"):
        assert_enqueued(app, "send", qeue="mail")  # type: ignore[call-arg]


# ------------------------------------------------------------- use_database


def test_use_database_points_an_existing_app_at_the_test_database(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGQ_LISTEN_URL", "postgresql://nobody@127.0.0.1:1/production")
    module_app = pgq.App("postgresql://nobody@127.0.0.1:1/nothing", pooler="transaction")

    @module_app.task
    def hello() -> None: ...

    with use_database(module_app, database_url) as bound:
        assert bound is module_app
        # Production's pooler and LISTEN URL do not follow the app into the test's database.
        assert module_app.direct_url == module_app.url == database_url
        hello.enqueue()
        assert_enqueued(module_app, hello)
        assert [o.status for o in drain(module_app)] == ["completed"]
    assert module_app.settings.database_url == "postgresql://nobody@127.0.0.1:1/nothing"
    assert module_app.settings.pooler == "transaction" and module_app.settings.listen_url is not None
    assert not module_app.db.started  # nothing of the test's database is kept


# ------------------------------------------------------------- the plugin

USER_TASKS = """
import pgq

app = pgq.App()


@app.task(queue="emails")
def send(to: str) -> str:
    return f"sent to {to}"


@app.task
def signup(email: str) -> None:
    send.enqueue(to=email)
"""

USER_TESTS = """
import pgq
from pgq.testing import assert_enqueued, drain, refute_enqueued

from {module} import app, send, signup


def test_signup_sends_a_welcome(pgq_app):
    assert pgq_app is app
    signup.enqueue(email="ada@example.com")
    assert_enqueued(app, signup, {{"email": "ada@example.com"}})
    outcomes = drain(app)
    assert [(o.job.task, o.status) for o in outcomes] == [("signup", "completed"), ("send", "completed")]
    assert outcomes[1].result == "sent to ada@example.com"
    refute_enqueued(app)


def test_each_test_gets_a_fresh_database(pgq_app, pgq_database_url):
    assert pgq_app.url == pgq_database_url
    assert pgq_app.list_jobs() == []
    send.enqueue(to="bob@example.com")
    assert len(pgq_app.list_jobs()) == 1


def test_a_plain_app_without_the_ini_option(pgq_database_url):
    with pgq.App(pgq_database_url) as other:
        assert other.list_jobs() == []
"""


def _user_project(pytester: pytest.Pytester, module: str) -> None:
    pytester.makepyfile(**{module: USER_TASKS, f"test_{module}": USER_TESTS.format(module=module)})
    pytester.makeini(f"[pytest]\npgq_app = {module}:app\nasyncio_default_fixture_loop_scope = function\n")


def test_plugin_on_the_servers_of_pgq_test_database_url(
    pytester: pytest.Pytester, pg_server: pgservers.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGQ_TEST_DATABASE_URL", pg_server.url)
    monkeypatch.delenv("PGQ_DATABASE_URL", raising=False)
    _user_project(pytester, f"tasks_{pg_server.name}")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    # The session dropped its template and every test database (this suite's own
    # template, made by pgq.testing too, is on the same server).
    import psycopg

    assert pg_server.databases is not None
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        left = conn.execute(r"select datname from pg_database where datname ~ '^pgq_(template|test)_[0-9a-f]+$'")
        names = [row[0] for row in left if row[0] != pg_server.databases.template]
    assert names == []


def test_the_default_app_fixture_and_a_user_override(
    pytester: pytest.Pytester, pg_server: pgservers.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGQ_TEST_DATABASE_URL", pg_server.url)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(
        """
import pgq
import pytest


@pytest.fixture
def pgq_app(pgq_database_url):
    app = pgq.App(pgq_database_url, concurrency=3)   # a project's own factory

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    yield app
    app.close()
"""
    )
    pytester.makepyfile(
        test_override="""
from pgq.testing import drain


def test_factory(pgq_app):
    assert pgq_app.settings.concurrency == 3
    pgq_app.enqueue("add", {"a": 2, "b": 3})
    assert [o.result for o in drain(pgq_app)] == [5]
""",
    )
    pytester.makepyfile(
        test_default="""
def test_default(pgq_database_url):
    assert "dbname=pgq_test_" in pgq_database_url
""",
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_off="def test_needs_it(pgq_app): pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:pgq")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'pgq_app' not found*"])


@pytest.mark.slow
def test_plugin_starts_an_embedded_postgresql_by_default(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGQ_TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("PGQ_DATABASE_URL", raising=False)
    _user_project(pytester, "tasks_embedded")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
