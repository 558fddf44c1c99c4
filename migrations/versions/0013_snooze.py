"""Snooze: jobs.snoozes and job_history.snoozes count the times a job's handler
raised pgq.Snooze; finish_jobs() knows the outcome 'snooze'; the claim returns
the count.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

A snoozed job goes back to pending at now() + its delay with its attempt given
back (as a shutdown's 'return' does) and its snoozes counted: it asked to wait,
it did not fail. The worker reads the count from the claim, to refuse a snooze
past the task's max_snoozes (the job then fails for good, with a message that
says so), and hands it to the handler (ctx.job.snoozes). A column added to both
tables and to history_row() alone (0012), appended last so that the view
all_jobs can grow with it; every existing row reads 0.

claim_jobs() gains a column, so both overloads are dropped and made again: the
three-argument one as 0010 left it, the other as 0011 made it, each with
snoozes after errors.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, render

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent

UPGRADE = r"""
alter table {schema}.jobs add column snoozes integer not null default 0;
alter table {schema}.job_history add column snoozes integer not null default 0;

create or replace view {schema}.all_jobs as
    select id, queue, task, args, priority, status, attempts, max_attempts, run_at,
           created_at, started_at, worker_id, key, group_key, progress, progress_message,
           errors, timeout, backoff, cancel_requested_at,
           null::timestamptz as finished_at, null::jsonb as result, depends_on, on_parent_failure, snoozes
      from {schema}.jobs
    union all
    select id, queue, task, args, priority, status, attempts, max_attempts, run_at,
           created_at, started_at, worker_id, key, group_key, progress, progress_message,
           errors, timeout, backoff, cancel_requested_at, finished_at, result, depends_on, on_parent_failure,
           snoozes
      from {schema}.job_history;

-- As in 0012, with snoozes.
create or replace function {schema}.history_row(j {schema}.jobs, final text, result jsonb, error jsonb)
returns {schema}.job_history
language sql stable as $$
    select row(j.id, j.queue, j.task, j.args, j.priority, final, j.attempts, j.max_attempts, j.run_at,
               j.created_at, j.started_at, j.worker_id, j.key, j.group_key,
               case when final = 'completed' then 1 else j.progress end,
               j.progress_message,
               case when error is null then j.errors else j.errors || jsonb_build_array(error) end,
               j.timeout, j.backoff,
               case when final = 'cancelled' then coalesce(j.cancel_requested_at, now())
                    else j.cancel_requested_at end,
               now(), result, j.depends_on, j.on_parent_failure, j.snoozes)::{schema}.job_history
$$;

-- As in 0012, with the kind 'snooze': back to pending at now() + delay, the
-- attempt given back as for 'return', snoozes counted. A job whose cancellation
-- was asked for ends cancelled instead, as a retry does.
create or replace function {schema}.finish_jobs(
    owner            uuid,
    job_ids          bigint[],
    job_queues       text[],
    job_attempts     integer[],
    outcome_kinds    text[],
    outcome_results  jsonb[],
    outcome_errors   jsonb[],
    outcome_delays   float8[]
) returns setof bigint
language plpgsql volatile
set enable_seqscan = off
set enable_nestloop = off
set enable_mergejoin = off
as $$
declare
    archived_ids bigint[];
    requeued_ids bigint[];
    due boolean;
begin
    with outcome as (
        select o.id, o.queue, o.attempt, coalesce(o.kind, 'completed') as kind, o.result,
               case when o.error is null then null
                    else o.error || jsonb_build_object('at', now()) end as error,
               o.delay
          from unnest(job_ids, job_queues, job_attempts, outcome_kinds, outcome_results, outcome_errors,
                      outcome_delays)
               as o(id, queue, attempt, kind, result, error, delay)
    ),
    finished as (
        delete from {schema}.jobs j
         using outcome o
         where j.id = any(job_ids) and j.id = o.id and j.queue = o.queue
           and j.worker_id is not distinct from owner and j.attempts = o.attempt and j.status = 'running'
           and (o.kind in ('completed', 'failed', 'cancelled') or j.cancel_requested_at is not null)
        returning ({schema}.history_row(
                      j, case when o.kind in ('retry', 'return', 'snooze') then 'cancelled' else o.kind end,
                      o.result, o.error)).*
    ),
    archived as (
        insert into {schema}.job_history select * from finished
        returning {schema}.job_history.id
    ),
    requeued as (
        update {schema}.jobs j
           set status = 'pending',
               worker_id = null,
               run_at = now() + make_interval(secs => coalesce(o.delay, 0)),
               attempts = case when o.kind in ('return', 'snooze') then j.attempts - 1 else j.attempts end,
               snoozes = case when o.kind = 'snooze' then j.snoozes + 1 else j.snoozes end,
               errors = case when o.error is null then j.errors else j.errors || jsonb_build_array(o.error) end
          from outcome o
         where j.id = any(job_ids) and j.id = o.id and j.queue = o.queue
           and j.worker_id is not distinct from owner and j.attempts = o.attempt and j.status = 'running'
           and o.kind in ('retry', 'return', 'snooze') and j.cancel_requested_at is null
        returning j.id, j.run_at <= now() as due
    )
    select array(select a.id from archived a), array(select r.id from requeued r),
           coalesce((select bool_or(r.due) from requeued r), false)
      into archived_ids, requeued_ids, due;
    if due or (cardinality(archived_ids || requeued_ids) > 0 and {schema}.any_limited(job_queues)) then
        perform pg_notify({channel}, '');
    end if;
    return query select x.id from unnest(job_ids) as x(id)
                 except all select unnest(archived_ids || requeued_ids);
end
$$;

