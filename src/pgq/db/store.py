"""The store: every named query of ``db/sql`` as a typed handle, declared once.

A :class:`Query` names its block and says what parameters it takes, as a
``TypedDict``; mypy checks each call's parameters against it, so a misspelt,
missing or extra key is an error before anything runs, and
``tests/test_store.py`` checks each declaration against the ``%(x)s`` of its
SQL. A query is run one of four ways, all typed by the same declaration:

- ``q.run(app.db, params)`` / ``await q.run_async(app.db, params)``: on pgq's
  pool (or the caller's ``connection=``), with the database's retry rule; a
  query listed in ``IDEMPOTENT`` (a read, or a write that sets a value) is run
  again after a lost connection;
- ``q.fetch(conn, schema, params)`` / ``await q.fetch_async(...)``: on a
  connection the caller holds (a service's session, a test helper's);
- ``yield q(schema, params)`` in a flow (:mod:`pgq.db.flows`), which the flow's
  driver runs sync or async.

``q.sql(schema)`` is the text alone, for the few that hand it to psycopg
themselves (a COPY, a statement prepared once per session).

Nothing outside ``pgq.db`` reads SQL by name with :func:`pgq.db.queries.query`:
it asks this module (``tests/test_store.py`` checks). The worker's hot
path has typed calls of its own in :mod:`pgq.db.repo`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypedDict, TypeVar, cast
from uuid import UUID

from pgq.db.connection import Row, run_async, run_sync
from pgq.db.queries import query, quote_ident

if TYPE_CHECKING:
    from pgq.db.database import Database

P = TypeVar("P", bound=Mapping[str, Any])


class Statement(NamedTuple):
    """A statement with its parameters: what a flow yields and a runner runs."""

    sql: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Query(Generic[P]):
    """Named block ``name`` of ``db/sql``, taking the parameters ``P``."""

    name: str

    @property
    def idempotent(self) -> bool:
        """Safe to run again after the connection was lost mid-call (:data:`IDEMPOTENT`)."""
        return self.name in IDEMPOTENT

    def sql(self, schema: str | None = None, **identifiers: str) -> str:
        """The text for ``schema``, with ``identifiers`` quoted into its ``{ident:x}``."""
        return query(self.name, schema, **identifiers)

    def __call__(self, schema: str | None, params: P, **identifiers: str) -> Statement:
        return Statement(self.sql(schema, **identifiers), cast(dict[str, Any], params))

    def run(self, db: Database, params: P, connection: Any = None) -> list[Row]:
        return db.run(self.sql(db.schema), params, connection, idempotent=self.idempotent)

    async def run_async(self, db: Database, params: P, connection: Any = None) -> list[Row]:
        return await db.run_async(self.sql(db.schema), params, connection, idempotent=self.idempotent)

    def fetch(self, connection: Any, schema: str | None, params: P, **identifiers: str) -> list[Row]:
        return run_sync(connection, self.sql(schema, **identifiers), params)

    async def fetch_async(self, connection: Any, schema: str | None, params: P, **identifiers: str) -> list[Row]:
        return await run_async(connection, self.sql(schema, **identifiers), params)


#: The queries :meth:`Query.run` runs again after a lost connection: reads, and writes
#: that set a value rather than add one (running one twice leaves what running it once does).
IDEMPOTENT = frozenset(
    (
        "bulk_count",
        "bulk_last_id",
        "dashboard_live",
        "db_now",
        "job_get",
        "job_list",
        "job_list_tagged",
        "job_log_list",
        "ops_explain",
        "ops_group_rates_reset",
        "ops_list_queues",
        "ops_list_workers",
        "ops_mark_limit_slots",
        "ops_pause_queue",
        "ops_resume_queue",
        "ops_set_queue",
        "ops_set_queue_slo",
        "ops_stats",
        "replica_lag",
        "schedule_get",
        "schedule_list",
        "schedule_set_enabled",
        "schedule_upsert",
    )
)


def jobs_sequence(schema: str) -> str:
    """The jobs table's identity sequence, as ``regclass`` reads it (named when migration
    0001 created the table)."""
    return f"{quote_ident(schema)}.jobs_id_seq"


# ------------------------------------------------------------------ parameters


class BenchHistoryFill(TypedDict):
    rows: int


class BenchHistoryReached(TypedDict):
    n: int


class BenchPlainFill(TypedDict):
    count: int


class BulkJobFilter(TypedDict):
    """A job filter (``pgq.bulk.JobFilter``), each condition None or the value to match."""

    f_status: str | None
    f_queue: str | None
    f_task: str | None
    f_key: str | None
    f_tag: str | None
    #: Args the job's args contain, as JSON text.
    f_args: str | None


class BulkCount(BulkJobFilter):
    statuses: list[str]
    #: The newest job id when the action began: the action takes no job enqueued after.
    last: int


class BulkDelete(BulkCount):
    """A batch: up to ``batch`` jobs after ``after_id``."""

    after_id: int
    batch: int


class BulkCancel(BulkDelete):
    cancel_channel: str


class BulkPriority(BulkDelete):
    priority: int | None


class BulkRetry(BulkJobFilter):
    """A batch of retries, keyset on (finished_at, id): jobs that finished by ``cutoff``."""

    statuses: list[str]
    cutoff: datetime
    after_at: datetime | None
    after_id: int
    batch: int


class ByBatch(TypedDict):
    batch: int


class ById(TypedDict):
    id: int


class ByIds(TypedDict):
    ids: list[int]


class ByJobIdAndName(TypedDict):
    job_id: int
    name: str


class ByKeyAndQueue(TypedDict):
    key: str
    queue: str


class ByMs(TypedDict):
    ms: str


class ByName(TypedDict):
    name: str


class ByQueues(TypedDict):
    queues: list[str]


class ByTasks(TypedDict):
    tasks: list[str]


class DashboardFailedByQueue(TypedDict):
    names: list[str]


class DashboardFamily(TypedDict):
    high: Any
    ids: list[int]
    limit: int
    low: Any
    window: Any


class DashboardSeries(TypedDict):
    start: datetime
    step: Any


class DashboardWorkerNames(TypedDict):
    #: Worker ids as text (the statement casts them to uuid).
    ids: list[str]


class HistoryMaintain(TypedDict):
    """``maintain_history_partitions()``'s arguments: ``period`` is date_trunc's unit."""

    ahead: timedelta
    keep: timedelta
    period: str


class JobCancel(TypedDict):
    cancel_channel: str
    id: int


class JobClaim(TypedDict):
    limit: int
    queues: list[str]
    worker_id: UUID


class JobClaimBatch(TypedDict):
    limit: int
    queue: str
    task: str
    worker_id: UUID


class CarriedCompletions(TypedDict):
    """The plain completions a claim writes first (migrations 0011, 0021): ids, queues and
    attempts, as array text (made in db/repo.py)."""

    done_attempt: str
    done_id: str
    done_queue: str


class JobClaimFinishing(CarriedCompletions):
    limit: int
    queues: list[str]
    worker_id: UUID


class JobClaimLimited(TypedDict):
    limit: int
    queue: str
    worker_id: UUID


class JobClaimLimitedFinishing(CarriedCompletions):
    limit: int
    queue: str
    worker_id: UUID


class JobCopyPrepare(TypedDict):
    n: int
    queues: list[str]
    #: The jobs table's identity sequence: :func:`jobs_sequence`.
    sequence: str


class JobFinishCompleted(TypedDict):
    """Plain completions as array text (made in db/repo.py)."""

    attempt: str
    id: str
    queue: str
    worker_id: UUID


class JobFinishInTransaction(TypedDict):
    attempt: int
    channel: str
    id: int
    queue: str
    result: Any
    worker_id: UUID


class JobFinishMany(TypedDict):
    attempt: list[int]
    delay: list[float]
    error: list[Any]
    id: list[int]
    kind: list[str]
    queue: list[str]
    result: list[Any]
    worker_id: UUID


class JobIdsByKey(TypedDict):
    key: list[str]
    queue: list[str]


class JobInsertPlain(TypedDict):
    """One job's insert parameters (``prepare()`` makes them: the enqueue rules' output)."""

    task: str
    #: The args as JSON text.
    args: str
    queue: str
    priority: int
    run_at: datetime | None
    delay: float | None
    max_attempts: int
    timeout: timedelta | None
    backoff: float | None
    group_key: str | None
    tags: list[str] | None
    #: The meta as JSON text.
    meta: str | None


class JobInsertFn(JobInsertPlain):
    """A job with a key or parents: ``pgq.enqueue()``'s arguments."""

    key: str | None
    depends_on: list[int] | None
    on_parent_failure: str | None


