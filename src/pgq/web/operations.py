"""The actions the dashboard and its API offer, mapped onto :class:`pgq.App` and its errors.

Every action is a call of the Python operations API: the web layer holds no
SQL of its own for changing jobs, queues or schedules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool

from pgq.errors import ConfigurationError, DatabaseUnavailable, InvalidJob, InvalidState, JobNotFound, NotMigrated

if TYPE_CHECKING:
    from pgq.app import App
    from pgq.job import Job

T = TypeVar("T")
K = TypeVar("K")

SCHEDULE_ACTIONS = ("enable", "disable", "trigger")


class WebError(Exception):
    """An error with its HTTP status; its message says what was wrong and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


#: What a lost database looks like from here: pgq's own error, a pool that found no
#: connection in time, and a connection the server closed (a restart: AdminShutdown).
DATABASE_GONE = (DatabaseUnavailable, PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError)


def unreachable(exc: BaseException) -> WebError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return WebError(503, f"the database is unreachable ({reason}); pages and the API answer again once it is back")


async def read(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """:func:`call` for a read, tried a second time when the first met a connection the server had
    closed: after a database restart the pool still holds those, and a read can simply be run again."""
    try:
        return await call(fn, *args, **kwargs)
    except WebError as exc:
        cause = exc.__cause__
        if exc.status != 503 or not isinstance(cause, psycopg.OperationalError) or isinstance(cause, PoolTimeout):
            raise
    return await call(fn, *args, **kwargs)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (blocking) App method in a worker thread, turning pgq's errors into :class:`WebError`."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except NotMigrated as exc:
        raise WebError(503, str(exc)) from None
    except DATABASE_GONE as exc:
        raise unreachable(exc) from exc
    except JobNotFound as exc:
        raise WebError(404, str(exc)) from None
    except InvalidState as exc:
        raise WebError(409, str(exc)) from None
    except InvalidJob as exc:
        raise WebError(422, str(exc)) from None
    except ConfigurationError as exc:
        raise WebError(422, str(exc)) from None
    except psycopg.DataError as exc:
        # A value PostgreSQL refuses (a NUL byte, a date out of range, ...): the input's fault.
        raise WebError(422, f"the database refused a value: {str(exc).strip().splitlines()[0]}") from None


#: An action on a job (K: its id) or a queue (K: its name): the App call it makes, and what
#: happened in words, from the job or queue and what the call returned.
Action = tuple[Callable[["App", K], Any], Callable[[K, Any], str]]

JOB_ACTIONS: dict[str, Action[int]] = {
    "retry": (lambda app, job_id: app.retry(job_id), lambda job_id, _: f"job {job_id} is back in its queue"),
    "cancel": (
        lambda app, job_id: app.cancel(job_id),
        lambda job_id, outcome: (
            f"job {job_id} is running: its worker was asked to stop it"
            if outcome == "cancelling"
            else f"job {job_id} cancelled"
        ),
    ),
    "promote": (lambda app, job_id: app.promote(job_id), lambda job_id, _: f"job {job_id} runs now"),
    "remove": (lambda app, job_id: app.delete(job_id), lambda job_id, _: f"job {job_id} deleted"),
}
QUEUE_ACTIONS: dict[str, Action[str]] = {
    "pause": (
        lambda app, name: app.pause_queue(name),
        lambda name, _: f"queue {name} paused: workers take none of its jobs until it is resumed",
    ),
    "resume": (lambda app, name: app.resume_queue(name), lambda name, _: f"queue {name} resumed"),
    "retry-failed": (
        lambda app, name: app.retry_failed(queue=name),
        lambda name, count: f"queue {name}: {count} failed job{'s' if count != 1 else ''} back in the queue",
    ),
}


async def _act(app: App, actions: dict[str, Action[K]], action: str, target: K) -> str:
    """Do ``action`` (one of ``actions``) to ``target``; returns what happened, in words."""
    if action not in actions:
        raise WebError(422, f"unknown action {action!r}; use one of {', '.join(actions)}")
    do, said = actions[action]
    return said(target, await call(do, app, target))


async def job_action(app: App, job_id: int, action: str) -> str:
    """Do ``action`` to job ``job_id``; returns what happened, in words."""
    return await _act(app, JOB_ACTIONS, action, job_id)


async def schedule_action(app: App, name: str, action: str) -> tuple[str, int | None]:
    """Do ``action`` to schedule ``name``; returns what happened, and the job a trigger enqueued."""
    if action not in SCHEDULE_ACTIONS:
        raise WebError(422, f"unknown action {action!r}; use one of {', '.join(SCHEDULE_ACTIONS)}")
    if await call(app.get_schedule, name) is None:
        raise WebError(404, f"no schedule named {name!r}; GET /api/schedules lists them")
    if action == "trigger":
        job_id = await call(app.trigger_schedule, name)
        return f"schedule {name}: job {job_id} enqueued", job_id
    await call(app.enable_schedule, name, action == "enable")
    return f"schedule {name} {action}d", None


async def queue_action(app: App, name: str, action: str) -> str:
    """Do ``action`` to queue ``name``; returns what happened, in words."""
    return await _act(app, QUEUE_ACTIONS, action, name)


#: The limits a queue's form and ``POST /api/queues/{name}/limits`` may change (``pgq queues set``).
LIMITS = ("concurrency", "rate", "group_concurrency", "group_rate", "max_pending", "group_max_pending", "on_full")


def limit_changes(fields: dict[str, Any], *, empty_removes: bool) -> dict[str, Any]:
    """The limits in ``fields`` (a form's text or the API's JSON), checked as ``pgq queues set`` checks
    them; an empty text (a cleared form field) removes the limit when ``empty_removes``."""
    from pgq.flow import parse_count, parse_on_full, parse_rate

    parsers: dict[str, Callable[[Any], Any]] = {
        "concurrency": lambda v: parse_count(v, "concurrency"),
        "rate": lambda v: parse_rate(v, "rate"),
        "group_concurrency": lambda v: parse_count(v, "group concurrency"),
        "group_rate": lambda v: parse_rate(v, "group rate"),
        "max_pending": lambda v: parse_count(v, "max pending", minimum=0),
        "group_max_pending": lambda v: parse_count(v, "group max pending", minimum=0),
        "on_full": parse_on_full,
    }
    changes: dict[str, Any] = {}
    try:
        for name in LIMITS:
            if name not in fields:
                continue
            value = fields[name]
            if empty_removes and isinstance(value, str) and not value.strip():
                value = None if name != "on_full" else "reject"
            changes[name] = parsers[name](value)
    except ConfigurationError as exc:
        raise WebError(422, str(exc)) from None
    if not changes:
        raise WebError(422, f"nothing to set: give at least one of {', '.join(LIMITS)}")
    return changes


async def set_limits(app: App, name: str, changes: dict[str, Any]) -> str:
    from pgq.output import limits_text

    info = await call(app.set_queue, name, **changes)
    return f"queue {name}: {limits_text(info) if limits_text(info) != '-' else 'no limits'}"


def args_filter(text: str | None) -> dict[str, Any] | None:
    """The ``args`` filter of a job list (a JSON object the jobs' args contain), or a 422
    saying what is wrong with it. Empty: no filter."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise WebError(422, f'args must be a JSON object such as {{"user_id": 7}}; got {text[:100]!r}') from None
    if not isinstance(value, dict):
        raise WebError(422, f'args must be a JSON object such as {{"user_id": 7}}, not {type(value).__name__}')
    return value


#: The job list's filters, as a form or query names them (a :class:`pgq.bulk.JobFilter`).
FILTER_FIELDS = ("status", "queue", "task", "key", "tag", "args")


def bulk_priority(text: str | None) -> int:
    """The priority field of the bulk form: a whole number, or a 422 that says so."""
    value = (text or "").strip()
    if not value.lstrip("-").isdigit() or not value.isascii():
        raise WebError(422, f"priority must be a whole number (higher runs first), got {value!r}")
    return int(value)


def edit_changes(fields: dict[str, str], current: Job) -> dict[str, Any]:
    """What the job page's Edit form changes: each field that differs from ``current``
    (args and run_at only when typed in), parsed, or a 422 naming the field."""
    changes: dict[str, Any] = {}
    for name in ("priority", "max_attempts"):
        text = (fields.get(name) or "").strip()
        if text and text != str(getattr(current, name)):
            if not text.isascii() or not text.lstrip("-").isdigit():
                raise WebError(422, f"{name.replace('_', ' ')} must be a whole number, got {text!r}")
            changes[name] = int(text)
    tags = (fields.get("tags") or "").replace(",", " ").split()
    if tags != (current.tags or []):
        changes["tags"] = tags
    run_at = (fields.get("run_at") or "").strip()
    if run_at:
        try:
            changes["run_at"] = datetime.fromisoformat(run_at)
        except ValueError:
            raise WebError(
                422, f"run at must be an ISO 8601 time with a zone, e.g. 2026-12-01T09:00:00+00:00; got {run_at!r}"
            ) from None
    args = args_filter(fields.get("args"))
    if args is not None:
        changes["args"] = args
    return changes
