"""What is waiting in the queue: ``assert_enqueued``, ``refute_enqueued``, ``enqueued_jobs``.

They read the database (``pgq.jobs``) through the app, so they see what a
worker would see: jobs committed by any connection, and none that a rolled-back
transaction wrote.
"""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

from pgq.app import App, TaskRef
from pgq.db import store
from pgq.job import LIVE_STATUSES, Job
from pgq.task import Task

#: Statuses that count as "enqueued": waiting to run, delayed or not. A running job is no longer enqueued.
WAITING = tuple(status for status in LIVE_STATUSES if status != "running")
#: Jobs listed in a failed assertion's message.
SHOWN = 20
_PAGE = 1_000


def _task_name(task: TaskRef | None) -> str | None:
    if task is None or isinstance(task, str):
        return task
    if isinstance(task, Task):
        return task.name
    raise TypeError(f"task must be a task name or a pgq.Task, got {task!r}")


def enqueued_jobs(app: App, task: TaskRef | None = None, *, queue: str | None = None) -> list[Job]:
    """Every job waiting to run (``pending``, delayed ones included, or ``blocked``),
    oldest first, optionally of one task and queue."""
    name = _task_name(task)
    jobs: list[Job] = []
    for status in WAITING:
        before: int | None = None
        while True:
            page = app.list_jobs(status=status, task=name, queue=queue, limit=_PAGE, before_id=before)
            jobs.extend(page)
            if len(page) < _PAGE:
                break
            before = page[-1].id
    return sorted(jobs, key=lambda job: job.id)


def _contains(actual: Any, expected: Any) -> bool:
    """``actual`` holds ``expected``: objects key by key (recursively, like jsonb's ``@>``), other values equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and _contains(actual[key], value) for key, value in expected.items()
        )
    if isinstance(expected, tuple):
        expected = list(expected)  # args went through JSON: tuples come back as lists
    return bool(actual == expected)


class JobMatch(TypedDict, total=False):
    """The fields :func:`assert_enqueued` and :func:`refute_enqueued` compare, besides the
    task and its args; a field left out (or ``None``) matches any job."""

    queue: str | None
    priority: int | None
    key: str | None
    delayed: bool | None
    """True: a job whose ``run_at`` is in the future (database clock); False: a due one."""


def _find(
    app: App, task: TaskRef | None, args: dict[str, Any] | None, match: JobMatch
) -> tuple[list[Job], list[Job], str]:
    if unknown := match.keys() - JobMatch.__optional_keys__:
        raise TypeError(f"no field {', '.join(sorted(unknown))} to match; give {', '.join(JobMatch.__annotations__)}")
    queue, priority, key, delayed = (match.get(field) for field in ("queue", "priority", "key", "delayed"))
    if args is not None and not isinstance(args, dict):
        raise TypeError(f"args must be a dict (matched as a subset of each job's args), got {args!r}")
    name = _task_name(task)
    waiting = enqueued_jobs(app)
    now: Any = store.db_now.run(app.db, {})[0]["db_now"] if delayed is not None else None
    matches = [
        job
        for job in waiting
        if (name is None or job.task == name)
        and (queue is None or job.queue == queue)
        and (priority is None or job.priority == priority)
        and (key is None or job.key == key)
        and (args is None or _contains(job.args, args))
        and (delayed is None or (job.run_at > now) is delayed)
    ]
    given = {"task": name, "args": args, "queue": queue, "priority": priority, "key": key, "delayed": delayed}
    wanted = ", ".join(f"{field}={value!r}" for field, value in given.items() if value is not None) or "any job"
    return matches, waiting, wanted


def _describe(jobs: list[Job]) -> str:
    if not jobs:
        return "Nothing is enqueued."
    lines = [f"Enqueued ({len(jobs)}):"]
    for job in jobs[:SHOWN]:
        extra = f" key={job.key!r}" if job.key is not None else ""
        lines.append(
            f"  #{job.id} {job.task} queue={job.queue!r} priority={job.priority} "
            f"run_at={job.run_at.isoformat()}{extra} args={job.args!r}"
        )
    if len(jobs) > SHOWN:
        lines.append(f"  ... and {len(jobs) - SHOWN} more")
    return "\n".join(lines)


def assert_enqueued(
    app: App,
    task: TaskRef | None = None,
    args: dict[str, Any] | None = None,
    *,
    count: int | None = None,
    **match: Unpack[JobMatch],
) -> list[Job]:
    """Assert that a waiting job matches every field given, and return the matches.

    Only the fields you pass are compared. ``args`` is a subset match: each key
    given must be in the job's args with an equal value (nested objects are
    compared the same way, like PostgreSQL's ``@>``). ``delayed=True`` wants a
    job whose ``run_at`` is in the future (database clock), ``False`` a due one.
    ``count`` asks for exactly that many matching jobs instead of at least one.
    The error message lists what is enqueued.
    """
    matches, waiting, wanted = _find(app, task, args, match)
    if count is not None:
        if len(matches) != count:
            raise AssertionError(
                f"expected {count} enqueued job(s) matching {wanted}, found {len(matches)}.\n{_describe(waiting)}"
            )
    elif not matches:
        raise AssertionError(f"no enqueued job matches {wanted}.\n{_describe(waiting)}")
    return matches


def refute_enqueued(
    app: App, task: TaskRef | None = None, args: dict[str, Any] | None = None, **match: Unpack[JobMatch]
) -> None:
    """Assert that no waiting job matches every field given (same matching as
    :func:`assert_enqueued`; with no field at all: that nothing is enqueued)."""
    matches, _, wanted = _find(app, task, args, match)
    if matches:
        raise AssertionError(f"expected no enqueued job matching {wanted}, found {len(matches)}.\n{_describe(matches)}")