class JobInsertMany(TypedDict):
    """A batch of jobs, a column each; arrays of arrays cannot be ragged, so ``depends_on``
    and ``tags`` are one array literal a job."""

    task: list[str]
    args: list[str]
    queue: list[str]
    priority: list[int]
    run_at: list[datetime | None]
    delay: list[float | None]
    key: list[str | None]
    max_attempts: list[int]
    timeout: list[timedelta | None]
    backoff: list[float | None]
    group_key: list[str | None]
    depends_on: list[str | None]
    on_parent_failure: list[str | None]
    tags: list[str | None]
    meta: list[str | None]


class JobKeyDebounce(TypedDict):
    args: str
    delay: float
    key: str
    queue: str


class JobKeyRecord(TypedDict):
    job_id: int
    key: str
    queue: str
    unique_for: float | None


class JobList(TypedDict):
    """A page of ``list_jobs``: each filter None or the value to match."""

    args: Any
    before_id: int | None
    key: str | None
    limit: int
    queue: str | None
    status: str | None
    task: str | None


class JobListTagged(JobList):
    tag: str


class JobLockParents(TypedDict):
    parents: list[int]


class JobLogInsert(TypedDict):
    at: list[datetime]
    attempt: int
    job_id: int
    level: list[str]
    message: list[str]


