"""What a job is, in Python: the row (:class:`Job`) and the request (:class:`JobSpec`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, TypedDict

LIVE_STATUSES = ("pending", "running", "blocked")
FINISHED_STATUSES = ("completed", "failed", "cancelled")
STATUSES = LIVE_STATUSES + FINISHED_STATUSES
#: Error types that mean "the process running this job died under it": the sweeper's
#: ``WorkerDied`` and ``Crashed``, a child process that died running it alone.
CRASH_TYPES = frozenset({"WorkerDied", "Crashed"})


#: A job whose process died under it this many times is a suspect: from then on it runs
#: alone in a child process (pgq.worker.isolation). Up to then the sweeper gives each
#: such attempt back. One crash is usually a deploy's kill or a lost machine, and its
#: jobs re-run at full speed; two in a row make the job worth the cost of a child.
SUSPECT_AT = 2


def attempt_verb(entry: dict[str, Any]) -> str:
    """How an attempt ended, by its ``errors`` entry, as the CLI and the dashboard say it:
    a crash the sweeper gave the attempt back for, or a shutdown, is not a failure."""
    if entry.get("charged") is not False:
        return "failed"
    return "stopped by a shutdown, not charged" if entry.get("type") == "Shutdown" else "died, not charged"


def crash_count(errors: Any) -> int:
    """How many times the process running a job died under it, by its ``errors`` entries."""
    if not isinstance(errors, list):
        return 0
    return sum(1 for entry in errors if isinstance(entry, dict) and entry.get("type") in CRASH_TYPES)


class EnqueueOptions(TypedDict, total=False):
    """The keywords of :meth:`pgq.App.enqueue` after the task and its args: the job's options
    (those of :class:`JobSpec`), then how the job is written. One declaration for every call
    that takes them, so that a new option cannot reach one and miss another. An option left
    out (or ``None``) takes the task's default, then pgq's."""

    queue: str | None
    """The queue; default ``default``."""
    priority: int | None
    """Higher runs first; default 0."""
    run_at: datetime | None
    """When to run, an aware datetime; excludes ``delay``. Default: now."""
    delay: float | timedelta | None
    """Seconds (or a timedelta) from now, by the database clock; excludes ``run_at``."""
    key: str | None
    """Idempotency key: while a live job of the queue holds it, that job's id is returned and
    nothing is created."""
    max_attempts: int | None
    """Attempts before the job fails for good (1 to 1000); default 3."""
    group: str | None
    """Flow-control group (``"tenant:42"``): the queue's group limits apply per group and
    groups are served round-robin (see :meth:`pgq.App.set_queue`, docs/flow-control.md)."""
    depends_on: Iterable[int] | None
    """Ids of jobs this one waits for: it is ``blocked`` until they all completed, and reads
    their results as ``ctx.parent_results`` (docs/workflows.md)."""
    on_parent_failure: str | None
    """With ``depends_on``: ``"cancel"`` (default) cancels the job when a parent fails for
    good or is cancelled, ``"run"`` runs it anyway."""
    unique_for: float | timedelta | None
    """With ``key``: seconds or timedelta the key stays taken after the enqueue, even once its
    job finished: enqueues meanwhile return that job's id."""
    debounce: float | timedelta | None
    """With ``key``: seconds or timedelta; while a job holds the key and has not started, an
    enqueue replaces its args and moves its run time to now + debounce; otherwise a new job
    is made, due then."""
    tags: Sequence[str] | None
    """Labels to find the job by (``["tenant:42", "import"]``; at most 20 of 1 to 100
    characters, without spaces or commas): ``list_jobs(tag=)``, ``GET /api/jobs?tag=``, the
    dashboard's filter."""
    meta: dict[str, Any] | None
    """A JSON object of your own, stored and shown with the job."""
    connection: Any
    """A psycopg ``Connection`` or SQLAlchemy ``Connection``/``Session`` (async ones for
    :meth:`pgq.App.enqueue_async`) whose transaction the job joins: it exists, and workers
    are notified, only if that transaction commits. Default: pgq's own pool, committed at
    once."""
    strict: bool
    """Reject task names the app has not registered."""


