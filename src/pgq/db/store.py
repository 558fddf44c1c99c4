"""The store: every named query of ``db/sql`` as a typed handle, declared once.

A :class:`Query` names its block and says what parameters it takes, as a
``TypedDict``; mypy checks each call's parameters against it, so a misspelt,
missing or extra key is an error before anything runs, and
``tests/test_store.py`` checks each declaration against the ``%(x)s`` of its
SQL. A query is run one of four ways, all typed by the same declaration:

- ``q.run(app.db, params)`` / ``await q.run_async(app.db, params)``: on pgq's
  pool (or the caller's ``connection=``), with the database's retry rule; a
  query declared ``idempotent`` (a read, or a write that sets a value) is run
  again after a lost connection;
- ``q.fetch(conn, schema, params)`` / ``await q.fetch_async(...)``: on a
  connection the caller holds (a service's session, a test helper's);
- ``yield q(schema, params)`` in a flow (:mod:`pgq.db.flows`), which the flow's
  driver runs sync or async.

``q.sql(schema)`` is the text alone, for the few that hand it to psycopg
themselves (a COPY, a statement prepared once per session).

Nothing outside ``pgq.db`` reads SQL by name with :func:`pgq.db.queries.query`:
it asks this module (``tests/test_architecture.py`` checks). The worker's hot
path has typed calls of its own in :mod:`pgq.db.repo`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypedDict, TypeVar, cast
from uuid import UUID

from pgq.db.connection import CopyIn, Row, run_async, run_sync
from pgq.db.queries import query

if TYPE_CHECKING:
    from pgq.db.database import Database

P = TypeVar("P", bound=Mapping[str, Any])


class Statement(NamedTuple):
    """A statement with its parameters: what a flow yields and a runner runs."""

    sql: str | CopyIn
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Query(Generic[P]):
    """Named block ``name`` of ``db/sql``, taking the parameters ``P``."""

    name: str
    #: Safe to run again after the connection was lost mid-call: a read, or a write
    #: that sets a value rather than adds one.
    idempotent: bool = False

    def sql(self, schema: str | None = None, **identifiers: str) -> str:
        """The text for ``schema``, with ``identifiers`` quoted into its ``{ident:x}``."""
        return query(self.name, schema, **identifiers)

    def __call__(self, schema: str | None, params: P, **identifiers: str) -> Statement:
        return Statement(query(self.name, schema, **identifiers), cast(dict[str, Any], params))

    def run(self, db: Database, params: P, connection: Any = None) -> list[Row]:
        return db.run(query(self.name, db.schema), params, connection, idempotent=self.idempotent)

    async def run_async(self, db: Database, params: P, connection: Any = None) -> list[Row]:
        return await db.run_async(query(self.name, db.schema), params, connection, idempotent=self.idempotent)

    def fetch(self, connection: Any, schema: str | None, params: P, **identifiers: str) -> list[Row]:
        return run_sync(connection, query(self.name, schema, **identifiers), params)

    async def fetch_async(self, connection: Any, schema: str | None, params: P, **identifiers: str) -> list[Row]:
        return await run_async(connection, query(self.name, schema, **identifiers), params)


# ------------------------------------------------------------------ parameters


class BenchHistoryFill(TypedDict):
    rows: int


class BenchHistoryReached(TypedDict):
    n: int


class BenchPlainFill(TypedDict):
    count: int


class BulkCancel(TypedDict):
    after_id: int
    batch: int
    cancel_channel: str
    last: int
    statuses: list[str]


class BulkCount(TypedDict):
    last: int
    statuses: list[str]


class BulkDelete(TypedDict):
    after_id: int
    batch: int
    last: int
    statuses: list[str]


class BulkPriority(TypedDict):
    after_id: int
    batch: int
    last: int
    priority: Any
    statuses: list[str]


class BulkRetry(TypedDict):
    after_at: datetime
    after_id: int
    batch: int
    cutoff: Any
    statuses: list[str]


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
    ids: list[UUID]


class HistoryMaintain(TypedDict):
    ahead: Any
    keep: Any
    period: Any


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


class JobClaimFinishing(TypedDict):
    attempt: list[int]
    id: list[int]
    limit: int
    queue: list[str]
    queues: list[str]
    worker_id: UUID


class JobClaimLimited(TypedDict):
    limit: int
    queue: str
    worker_id: UUID


class JobCopyPrepare(TypedDict):
    n: int
    queues: list[str]
    sequence: Any


class JobFinishCompleted(TypedDict):
    attempt: list[int]
    id: list[int]
    queue: list[str]
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
    args: Any
    backoff: float
    delay: float
    group_key: str
    max_attempts: int
    meta: Any
    priority: Any
    queue: str
    run_at: datetime
    tags: list[str]
    task: str
    timeout: Any


class JobInsertFn(JobInsertPlain):
    """A job with a key or parents: ``pgq.enqueue()``'s arguments."""

    depends_on: list[int]
    key: str
    on_parent_failure: str