class JobMarkLimitSlots(TypedDict):
    held: list[int]
    queues: list[str]
    worker_id: UUID


class JobProgressMany(TypedDict):
    attempt: list[int]
    id: list[int]
    message: list[str]
    progress: list[float]
    queue: list[str]
    worker_id: UUID


class JobReturnOrphans(TypedDict):
    grace: Any
    owned: list[int]
    worker_id: UUID


class JobUpdate(TypedDict):
    """``update_job``: each value with ``set_x`` saying whether the call changes it."""

    id: int
    channel: str
    set_args: bool
    #: The args as JSON text.
    args: str
    set_priority: bool
    priority: int
    #: A new run time: ``run_at``, or ``delay`` seconds from now when it is None.
    set_run_at: bool
    run_at: datetime | None
    delay: float | None
    set_max_attempts: bool
    max_attempts: int
    #: None or ``[]`` removes the tags.
    set_tags: bool
    tags: list[str] | None
    #: The meta as JSON text; None removes it.
    set_meta: bool
    meta: str | None


class KeysResealJobs(TypedDict):
    id: list[int]
    new: list[str]
    old: list[str]


class KeysResealSchedule(TypedDict):
    name: str
    new: Any
    old: Any


class KeysStaleJobs(TypedDict):
    after: Any
    batch: int
    current: Any


class KeysStaleSchedules(TypedDict):
    current: Any


class NoParams(TypedDict):
    pass


class Notify(TypedDict):
    channel: str
    payload: Any


class OpsCountRejected(TypedDict):
    n: int
    name: str


