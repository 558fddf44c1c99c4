"""Suspects (jobs whose process died under them before) run in a child process.

The sweeper gives a job's first crash its attempt back and records a ``WorkerDied``
entry; from then on workers run the job in a fresh Python process of its own
(pgq.worker.isolation). These tests put such an entry on a job by SQL, run an
in-process worker over tests/apps/isolated.py, and tell where each handler ran by
the pids it returns. The whole story with real ``pgq worker`` processes killed under
a poison job is tests/faults/test_crashes.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import pgq
from pgq.job import crash_count
from pgq.testing.databases import use_database
from pgq.web import create_app
from pgq.worker import isolation
from tests.apps import isolated
from tests.openapi_check import CheckedClient
from tests.processes import pgq_cli

CRASH = {"attempt": 1, "type": "WorkerDied", "message": "worker died (test)", "charged": False}
#: What the sweeper leaves on a job that died with its worker twice: a suspect (SUSPECT_AT).
CRASHES = [CRASH, {**CRASH, "message": "worker died again (test)"}]


@pytest.fixture
def app(database_url: str) -> Iterator[pgq.App]:
    with use_database(isolated.app, database_url) as application:
        yield application


def suspect(app: pgq.App, conn: Any, task: str, args: dict[str, Any] | None = None) -> int:
    """Enqueue ``task`` as a job the sweeper rescued twice from a dead worker."""
    job_id = app.enqueue(task, args or {})
    conn.execute("update pgq.jobs set errors = %s::jsonb where id = %s", (json.dumps(CRASHES), job_id))
    return job_id


def settled(app: pgq.App, ids: list[int]) -> Callable[[], bool]:
    """Every job finished, or back to pending with a new error entry (a retry)."""

    def check() -> bool:
        jobs = [app.get_job(i) for i in ids]
        return all(j is not None and (j.is_finished or len(j.errors) > len(CRASHES)) for j in jobs)

    return check


async def run_until(app: pgq.App, done: Callable[[], bool], timeout: float = 60.0) -> None:
    async with app.worker(poll_interval=0.2):
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(done):
            assert time.monotonic() < deadline, f"jobs not settled within {timeout} s"
            await asyncio.sleep(0.05)


def job(app: pgq.App, job_id: int) -> pgq.Job:
    found = app.get_job(job_id)
    assert found is not None
    return found


async def test_a_suspect_runs_in_a_child_and_the_rest_in_the_worker(app: pgq.App, conn: Any) -> None:
    ids = {
        "suspect": suspect(app, conn, "whoami"),
        "suspect_async": suspect(app, conn, "whoami_async"),
        "innocent": app.enqueue("whoami", {}),
        "failed_before": app.enqueue("whoami", {}),
    }
    # An attempt that raised is no crash: the job stays in the worker.
    entry = {"attempt": 1, "type": "ValueError", "message": "an ordinary failure"}
    conn.execute("update pgq.jobs set errors = %s::jsonb where id = %s", (json.dumps([entry]), ids["failed_before"]))
    await run_until(app, settled(app, list(ids.values())))
    results = {name: job(app, i) for name, i in ids.items()}
    assert all(j.status == "completed" for j in results.values()), results
    for name in ("suspect", "suspect_async"):
        ran = results[name].result
        assert ran["pid"] != os.getpid() and ran["ppid"] == os.getpid(), f"{name} ran in {ran}"
        assert results[name].attempts == 1, "a suspect that completes costs no attempt"
    for name in ("innocent", "failed_before"):
        assert results[name].result["pid"] == os.getpid(), f"{name} ran in a child"


async def test_children_are_reused_and_a_dead_one_is_replaced(app: pgq.App, conn: Any) -> None:
    """A child takes suspect after suspect (one Python start-up per child, not per job),
    at most AT_ONCE of them; the next suspect after a crash gets a fresh child."""
    ids = [suspect(app, conn, "whoami") for _ in range(3 * isolation.AT_ONCE)]
    await run_until(app, settled(app, ids))
    pids = {job(app, i).result["pid"] for i in ids}
    assert len(pids) <= isolation.AT_ONCE and os.getpid() not in pids, pids

    # In one worker: the poison first, then (a second later) suspects enough to need every child.
    poison = suspect(app, conn, "dies", {"code": 5})
    later = [suspect(app, conn, "whoami") for _ in range(2 * isolation.AT_ONCE)]
    conn.execute("update pgq.jobs set run_at = now() + interval '1 second' where id = any(%s)", (later,))
    await run_until(app, settled(app, [poison, *later]))
    after = later[-1]
    assert all(job(app, i).status == "completed" for i in later)
    assert job(app, poison).errors[-1]["type"] == "Crashed"
    assert job(app, after).status == "completed" and job(app, after).attempts == 1


async def test_a_child_killed_while_idle_is_not_blamed_on_the_next_job(app: pgq.App, conn: Any) -> None:
    async with app.worker(poll_interval=0.2):
        first = suspect(app, conn, "whoami")
        while not job(app, first).is_finished:
            await asyncio.sleep(0.05)
        idle_child = job(app, first).result["pid"]
        os.kill(idle_child, signal.SIGKILL)  # the OOM killer, say, picks the idle child
        await asyncio.sleep(0.2)
        ids = [suspect(app, conn, "whoami") for _ in range(isolation.AT_ONCE)]
        deadline = time.monotonic() + 30
        while not all(job(app, i).is_finished for i in ids):
            assert time.monotonic() < deadline, [job(app, i) for i in ids]
            await asyncio.sleep(0.05)
    for i in ids:
        done = job(app, i)
        assert done.status == "completed" and done.attempts == 1 and done.errors == CRASHES, done
        assert done.result["pid"] != idle_child


async def test_a_suspect_gets_its_context_in_the_child(
    app: pgq.App, conn: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    job_id = suspect(app, conn, "context")
    await run_until(app, settled(app, [job_id]))
    done = job(app, job_id)
    assert done.status == "completed"
    assert done.result["attempt"] == 1 and done.result["job_id"] == job_id
    assert done.result["pid"] != os.getpid()
    assert "a handler's print goes to the worker's output" in capfd.readouterr().out


async def test_what_a_handler_raises_in_the_child_is_classified_as_in_the_worker(app: pgq.App, conn: Any) -> None:
    plain = suspect(app, conn, "fails", {"kind": "plain"})
    permanent = suspect(app, conn, "fails", {"kind": "permanent"})
    retry = suspect(app, conn, "fails", {"kind": "retry"})
    await run_until(app, settled(app, [plain, permanent, retry]))

    failed_once = job(app, plain)
    assert failed_once.status == "pending" and failed_once.attempts == 1
    last = failed_once.errors[-1]
    assert last["type"] == "ValueError" and last["message"] != f"failed in process {os.getpid()}"
    assert 'raise ValueError(f"failed in process' in last["traceback"], "the child's traceback is kept"

    ended = job(app, permanent)
    assert ended.status == "failed" and ended.errors[-1]["type"] == "PermanentError"
    assert ended.errors[-1]["permanent"] is True and ended.errors[-1]["message"] == "no point in trying again"

    retried = job(app, retry)
    assert retried.status == "pending" and retried.errors[-1]["type"] == "Retry"
    assert retried.errors[-1]["message"] == "asked to come back"
    assert retried.run_at > retried.created_at


async def test_a_snooze_raised_in_the_child_is_a_snooze(app: pgq.App, conn: Any) -> None:
    snoozing = suspect(app, conn, "fails", {"kind": "snooze"})
    await run_until(app, lambda: job(app, snoozing).snoozes > 0)
    snoozed = job(app, snoozing)
    assert snoozed.status == "pending" and snoozed.snoozes == 1
    assert snoozed.attempts == 0, "the attempt was given back"
    assert snoozed.errors == CRASHES, "a snooze writes no error entry"
    assert (snoozed.run_at - snoozed.created_at).total_seconds() >= 7


async def test_a_suspect_that_kills_its_child_is_charged_a_crash(app: pgq.App, conn: Any) -> None:
    poison = suspect(app, conn, "dies", {"code": 7})
    after = app.enqueue("whoami", {})
    await run_until(app, settled(app, [poison, after]))
    charged = job(app, poison)
    assert charged.status == "pending" and charged.attempts == 1
    last = charged.errors[-1]
    assert last["type"] == "Crashed"
    assert (
        last["message"]
        == "crashed its worker 3 times: ran alone in a child process, which exited with code 7 before answering"
    )
    assert job(app, after).status == "completed", "the worker outlives the poison"

    # Out of attempts, a crash ends the job failed.
    conn.execute("update pgq.jobs set attempts = max_attempts - 1, run_at = now() where id = %s", (poison,))
    await run_until(app, lambda: job(app, poison).is_finished)
    final = job(app, poison)
    assert final.status == "failed" and final.errors[-1]["type"] == "Crashed"
    assert "crashed its worker 4 times" in final.errors[-1]["message"]


async def test_a_timeout_kills_the_child(app: pgq.App, conn: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    job_id = suspect(app, conn, "hangs", {"pid_file": str(pid_file)})
    await run_until(app, settled(app, [job_id]))
    timed_out = job(app, job_id)
    assert timed_out.errors[-1]["type"] == "Timeout", timed_out.errors
    child = int(pid_file.read_text())
    assert child != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # killed and reaped, not left sleeping


def test_only_handlers_a_fresh_process_can_import_are_suspects() -> None:
    local = pgq.App()

    @local.task
    def nested() -> None: ...

    now = datetime.now(UTC)

    def with_errors(*errors: dict[str, Any]) -> pgq.Job:
        return pgq.Job(1, "default", "t", {}, 0, "running", 1, 3, now, now, errors=list(errors))

    whoami = isolated.app.tasks["whoami"]
    assert isolation.suspect(with_errors(*CRASHES), whoami)
    assert isolation.suspect(with_errors(CRASH, {"type": "Crashed"}), whoami)
    assert not isolation.suspect(with_errors(CRASH), whoami), "one crash: a deploy's kill, most likely"
    assert not isolation.suspect(with_errors({"type": "Timeout"}, {"type": "ValueError"}), whoami)
    assert not isolation.suspect(with_errors(), whoami)
    # Defined inside a function: a fresh process cannot import it, so it runs in the worker.
    assert not isolation.suspect(with_errors(*CRASHES), local.tasks["nested"])
    assert crash_count([CRASH, {"type": "Crashed"}, {"type": "ValueError"}, "not an entry"]) == 2
    assert crash_count("not a list") == 0


async def test_explain_jobs_show_and_the_dashboard_say_a_job_crashed(
    app: pgq.App, conn: Any, database_url: str
) -> None:
    innocent = suspect(app, conn, "whoami")
    poison = suspect(app, conn, "dies", {"code": 3})
    once = app.enqueue("whoami", {})
    conn.execute("update pgq.jobs set errors = %s::jsonb where id = %s", (json.dumps([CRASH]), once))
    never = app.enqueue("whoami", {})
    live = "its process died under it 2 times; it runs alone in a child process until it ends"
    assert job(app, innocent).crash_note() == live
    assert app.explain(innocent).splitlines()[-1] == f"job {innocent}: {live}"
    assert job(app, once).crash_note() == "its process died under it once; it runs as usual"
    assert app.explain(once).splitlines()[-1] == f"job {once}: its process died under it once; it runs as usual"
    assert job(app, never).crash_note() is None and "process" not in app.explain(never)

    conn.execute("update pgq.jobs set max_attempts = 1 where id = %s", (poison,))
    await run_until(app, lambda: all(job(app, i).is_finished for i in (poison, innocent, once)))
    done = "its process died under it 2 times; then it ran alone in a child process"
    assert job(app, innocent).crash_note() == done
    assert app.explain(innocent).splitlines()[-1] == f"job {innocent}: {done}"
    assert job(app, once).crash_note() == "its process died under it once"
    assert job(app, once).result["pid"] == os.getpid(), "one crash: it ran in the worker"
    failed = job(app, poison)
    note = "crashed 3 times, the last alone in a child process: a poison job"
    assert failed.status == "failed" and failed.crash_note() == note
    assert app.explain(poison).splitlines()[-1] == f"job {poison} {note}"

    shown = pgq_cli(database_url, "jobs", "show", str(poison))
    assert shown.returncode == 0, shown.stderr
    assert f"  crashes     {note}" in shown.stdout
    assert "  attempt 1 died, not charged at " in shown.stdout and "  attempt 1 failed at " in shown.stdout

    with CheckedClient(create_app(app), base_url="http://127.0.0.1") as dashboard:
        page = dashboard.get(f"/jobs/{poison}")
        assert page.status_code == 200
        assert f'<dt>crashes</dt><dd data-job-crashes="{poison}">{note}</dd>' in page.text
        assert page.text.count("</strong> died, not charged ") == 2 and "</strong> failed " in page.text
        assert "data-job-crashes" not in dashboard.get(f"/jobs/{never}").text
