"""Task renames: @app.task(name="new", aliases=["old"]) runs the jobs stored under
the old name (issue 17)."""

from __future__ import annotations

from typing import Any

import pytest

import pgq
from tests.test_worker import finished, job, run_until


async def test_jobs_stored_under_a_former_name_run_with_the_renamed_task(app: pgq.App, conn: Any) -> None:
    # Enqueued before the rename (or by a service that still says the old name).
    old = conn.execute("select pgq.enqueue('send_mail', '{\"to\": \"a@example.com\"}') as id").fetchone()["id"]

    @app.task(name="send_email", aliases=["send_mail", "mail.send"])
    def send_email(to: str) -> str:
        return f"sent to {to}"

    new = app.enqueue("mail.send", {"to": "b@example.com"})
    many = app.enqueue_many([pgq.JobSpec(task="send_mail", args={"to": "c@example.com"})])
    workers: list[list[str]] = []

    def done_and_registered() -> bool:
        workers[:] = [row["tasks"] for row in conn.execute("select tasks from pgq.workers").fetchall()]
        return finished(app, [old, new, *many])()

    await run_until(app, done_and_registered)
    assert [job(app, i).result for i in (old, new, *many)] == [
        "sent to a@example.com",
        "sent to b@example.com",
        "sent to c@example.com",
    ]
    # A stored row keeps its name; what app.enqueue writes takes the current one.
    assert [job(app, i).task for i in (old, new, *many)] == ["send_mail", "send_email", "send_email"]
    # The worker says it runs every name, so that `pgq explain` counts it for old jobs too.
    assert workers == [["mail.send", "send_email", "send_mail"]]


def test_a_former_name_finds_the_task_but_is_not_a_key(app: pgq.App) -> None:
    @app.task(name="report", aliases=("build_report",))
    def report() -> None:
        pass

    assert list(app.tasks) == ["report"] and len(app.tasks) == 1
    assert "build_report" in app.tasks and app.tasks["build_report"] is report
    assert app.tasks.get("build_report") is report and app.tasks.get("nope") is None
    assert app.tasks.names() == ["build_report", "report"]


@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        ("old", r"aliases of task 'renamed' must be a list of former names, e\.g\. aliases=\['old_name'\]"),
        ([""], r"alias '' of task 'renamed' is not a task name"),
        ([7], r"alias 7 of task 'renamed' is not a task name"),
        (["x" * 256], r"is not a task name \(a non-empty string of at most 255 characters\)"),
        (["renamed"], r"task 'renamed' lists its own name in aliases="),
        (["other"], r"alias 'other' of task 'renamed' is the name of another task"),
        (["taken"], r"alias 'taken' of task 'renamed' is already an alias of 'other'"),
    ],
)
def test_bad_aliases_are_refused_at_registration(app: pgq.App, aliases: Any, message: str) -> None:
    @app.task(name="other", aliases=["taken"])
    def other() -> None:
        pass

    with pytest.raises(pgq.ConfigurationError, match=message):

        @app.task(name="renamed", aliases=aliases)
        def renamed() -> None:
            pass

    assert "renamed" not in app.tasks, "a refused task is not registered"


def test_a_former_name_cannot_be_reused_for_a_new_task(app: pgq.App) -> None:
    @app.task(name="v2", aliases=["v1"])
    def v2() -> None:
        pass

    with pytest.raises(pgq.ConfigurationError, match="task name 'v1' is already an alias of task 'v2'"):

        @app.task(name="v1")
        def v1() -> None:
            pass

    assert app.tasks["v1"] is v2