class OpsPromote(TypedDict):
    channel: str
    id: int


class OpsResumeQueue(TypedDict):
    channel: str
    name: str


class OpsSetQueue(TypedDict):
    """``set_queue``: each limit with ``set_x`` saying whether the call gave it (a None
    given removes the limit; one not given keeps it)."""

    name: str
    channel: str
    set_concurrency: bool
    concurrency: int | None
    set_group_concurrency: bool
    group_concurrency: int | None
    set_rate: bool
    rate_count: int | None
    rate_seconds: float | None
    set_group_rate: bool
    group_rate_count: int | None
    group_rate_seconds: float | None
    set_max_pending: bool
    max_pending: int | None
    set_group_max_pending: bool
    group_max_pending: int | None
    set_on_full: bool
    on_full: str | None


class OpsSetQueueSlo(TypedDict):
    name: str
    remove: list[str]
    set: Any


class OpsStats(TypedDict):
    rate_window: float
    sample: int
    timing_window: float
    window: float


class ScheduleDisableMissing(TypedDict):
    declared: list[str]
    tasks: list[str]


class ScheduleSetEnabled(TypedDict):
    enabled: bool
    name: str
    next_run_at: datetime | None


class ScheduleTakeTick(TypedDict):
    name: str
    next_run_at: Any
    tick: Any


class ScheduleUpsert(TypedDict):
    #: The args as JSON text.
    args: str
    catch_up: str
    cron: str
    enabled: bool
    max_attempts: int | None
    name: str
    next_run_at: datetime
    priority: int | None
    queue: str | None
    #: ``code`` (declared by a worker's app) or ``runtime`` (``add_schedule``).
    source: str
    task: str
    timezone: str


class SweepGoneWorkers(TypedDict):
    """Seconds after its stop by which no claim of a worker can still be in flight."""

    settle: float


class SweepMarkDeadWorkers(TypedDict):
    heartbeat_timeout: float


class SweepPruneHistoryIn(TypedDict):
    """Each status's retention, in seconds."""

    batch: int
    cancelled: float
    completed: float
    failed: float


class SweepPruneHistory(SweepPruneHistoryIn):
    #: The shortest retention of ``statuses``, in seconds.
    shortest: float
    statuses: list[str]


class SweepPruneMetrics(TypedDict):
    #: Seconds.
    keep: float


class SweepPruneQueueGroups(TypedDict):
    batch: int
    #: Seconds.
    idle: float


class SweepReleaseWorkers(TypedDict):
    ids: list[UUID]


class SweepRescueJobs(TypedDict):
    """The sweeper's rescue; the times are seconds."""

    batch: int
    channel: str
    claim_grace: float
    gone: list[UUID]
    heartbeat_timeout: float
    timeout_grace: float


class SweepTryLock(TypedDict):
    #: The advisory lock's 64-bit key.
    key: int


class SweepWriteMetrics(TypedDict):
    #: Seconds.
    lag: float
    #: None: the database's clock.
    now: datetime | None


class WorkerHeartbeat(TypedDict):
    busy_slots: Any
    id: int
    running: list[int]
    status: Any
    utilization: Any


class WorkerRegister(TypedDict):
    concurrency: int
    host: str
    id: int
    name: str
    pid: int
    queues: list[str]
    tasks: list[str]
    version: str


class WorkerStop(TypedDict):
    id: UUID
    #: The worker holds no job in the database (migration 0022).
    released: bool


# ------------------------------------------------------------------ admin.sql
admin_fast_fsync: Query[NoParams] = Query("admin_fast_fsync")
admin_fast_synchronous_commit: Query[NoParams] = Query("admin_fast_synchronous_commit")
admin_fast_full_page_writes: Query[NoParams] = Query("admin_fast_full_page_writes")
admin_reload_conf: Query[NoParams] = Query("admin_reload_conf")
admin_create_database: Query[NoParams] = Query("admin_create_database")
admin_create_database_from: Query[NoParams] = Query("admin_create_database_from")
admin_drop_database: Query[NoParams] = Query("admin_drop_database")