drop function {schema}.claim_jobs(uuid, text[], integer, bigint[], text[], integer[]);
drop function {schema}.claim_jobs(uuid, text[], integer);

-- As 0010 left it, with snoozes after errors.
create function {schema}.claim_jobs(worker uuid, queue_names text[], max_jobs integer)
returns table (
    id bigint, queue text, task text, args jsonb, priority integer, attempts integer, max_attempts integer,
    run_at timestamptz, created_at timestamptz, started_at timestamptz, key text, group_key text,
    timeout interval, backoff double precision, depends_on bigint[], on_parent_failure text, errors jsonb,
    snoozes integer, next_wait double precision
)
language plpgsql volatile
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
#variable_conflict use_column
begin
    return query
    with candidates as (
        select c.id, c.queue, c.priority, c.run_at
          from unnest(queue_names) as q(name)
         cross join lateral (
                select j.id, j.queue, j.priority, j.run_at
                  from {schema}.jobs j
                 where j.queue = q.name
                   and j.status = 'pending'
                   and j.run_at <= now()
                 order by j.priority desc, j.run_at, j.id
                 limit max_jobs
                   for update of j skip locked
             ) c
         -- A paused queue waits; a queue with limits is claimed by claim_limited only
         -- (a worker that has not heard of new limits yet claims nothing of it).
         where not exists (select from {schema}.queues p
                            where p.name = q.name
                              and (p.paused or p.concurrency is not null or p.rate_count is not null
                                   or p.group_concurrency is not null or p.group_rate_count is not null))
           -- A worker the sweeper declared dead claims nothing under that id.
           and exists (select from {schema}.workers w
                        where w.id = worker and w.status in ('running', 'stopping'))
    ),
    chosen as (
        select candidates.id, candidates.queue from candidates
         order by candidates.priority desc, candidates.run_at, candidates.id
         limit max_jobs
    ),
    claimed as (
        update {schema}.jobs j
           set status = 'running',
               attempts = j.attempts + 1,
               worker_id = worker,
               started_at = now(),
               progress = null,
               progress_message = null
         -- By primary key through an array, not a join with chosen: joined, the
         -- generic plan scanned the whole primary key once per chosen row when the
         -- table was small at planning time, and kept doing so as it grew.
         where j.id = any(array(select chosen.id from chosen)) and j.queue = any(queue_names)
        -- The columns' base types: RETURN QUERY takes no domain where text is declared.
        returning j.id, cast(j.queue as text), cast(j.task as text), cast(j.args as jsonb), j.priority,
                  cast(j.attempts as integer), cast(j.max_attempts as integer), j.run_at, j.created_at,
                  j.started_at, cast(j.key as text), cast(j.group_key as text), j.timeout, j.backoff,
                  j.depends_on, cast(j.on_parent_failure as text),
                  nullif(cast(j.errors as jsonb), cast('[]' as jsonb)) as errors, j.snoozes
    )
    select c.*,
           case when (select count(*) from claimed) < max_jobs
                then (select {schema}.seconds_to_next_run(queue_names)) end
      from claimed c;
end
$$;

-- As in 0011, with snoozes after errors.
create function {schema}.claim_jobs(
    worker        uuid,
    queue_names   text[],
    max_jobs      integer,
    done_ids      bigint[],
    done_queues   text[],
    done_attempts integer[]
)
returns table (
    id bigint, queue text, task text, args jsonb, priority integer, attempts integer, max_attempts integer,
    run_at timestamptz, created_at timestamptz, started_at timestamptz, key text, group_key text,
    timeout interval, backoff double precision, depends_on bigint[], on_parent_failure text, errors jsonb,
    snoozes integer, next_wait double precision
)
language plpgsql volatile
as $$
begin
    if cardinality(done_ids) > 0 then
        -- A refused outcome is a row with its id alone.
        return query
        select r.id, null::text, null::text, null::jsonb, null::integer, null::integer, null::integer,
               null::timestamptz, null::timestamptz, null::timestamptz, null::text, null::text, null::interval,
               null::double precision, null::bigint[], null::text, null::jsonb, null::integer,
               null::double precision
          from {schema}.finish_completed(worker, done_ids, done_queues, done_attempts) as r(id);
    end if;
    return query select * from {schema}.claim_jobs(worker, queue_names, max_jobs);
end
$$;
"""

DOWNGRADE = r"""
drop function {schema}.claim_jobs(uuid, text[], integer, bigint[], text[], integer[]);
drop function {schema}.claim_jobs(uuid, text[], integer);
drop view {schema}.all_jobs;
"""


def _earlier_claim() -> str:
    """The three-argument claim_jobs() as 0010 made it (0010 builds its text in a function)."""
    spec = importlib.util.spec_from_file_location("pgq_migration_0010", HERE / "0010_value_domains.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module._upgrade_sql()
    first = text.index("create or replace function {schema}.claim_jobs(")
    return text[first : text.index("$$;", first) + 3]


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    parts = [
        DOWNGRADE,
        earlier_sql(
            HERE / "0004_dependencies.py", "create or replace view {schema}.all_jobs as", "from {schema}.job_history;"
        ),
        "alter table {schema}.jobs drop column snoozes;",
        "alter table {schema}.job_history drop column snoozes;",
        earlier_sql(HERE / "0012_history_row.py", "create function {schema}.history_row(", "\n$$;"),
        earlier_sql(HERE / "0012_history_row.py", "create or replace function {schema}.finish_jobs(", "\n$$;"),
        _earlier_claim().replace("create or replace function", "create function", 1),
        earlier_sql(HERE / "0011_claim_after_finish.py", "create function {schema}.claim_jobs(", "\n$$;").replace(
            "create or replace function", "create function", 1
        ),
    ]
    op.execute(render("\n".join(parts)))