class JobInsertMany(TypedDict):
    args: list[Any]
    backoff: list[float]
    delay: list[float]
    depends_on: list[str]
    group_key: list[str]
    key: list[str]
    max_attempts: list[int]
    meta: list[Any]
    on_parent_failure: list[str]
    priority: list[int]
    queue: list[str]
    run_at: list[datetime]
    tags: list[str]
    task: list[str]
    timeout: list[Any]


class JobKeyDebounce(TypedDict):
    args: Any
    delay: float
    key: str
    queue: str


class JobKeyRecord(TypedDict):
    job_id: int
    key: str
    queue: str
    unique_for: float


class JobList(TypedDict):
    args: Any
    before_id: int
    key: str
    limit: int
    queue: str
    status: str
    task: str


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
    args: Any
    channel: str
    delay: float
    id: int
    max_attempts: int
    meta: Any
    priority: int
    run_at: datetime
    set_args: Any
    set_max_attempts: Any
    set_meta: Any
    set_priority: Any
    set_run_at: Any
    set_tags: Any
    tags: list[str]


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
    channel: str
    concurrency: int
    group_concurrency: Any
    group_max_pending: Any
    group_rate_count: Any
    group_rate_seconds: float
    max_pending: Any
    name: str
    on_full: str
    rate_count: Any
    rate_seconds: float
    set_concurrency: Any
    set_group_concurrency: Any
    set_group_max_pending: Any
    set_group_rate: Any
    set_max_pending: Any
    set_on_full: Any
    set_rate: Any


class OpsSetQueueSlo(TypedDict):
    name: str
    remove: list[str]
    set: Any


class OpsStats(TypedDict):
    rate_window: Any
    sample: Any
    timing_window: Any
    window: Any


class ScheduleDisableMissing(TypedDict):
    declared: list[str]
    tasks: list[str]


class ScheduleSetEnabled(TypedDict):
    enabled: bool
    name: str
    next_run_at: Any


class ScheduleTakeTick(TypedDict):
    name: str
    next_run_at: Any
    tick: Any


class ScheduleUpsert(TypedDict):
    args: Any
    catch_up: Any
    cron: Any
    enabled: bool
    max_attempts: Any
    name: str
    next_run_at: Any
    priority: Any
    queue: str
    source: Any
    task: str
    timezone: Any


class SweepMarkDeadWorkers(TypedDict):
    heartbeat_timeout: float


class SweepPruneHistory(TypedDict):
    batch: int
    cancelled: Any
    completed: Any
    failed: Any
    shortest: Any
    statuses: list[str]


class SweepPruneHistoryIn(TypedDict):
    batch: int
    cancelled: Any
    completed: Any
    failed: Any


class SweepPruneMetrics(TypedDict):
    keep: Any


class SweepPruneQueueGroups(TypedDict):
    batch: int
    idle: Any


class SweepRescueJobs(TypedDict):
    batch: int
    channel: str
    claim_grace: Any
    heartbeat_timeout: float
    timeout_grace: Any


class SweepTryLock(TypedDict):
    key: str


class SweepWriteMetrics(TypedDict):
    lag: Any
    now: datetime


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
job_limited_queues: Query[ByQueues] = Query("job_limited_queues")
job_mark_limit_slots: Query[JobMarkLimitSlots] = Query("job_mark_limit_slots")
job_next_token: Query[ByQueues] = Query("job_next_token")
job_next_run_at: Query[ByQueues] = Query("job_next_run_at")
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
worker_stop: Query[ById] = Query("worker_stop")