# ------------------------------------------------------------------ bench.sql
bench_drop_schema: Query[NoParams] = Query("bench_drop_schema")
bench_clear: Query[NoParams] = Query("bench_clear")
bench_show: Query[NoParams] = Query("bench_show")
bench_rate: Query[NoParams] = Query("bench_rate")
bench_rate_of_bench_async: Query[NoParams] = Query("bench_rate_of_bench_async")
bench_delete_bench_async: Query[NoParams] = Query("bench_delete_bench_async")
bench_any_job: Query[NoParams] = Query("bench_any_job")
bench_jobs_left: Query[NoParams] = Query("bench_jobs_left")
bench_history_reached: Query[BenchHistoryReached] = Query("bench_history_reached")
bench_plain_create_jobs: Query[NoParams] = Query("bench_plain_create_jobs")
bench_plain_index: Query[NoParams] = Query("bench_plain_index")
bench_plain_create_history: Query[NoParams] = Query("bench_plain_create_history")
bench_plain_fill: Query[BenchPlainFill] = Query("bench_plain_fill")
bench_plain_claim: Query[ByBatch] = Query("bench_plain_claim")
bench_plain_finish: Query[ByIds] = Query("bench_plain_finish")
bench_plain_drop: Query[NoParams] = Query("bench_plain_drop")
bench_history_fill: Query[BenchHistoryFill] = Query("bench_history_fill")
bench_analyze_history: Query[NoParams] = Query("bench_analyze_history")
bench_churn_insert: Query[ByBatch] = Query("bench_churn_insert")
bench_churn_move: Query[NoParams] = Query("bench_churn_move")

# ------------------------------------------------------------------ bulk.sql
bulk_count: Query[BulkCount] = Query("bulk_count")
bulk_retry: Query[BulkRetry] = Query("bulk_retry")
bulk_cancel: Query[BulkCancel] = Query("bulk_cancel")
bulk_priority: Query[BulkPriority] = Query("bulk_priority")
bulk_delete: Query[BulkDelete] = Query("bulk_delete")
bulk_last_id: Query[NoParams] = Query("bulk_last_id")

# ------------------------------------------------------------------ dashboard.sql
dashboard_live: Query[ByIds] = Query("dashboard_live")
dashboard_failed_by_queue: Query[DashboardFailedByQueue] = Query("dashboard_failed_by_queue")
dashboard_series: Query[DashboardSeries] = Query("dashboard_series")
dashboard_metrics_until: Query[NoParams] = Query("dashboard_metrics_until")
dashboard_family: Query[DashboardFamily] = Query("dashboard_family")
dashboard_worker_names: Query[DashboardWorkerNames] = Query("dashboard_worker_names")
dashboard_now: Query[NoParams] = Query("dashboard_now")
dashboard_metric_totals: Query[NoParams] = Query("dashboard_metric_totals")
dashboard_rejected_totals: Query[NoParams] = Query("dashboard_rejected_totals")
dashboard_worker_slots: Query[NoParams] = Query("dashboard_worker_slots")

