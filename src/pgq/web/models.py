"""What the REST API takes and returns, declared once: FastAPI validates requests against these
models and generates ``/api/openapi.json`` from them, and a test checks every real response
against that document.

Limits mirror :mod:`pgq.enqueueing` (which checks them again, for every other entry point).
Queues, workers, stats and schedules are answered as pgq's own dataclasses
(:class:`~pgq.operations.QueueInfo`, ...): their fields are the API's.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from pgq.enqueueing import INT32, MAX_ATTEMPTS, MAX_PARENTS
from pgq.operations import QueueInfo, QueueStats, WorkerInfo
from pgq.queue_names import QUEUE_NAME_CHARS, QUEUE_RULE
from pgq.schedules import Schedule

JobStatus = Literal["pending", "running", "blocked", "completed", "failed", "cancelled"]
Seconds = Annotated[float, Field(ge=0, strict=True)]
Positive = Annotated[float, Field(gt=0, strict=True)]
# ^...$ rather than Python's \A...\Z: pydantic checks patterns with Rust's regex, where $ is the end.
QueueName = Annotated[StrictStr, Field(pattern=rf"^{QUEUE_NAME_CHARS}$", description=QUEUE_RULE)]
Name255 = Annotated[StrictStr, Field(min_length=1, max_length=255)]
Tag = Annotated[
    StrictStr,
    Field(min_length=1, max_length=100, pattern=r"^[^\s,\x00-\x1f\x7f]+$", description="no spaces or commas"),
]

#: What each field must be, in words: a 422 names the field and says this.
FIELD_RULES = {
    "task": "a string of 1 to 255 characters",
    "args": "a JSON object (the task's keyword arguments)",
    "queue": "a queue name: 1-128 letters, digits, '_', '.', ':' or '-'",
    "priority": f"an integer from {-INT32} to {INT32}",
    "delay": "a number of seconds, 0 or more",
    "run_at": "an ISO 8601 time with a zone, e.g. 2026-12-01T09:00:00+00:00",
    "key": "a non-empty string of at most 255 characters",
    "max_attempts": f"an integer from 1 to {MAX_ATTEMPTS}",
    "group": "a non-empty string of at most 255 characters",
    "depends_on": f"a JSON array of at most {MAX_PARENTS} job ids (positive integers)",
    "on_parent_failure": "'cancel' or 'run'",
    "unique_for": "more than 0 s (a number of seconds)",
    "debounce": "more than 0 s (a number of seconds)",
    "action": "one of the actions listed in /api/openapi.json",
    "filter": "an object of status, queue, task, key, tag and args (each optional)",
    "status": "a job status: pending, running, blocked, completed, failed or cancelled",
    "tag": "a tag: 1 to 100 characters, no whitespace or commas",
    "all": "true or false",
    "dry_run": "true or false",
    "concurrency": "a whole number of at least 1, or null to remove the limit",
    "rate": "a rate such as 10/s or 100/min, or null to remove the limit",
    "group_concurrency": "a whole number of at least 1, or null",
    "group_rate": "a rate such as 5/min, or null",
    "max_pending": "a whole number of at least 0, or null",
    "group_max_pending": "a whole number of at least 0, or null",
    "on_full": "'reject' or 'drop_oldest'",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    """Every error: what was wrong and what to do."""

    error: str


class EnqueueIn(Strict):
    """``POST /api/jobs``: the options of ``app.enqueue``. Only ``task`` is required."""

    task: Name255
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the task")
    queue: QueueName | None = None
    priority: Annotated[StrictInt, Field(ge=-INT32, le=INT32, description="higher runs first")] | None = None
    delay: Annotated[Seconds, Field(description="seconds from now; excludes run_at")] | None = None
    run_at: Annotated[AwareDatetime, Field(description="when to run, with a time zone")] | None = None
    key: Annotated[Name255, Field(description="idempotency key, unique among live jobs of the queue")] | None = None
    max_attempts: Annotated[StrictInt, Field(ge=1, le=MAX_ATTEMPTS)] | None = None
    group: Annotated[Name255, Field(description="flow-control group, e.g. tenant:42")] | None = None
    depends_on: (
        Annotated[
            list[Annotated[StrictInt, Field(ge=1)]],
            Field(max_length=MAX_PARENTS, description="ids of jobs to wait for"),
        ]
        | None
    ) = None
    on_parent_failure: Literal["cancel", "run"] | None = None
    unique_for: Annotated[Positive, Field(description="with key: seconds the key stays taken")] | None = None
    debounce: Annotated[Positive, Field(description="with key: seconds; pushes the pending job back")] | None = None
    tags: Annotated[list[Tag], Field(max_length=20, description="labels to find the job by")] | None = None
    meta: dict[str, Any] | None = Field(None, description="a JSON object of your own, stored with the job")


class JobOut(BaseModel):
    """A job, live or finished. Keys named in ``PGQ_REDACT_KEYS`` show as ``[redacted]`` in
    ``args`` and ``result``; parts nested deeper than 100 levels (only SQL can write them) as a
    string saying so."""

    id: int
    queue: str
    task: str
    args: Any = Field(description="a JSON object as enqueued (rows written by SQL may hold any JSON)")
    priority: int
    status: JobStatus
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: uuid.UUID | None
    key: str | None
    group_key: str | None
    depends_on: list[int] | None
    on_parent_failure: Literal["cancel", "run"] | None
    progress: float | None
    progress_message: str | None
    errors: list[Any] = Field(description="one entry per failed attempt: attempt, at, type, message, traceback")
    timeout: float | None = Field(description="seconds")
    result: Any = None
    snoozes: int = Field(0, description="times its handler raised pgq.Snooze (each gave its attempt back)")
    tags: list[str] | None = None
    meta: Any = Field(None, description="the enqueuer's JSON object (rows written by SQL may hold any JSON)")


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_before_id: int | None = Field(description="pass as before_id for the next page; null on the last one")


class Enqueued(BaseModel):
    id: int
    job: JobOut | None = Field(description="the job (or the live job that already held its key)")


class ActionIn(Strict):
    action: str


class JobActionIn(Strict):
    action: Literal["retry", "cancel", "promote", "remove"]


class JobUpdateIn(Strict):
    """``PATCH /api/jobs/{id}``: the options of ``app.update_job``; only the fields sent change."""

    args: dict[str, Any] | None = Field(default=None, description="the task's keyword arguments, replaced whole")
    priority: Annotated[StrictInt, Field(ge=-INT32, le=INT32, description="higher runs first")] | None = None
    run_at: Annotated[AwareDatetime, Field(description="when to run, with a time zone")] | None = None
    delay: Annotated[Seconds, Field(description="seconds from now; excludes run_at")] | None = None
    max_attempts: Annotated[StrictInt, Field(ge=1, le=MAX_ATTEMPTS)] | None = None
    tags: Annotated[list[Tag], Field(max_length=20, description="replaces them; [] or null removes them")] | None = None
    meta: dict[str, Any] | None = Field(default=None, description="replaces it; null removes it")


class JobFilterIn(Strict):
    """Which jobs a bulk action takes: all the given conditions hold (the list's filters)."""

    status: JobStatus | None = None
    queue: Annotated[Name255, Field(description="only jobs of this queue")] | None = None
    task: Annotated[Name255, Field(description="only jobs of this task")] | None = None
    key: Annotated[Name255, Field(description="only jobs with this key")] | None = None
    tag: Annotated[Tag, Field(description="only jobs with this tag")] | None = None
    args: dict[str, Any] | None = Field(
        default=None, description='only jobs whose args contain this object, e.g. {"user_id": 7}'
    )


class BulkIn(Strict):
    """``POST /api/jobs/bulk``: act on every job the filter matches, not just a page."""

    action: Literal["retry", "cancel", "delete", "priority"]
    filter: JobFilterIn = Field(default_factory=JobFilterIn)
    priority: Annotated[StrictInt, Field(ge=-INT32, le=INT32, description="the new one (action priority)")] | None = (
        None
    )
    all: bool = Field(False, description="required with an empty filter: the action takes every job")
    dry_run: bool = Field(False, description="change nothing; count the jobs the action would take now")


class BulkOut(BaseModel):
    action: str
    count: int = Field(description="jobs acted on (with dry_run: the jobs the action would take now)")
    cancelling: int = Field(description="cancel: running jobs whose workers were told to stop them")
    dry_run: bool
    message: str


class JobActionOut(BaseModel):
    id: int
    action: str
    message: str
    job: JobOut | None = Field(description="the job after the action; null once removed")


class Explanation(BaseModel):
    id: int
    text: str = Field(description="the whole text of pgq explain ID")
    reasons: list[str] = Field(description="what holds a pending job back, one entry each; empty when nothing does")


class QueueList(BaseModel):
    queues: list[QueueInfo]


class QueueActionOut(BaseModel):
    queue: str
    action: str
    message: str


class QueueLimitsIn(Strict):
    """``pgq queues set``'s options; only the fields given change, null removes a limit."""

    concurrency: Annotated[StrictInt, Field(ge=1)] | None = None
    rate: StrictStr | None = Field(None, description="e.g. 10/s, 100/min")
    group_concurrency: Annotated[StrictInt, Field(ge=1)] | None = None
    group_rate: StrictStr | None = None
    max_pending: Annotated[StrictInt, Field(ge=0)] | None = None
    group_max_pending: Annotated[StrictInt, Field(ge=0)] | None = None
    on_full: Literal["reject", "drop_oldest"] | None = None


class WorkerList(BaseModel):
    workers: list[WorkerInfo]


class StatsOut(BaseModel):
    queues: list[QueueStats] = Field(description="as pgq stats --json (docs/operations.md)")
    replica_lag_seconds: float | None = Field(
        default=None,
        description="with PGQ_READ_URL: seconds the replica these figures were read from is behind the primary",
    )


class ScheduleList(BaseModel):
    schedules: list[Schedule]


class ScheduleActionIn(Strict):
    action: Literal["enable", "disable", "trigger"]


class ScheduleActionOut(BaseModel):
    name: str
    action: str
    message: str
    schedule: Schedule | None
    job_id: int | None = Field(None, description="trigger: the job it enqueued")


class SeriesQueue(BaseModel):
    completed: list[float]
    failed: list[float]
    retried: list[float]
    wait_ms: list[float | None] = Field(description="mean wait from due to start per step")
    run_ms: list[float | None] = Field(description="mean run time per step")


class Series(BaseModel):
    """The sweeper's metrics rows over a range, in equal steps: what the overview's charts draw."""

    range: Literal["1h", "6h", "24h", "7d"]
    step_seconds: int
    start: datetime
    times: list[float] = Field(description="start of each step, Unix seconds")
    recorded_until: datetime | None = Field(
        description="end of the newest metrics window: jobs finished later are not charted yet"
    )
    metrics_interval: float = Field(description="seconds between metrics windows (PGQ_METRICS_INTERVAL)")
    queues: dict[str, SeriesQueue]