@dataclass(frozen=True, init=False)
class JobSpec:
    """One job to enqueue: a task name and its keyword arguments, plus options.

    Options left at ``None`` take the task's defaults (when the task is
    registered with the app) and then pgq's: queue ``default``, priority 0,
    ``max_attempts`` 3, run now.
    """

    task: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    #: Higher runs first.
    priority: int | None = None
    #: When to run, an aware datetime; excludes ``delay``.
    run_at: datetime | None = None
    #: Seconds (or a timedelta) from now, by the database clock; excludes ``run_at``.
    delay: float | timedelta | None = None
    #: Idempotency key, unique among live jobs of the queue.
    key: str | None = None
    max_attempts: int | None = None
    #: Flow-control group (stored as ``group_key``), e.g. ``"tenant:42"``: the queue's group
    #: limits (``group_concurrency``, ``group_rate``) apply per group, and groups are served
    #: round-robin. A non-empty string of at most 255 characters.
    group: str | None = None
    #: Ids of jobs this one waits for: it stays ``blocked`` until they all completed.
    depends_on: Sequence[int] | None = None
    #: What a parent that fails for good (or is cancelled) does to this job:
    #: ``"cancel"`` (default) cancels it, ``"run"`` runs it once every parent finished.
    on_parent_failure: str | None = None
    #: With ``key``: the key stays taken this long after the job was enqueued, even
    #: once the job finished (enqueues meanwhile return that job's id).
    unique_for: float | timedelta | None = None
    #: With ``key``: an enqueue while a job holds the key replaces that job's args and
    #: pushes its ``run_at`` to now + ``debounce`` (a new job starts the wait).
    debounce: float | timedelta | None = None
    #: Labels to find the job by, such as ``["tenant:42", "import"]``: at most 20 of 1 to
    #: 100 characters, without spaces or commas.
    tags: Sequence[str] | None = None
    #: A JSON object of your own (who asked, a correlation id); pgq stores and shows it.
    meta: dict[str, Any] | None = None

    def __init__(
        self,
        task: str,
        args: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        key: str | None = None,
        max_attempts: int | None = None,
        group: str | None = None,
        depends_on: Sequence[int] | None = None,
        on_parent_failure: str | None = None,
        unique_for: float | timedelta | None = None,
        debounce: float | timedelta | None = None,
        tags: Sequence[str] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        # Written straight into the instance's dict (a frozen dataclass's own init calls
        # object.__setattr__ per field), and only the options given: the others read the
        # class's defaults. 0.6 us a spec instead of 2.4; enqueue_many builds one per job.
        fields = self.__dict__
        fields["task"] = task
        fields["args"] = {} if args is None else args
        if queue is not None:
            fields["queue"] = queue
        if priority is not None:
            fields["priority"] = priority
        if run_at is not None:
            fields["run_at"] = run_at
        if delay is not None:
            fields["delay"] = delay
        if key is not None:
            fields["key"] = key
        if max_attempts is not None:
            fields["max_attempts"] = max_attempts
        if group is not None:
            fields["group"] = group
        if depends_on is not None:
            fields["depends_on"] = depends_on
        if on_parent_failure is not None:
            fields["on_parent_failure"] = on_parent_failure
        if unique_for is not None:
            fields["unique_for"] = unique_for
        if debounce is not None:
            fields["debounce"] = debounce
        if tags is not None:
            fields["tags"] = tags
        if meta is not None:
            fields["meta"] = meta


@dataclass(frozen=True)
class Job:
    """A job as stored: live in ``jobs`` or finished in ``job_history``."""

    id: int
    queue: str
    task: str
    args: dict[str, Any]
    priority: int
    status: str
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None = None
    worker_id: uuid.UUID | None = None
    key: str | None = None
    group_key: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    timeout: timedelta | None = None
    backoff: float | None = None
    cancel_requested_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    depends_on: list[int] | None = None
    on_parent_failure: str | None = None
    #: Times its handler raised :class:`pgq.Snooze` (each gave its attempt back).
    snoozes: int = 0
    #: Labels to find the job by (``tenant:42``): ``app.list_jobs(tag=...)``, the dashboard.
    tags: list[str] | None = None
    #: The enqueuer's own JSON object; pgq stores and shows it, never reads it.
    meta: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        names = _JOB_FIELDS
        return cls(**{name: value for name, value in row.items() if name in names})

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def crashes(self) -> int:
        """How many times the process running this job died under it (docs/guarantees.md,
        "Poison jobs"). From :data:`SUSPECT_AT` on, it runs alone in a child process."""
        return crash_count(self.errors)

    def crash_note(self) -> str | None:
        """What its crashes mean, in one line (``pgq jobs show``, the dashboard); None
        when it never crashed. The same words as the last line of ``pgq.explain(id)``."""
        count = self.crashes
        if count == 0:
            return None
        times = "once" if count == 1 else f"{count} times"
        last = self.errors[-1]
        if self.status == "failed" and isinstance(last, dict) and last.get("type") == "Crashed":
            return f"crashed {times}, the last alone in a child process: a poison job"
        if count < SUSPECT_AT:
            return f"its process died under it {times}" + ("" if self.is_finished else "; it runs as usual")
        if self.is_finished:
            return f"its process died under it {times}; then it ran alone in a child process"
        return f"its process died under it {times}; it runs alone in a child process until it ends"


_JOB_FIELDS = frozenset(f.name for f in fields(Job))


def claimed_job_maker(columns: Sequence[str], worker_id: uuid.UUID) -> Callable[[Sequence[Any]], Job]:
    """A function that turns claimed rows (``columns``, then any others, ignored) into
    Jobs held by ``worker_id``.

    The worker makes a Job of every row it claims. The dataclass's own
    ``__init__`` sets 24 frozen fields one ``object.__setattr__`` at a time
    (about 5 us a job); this fills the instance's ``__dict__`` in two updates
    (about 1 us). What every claimed job has in common (running, this worker)
    is not sent by the server; fields the claim leaves out keep their class
    defaults (no progress, not finished), and an errors array the claim sent
    as null (none yet: no JSON to parse) becomes an empty list.
    """
    names = tuple(columns)
    unknown = set(names) - _JOB_FIELDS
    if unknown:
        raise ValueError(f"not fields of Job: {sorted(unknown)}")
    held = {"status": "running", "worker_id": worker_id}

    def make(values: Sequence[Any]) -> Job:
        job = _new(Job)
        fields = job.__dict__
        fields.update(held)
        fields.update(zip(names, values, strict=False))
        if fields.get("errors") is None:
            fields["errors"] = []
        return job

    return make


_new = object.__new__


@dataclass(frozen=True)
class LogLine:
    """A line a handler logged through ``ctx.log`` (``app.job_logs``)."""

    attempt: int
    at: datetime
    level: str
    message: str