# ------------------------------------------------------------------ jobs.sql
job_insert_many: Query[JobInsertMany] = Query("job_insert_many")
job_lock_parents: Query[JobLockParents] = Query("job_lock_parents")
job_settle: Query[ByIds] = Query("job_settle")
job_parent_results: Query[ByIds] = Query("job_parent_results")
job_key_take: Query[ByKeyAndQueue] = Query("job_key_take")
job_key_debounce: Query[JobKeyDebounce] = Query("job_key_debounce")
job_key_holder: Query[ByKeyAndQueue] = Query("job_key_holder")
job_key_record: Query[JobKeyRecord] = Query("job_key_record")
job_ids_by_key: Query[JobIdsByKey] = Query("job_ids_by_key")
job_get: Query[ById] = Query("job_get")
job_list: Query[JobList] = Query("job_list")
job_list_tagged: Query[JobListTagged] = Query("job_list_tagged")
job_claim: Query[JobClaim] = Query("job_claim")
job_claim_finishing: Query[JobClaimFinishing] = Query("job_claim_finishing")
job_claim_batch: Query[JobClaimBatch] = Query("job_claim_batch")
job_claim_limited: Query[JobClaimLimited] = Query("job_claim_limited")
job_claim_limited_finishing: Query[JobClaimLimitedFinishing] = Query("job_claim_limited_finishing")
job_limited_queues: Query[ByQueues] = Query("job_limited_queues")
job_mark_limit_slots: Query[JobMarkLimitSlots] = Query("job_mark_limit_slots")
job_next_run_at: Query[ByQueues] = Query("job_next_run_at")
job_next_due: Query[ByQueues] = Query("job_next_due")
job_finish_many: Query[JobFinishMany] = Query("job_finish_many")
job_finish_in_transaction: Query[JobFinishInTransaction] = Query("job_finish_in_transaction")
job_finish_completed: Query[JobFinishCompleted] = Query("job_finish_completed")
job_progress_many: Query[JobProgressMany] = Query("job_progress_many")
job_cancel: Query[JobCancel] = Query("job_cancel")
job_retry: Query[ById] = Query("job_retry")
job_return_orphans: Query[JobReturnOrphans] = Query("job_return_orphans")
job_insert_plain: Query[JobInsertPlain] = Query("job_insert_plain")
job_insert_fn: Query[JobInsertFn] = Query("job_insert_fn")
job_copy_prepare: Query[JobCopyPrepare] = Query("job_copy_prepare")
job_copy: Query[NoParams] = Query("job_copy")
job_copy_traced: Query[NoParams] = Query("job_copy_traced")
job_wait_register: Query[ById] = Query("job_wait_register")
job_wait_settle: Query[ById] = Query("job_wait_settle")
job_wait_unregister: Query[NoParams] = Query("job_wait_unregister")
job_update: Query[JobUpdate] = Query("job_update")
job_log_insert: Query[JobLogInsert] = Query("job_log_insert")
job_log_list: Query[ById] = Query("job_log_list")

# ------------------------------------------------------------------ keys.sql
keys_stale_jobs: Query[KeysStaleJobs] = Query("keys_stale_jobs")
keys_reseal_jobs: Query[KeysResealJobs] = Query("keys_reseal_jobs")
keys_stale_schedules: Query[KeysStaleSchedules] = Query("keys_stale_schedules")
keys_reseal_schedule: Query[KeysResealSchedule] = Query("keys_reseal_schedule")

# ------------------------------------------------------------------ operations.sql
ops_promote: Query[OpsPromote] = Query("ops_promote")
ops_delete: Query[ById] = Query("ops_delete")
ops_pause_queue: Query[ByName] = Query("ops_pause_queue")
ops_resume_queue: Query[OpsResumeQueue] = Query("ops_resume_queue")
ops_set_queue: Query[OpsSetQueue] = Query("ops_set_queue")
ops_mark_limit_slots: Query[ByName] = Query("ops_mark_limit_slots")
ops_group_rates_reset: Query[ByName] = Query("ops_group_rates_reset")
ops_count_rejected: Query[OpsCountRejected] = Query("ops_count_rejected")
ops_explain: Query[ById] = Query("ops_explain")
ops_list_queues: Query[NoParams] = Query("ops_list_queues")
ops_stats: Query[OpsStats] = Query("ops_stats")
ops_set_queue_slo: Query[OpsSetQueueSlo] = Query("ops_set_queue_slo")
ops_list_workers: Query[NoParams] = Query("ops_list_workers")
replica_lag: Query[NoParams] = Query("replica_lag")

# ------------------------------------------------------------------ schedules.sql
schedule_upsert: Query[ScheduleUpsert] = Query("schedule_upsert")
schedule_disable_missing: Query[ScheduleDisableMissing] = Query("schedule_disable_missing")
schedule_due: Query[ByTasks] = Query("schedule_due")
schedule_next_wait: Query[ByTasks] = Query("schedule_next_wait")
schedule_take_tick: Query[ScheduleTakeTick] = Query("schedule_take_tick")
schedule_triggered: Query[ByJobIdAndName] = Query("schedule_triggered")
schedule_set_last_job: Query[ByJobIdAndName] = Query("schedule_set_last_job")
schedule_list: Query[NoParams] = Query("schedule_list")
schedule_get: Query[ByName] = Query("schedule_get")
schedule_delete: Query[ByName] = Query("schedule_delete")
schedule_set_enabled: Query[ScheduleSetEnabled] = Query("schedule_set_enabled")
db_now: Query[NoParams] = Query("db_now")

# ------------------------------------------------------------------ schema.sql
schema_version: Query[NoParams] = Query("schema_version")

# ------------------------------------------------------------------ session.sql
listen: Query[NoParams] = Query("listen")
notify: Query[Notify] = Query("notify")
session_lock_timeout: Query[ByMs] = Query("session_lock_timeout")
transaction_idle_limit: Query[ByMs] = Query("transaction_idle_limit")
lent_savepoint: Query[NoParams] = Query("lent_savepoint")
lent_release: Query[NoParams] = Query("lent_release")
lent_rollback: Query[NoParams] = Query("lent_rollback")

# ------------------------------------------------------------------ sweeper.sql
sweep_mark_dead_workers: Query[SweepMarkDeadWorkers] = Query("sweep_mark_dead_workers")
sweep_gone_workers: Query[SweepGoneWorkers] = Query("sweep_gone_workers")
sweep_release_workers: Query[SweepReleaseWorkers] = Query("sweep_release_workers")
sweep_rescue_jobs: Query[SweepRescueJobs] = Query("sweep_rescue_jobs")
history_maintain: Query[HistoryMaintain] = Query("history_maintain")
sweep_prune_history: Query[SweepPruneHistory] = Query("sweep_prune_history")
sweep_prune_history_in: Query[SweepPruneHistoryIn] = Query("sweep_prune_history_in")
sweep_prune_waiters: Query[NoParams] = Query("sweep_prune_waiters")
sweep_prune_logs: Query[ByBatch] = Query("sweep_prune_logs")
sweep_prune_workers: Query[NoParams] = Query("sweep_prune_workers")
sweep_prune_keys: Query[ByBatch] = Query("sweep_prune_keys")
sweep_prune_queue_groups: Query[SweepPruneQueueGroups] = Query("sweep_prune_queue_groups")
sweep_prune_metrics: Query[SweepPruneMetrics] = Query("sweep_prune_metrics")
sweep_write_metrics: Query[SweepWriteMetrics] = Query("sweep_write_metrics")
sweep_dead_rows: Query[NoParams] = Query("sweep_dead_rows")
sweep_vacuum_throttled: Query[NoParams] = Query("sweep_vacuum_throttled")
sweep_vacuum_jobs: Query[NoParams] = Query("sweep_vacuum_jobs")
sweep_vacuum_done: Query[NoParams] = Query("sweep_vacuum_done")
sweep_try_lock: Query[SweepTryLock] = Query("sweep_try_lock")

# ------------------------------------------------------------------ testing.sql
testing_any_due: Query[ByQueues] = Query("testing_any_due")

# ------------------------------------------------------------------ workers.sql
worker_register: Query[WorkerRegister] = Query("worker_register")
worker_heartbeat: Query[WorkerHeartbeat] = Query("worker_heartbeat")
worker_stop: Query[WorkerStop] = Query("worker_stop")
