"""history_row(): the one place that says how a row of jobs becomes a row of
job_history; every move to history uses it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

Five plpgsql functions (finish_jobs, finish_completed, settle_blocked, admit,
admit_group) and two named queries (job_cancel, sweep_dead_workers) each listed
the 24 columns of a history row, and a column added to jobs had to be added to
every copy: two of them (0003, 0005) once left out ``depends_on`` and
``on_parent_failure`` (fixed in 0007; the rows those copies wrote lost the values
for good, so there is nothing to repair). Now each site deletes its rows with its
own fences and writes ``(history_row(j, status, result, error)).*`` in the
delete's RETURNING, which the next statement inserts as they are.

history_row() is a one-expression SQL function, so the planner inlines it: in
RETURNING the row is never built, each column is read straight from the deleted
row. Timed in one backend (a DO block: claim 10, finish them through
finish_completed(), commit, 3,000 times, synchronous_commit off; ten alternating
pairs on PostgreSQL 15): 37.9 us a job before, 37.0 after (medians), within the
runs' spread. Building the row whole in RETURNING and expanding it in the
insert cost about 2 us more; the wake-up check below as a SQL function, 8 us.

Its rules, the same as every copy's: the status given; finished_at now(); the
result given; the error given appended to errors; a completed job's progress 1;
a cancelled job's cancel_requested_at kept, or now() when nobody asked before
(a waiting job cancelled, dropped from a full queue, or cancelled by its
parent's failure).

finish_jobs() and finish_completed() woke the workers when a finished job had
held a slot of its queue's limits (jobs.limit_slot, which the RETURNING above no
longer carries); they now wake them when they wrote a job of a queue that has
limits, read from queues once per call (one primary-key probe: the index scan
deduplicates the names). The same wake-ups, as limit_slot is set on exactly the
running jobs of queues with limits, plus one: a job of such a queue put back to
wait later (a retry with a delay) frees its slot too, and now says so.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, render

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- How a row of jobs becomes a row of job_history. One SQL expression, so that
-- it is inlined where it is called: written as "(history_row(j, ...)).*" in a
-- DELETE's RETURNING, each column is read from the deleted row and no
-- composite value is built. Keep it one expression, and keep each parameter
-- cheap where it is passed (a parameter used twice and costly to compute stops
-- the inlining, and then ".*" calls the function once per column).
create function {schema}.history_row(j {schema}.jobs, final text, result jsonb, error jsonb)
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
               now(), result, j.depends_on, j.on_parent_failure)::{schema}.job_history
$$;

-- Whether a finish must wake the workers because a job of a queue with limits
-- freed its slot (see the migration's docstring).
-- plpgsql, not SQL: a SQL function called from plpgsql is planned again in every
-- transaction (8 us a job of a 10-job finish); plpgsql keeps its plan.
create function {schema}.any_limited(queue_names text[]) returns boolean
language plpgsql stable as $$
begin
    return exists (select from {schema}.queues q
                    where q.name = any(queue_names)
                      and (q.concurrency is not null or q.rate_count is not null
                           or q.group_concurrency is not null or q.group_rate_count is not null));
end
$$;

-- As in 0006, with the history row from history_row().
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
        -- A job whose cancellation was asked for ends cancelled instead of retrying.
        delete from {schema}.jobs j
         using outcome o
         where j.id = any(job_ids) and j.id = o.id and j.queue = o.queue
           and j.worker_id is not distinct from owner and j.attempts = o.attempt and j.status = 'running'
           and (o.kind in ('completed', 'failed', 'cancelled') or j.cancel_requested_at is not null)
        returning ({schema}.history_row(
                      j, case when o.kind in ('retry', 'return') then 'cancelled' else o.kind end,
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
               attempts = case when o.kind = 'return' then j.attempts - 1 else j.attempts end,
               errors = case when o.error is null then j.errors else j.errors || jsonb_build_array(o.error) end
          from outcome o
         where j.id = any(job_ids) and j.id = o.id and j.queue = o.queue
           and j.worker_id is not distinct from owner and j.attempts = o.attempt and j.status = 'running'
           and o.kind in ('retry', 'return') and j.cancel_requested_at is null
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

-- As in 0009, with the history row from history_row().
create or replace function {schema}.finish_completed(
    owner        uuid,
    job_ids      bigint[],
    job_queues   text[],
    job_attempts integer[]
) returns setof bigint
language plpgsql volatile
set enable_seqscan = off
set enable_nestloop = off
set enable_mergejoin = off
as $$
declare
    written bigint[];
begin
    with finished as (
        delete from {schema}.jobs j
         using unnest(job_ids, job_queues, job_attempts) as o(id, queue, attempt)
         where j.id = any(job_ids) and j.id = o.id and j.queue = o.queue
           and j.worker_id is not distinct from owner and j.attempts = o.attempt and j.status = 'running'
        returning ({schema}.history_row(j, 'completed', null, null)).*
    ),
    archived as (
        insert into {schema}.job_history select * from finished
        returning {schema}.job_history.id
    )
    select array(select a.id from archived a) into written;
    if cardinality(written) > 0 and {schema}.any_limited(job_queues) then
        perform pg_notify({channel}, '');
    end if;
    return query select x.id from unnest(job_ids) as x(id) except all select unnest(written);
end
$$;

-- As in 0004, with the history row from history_row().
create or replace function {schema}.settle_blocked(ids bigint[]) returns integer
language plpgsql volatile as $$
declare
    child    record;
    parent   record;
    waiting  boolean;
    failed   record;
    entry    jsonb;
    released integer := 0;
begin
    for child in
        select j.id, j.queue, j.depends_on, j.attempts, coalesce(j.on_parent_failure, 'cancel') as on_failure
          from {schema}.jobs j
         where j.id = any(ids) and j.status = 'blocked'
         order by j.id
           for update
    loop
        waiting := false;
        failed := null;
        for parent in
            select p.id,
                   coalesce((select 'live' from {schema}.jobs l where l.id = p.id limit 1),
                            (select h.status from {schema}.job_history h where h.id = p.id limit 1),
                            'missing') as state
              from unnest(child.depends_on) as p(id)
             order by p.id
        loop
            if parent.state = 'live' then
                waiting := true;
            elsif parent.state <> 'completed' and failed is null then
                failed := parent;
            end if;
        end loop;
        if failed is not null and child.on_failure = 'cancel' then
            entry := jsonb_build_object(
                'attempt', child.attempts, 'at', now(), 'type', 'ParentFailed', 'parent', failed.id,
                'message', format('parent job %s %s', failed.id,
                                  case failed.state when 'missing' then 'no longer exists'
                                                    else 'ended ' || failed.state end));
            with gone as (
                delete from {schema}.jobs j
                 where j.id = child.id and j.queue = child.queue and j.status = 'blocked'
                returning ({schema}.history_row(j, 'cancelled', null, entry)).*
            )
            insert into {schema}.job_history select * from gone;
        elsif not waiting then
            update {schema}.jobs set status = 'pending'
             where id = child.id and queue = child.queue and status = 'blocked';
            released := released + 1;
        end if;
    end loop;
    if released > 0 then
        perform pg_notify({channel}, '');
    end if;
    return released;
end
$$;

-- As in 0007, with the history row from history_row().
create or replace function {schema}.admit(queue_name text, n integer) returns boolean
language plpgsql volatile as $$
declare
    lim     record;
    pending bigint;
    excess  bigint;
    dropped bigint;
    entry   jsonb;
begin
    select q.max_pending, q.on_full into lim
      from {schema}.queues q
     where q.name = queue_name and q.max_pending is not null
       for update;
    if not found then
        return true;
    end if;
    select count(*) into pending
      from (select from {schema}.jobs j
             where j.queue = queue_name and j.status = 'pending'
             limit lim.max_pending + n) x;
    excess := pending + n - lim.max_pending;
    if excess <= 0 then
        return true;
    end if;
    if lim.on_full = 'reject' or n > lim.max_pending then
        raise exception 'queue % is full: % pending jobs, max_pending %; % more rejected',
                        queue_name, pending, lim.max_pending, n
            using errcode = 'PGQ01',
                  hint = 'wait for the workers, raise the limit (pgq queues set ' || queue_name
                         || ' --max-pending N) or use --on-full drop_oldest';
    end if;
    entry := jsonb_build_object(
        'at', now(), 'type', 'Dropped',
        'message', format('dropped to admit a newer job: queue %s is full (max_pending %s)',
                          queue_name, lim.max_pending));
    with oldest as (
        select j.id from {schema}.jobs j
         where j.queue = queue_name and j.status = 'pending'
         order by j.id
         limit excess
           for update skip locked
    ),
    gone as (
        delete from {schema}.jobs j using oldest o
         where j.id = o.id and j.queue = queue_name and j.status = 'pending'
        returning ({schema}.history_row(j, 'cancelled', null,
                                         jsonb_build_object('attempt', j.attempts) || entry)).*
    ),
    archived as (
        insert into {schema}.job_history select * from gone
        returning id
    )
    select count(*) into dropped from archived;
    update {schema}.queues set rejected = rejected + dropped where name = queue_name;
    return true;
end
$$;

-- As in 0007, with the history row from history_row().
create or replace function {schema}.admit_group(queue_name text, group_name text, n integer) returns boolean
language plpgsql volatile as $$
declare
    lim     record;
    pending bigint;
    excess  bigint;
    dropped bigint;
    entry   jsonb;
begin
    if group_name is null then
        return true;
    end if;
    select q.group_max_pending, q.on_full into lim
      from {schema}.queues q
     where q.name = queue_name and q.group_max_pending is not null;
    if not found then
        return true;
    end if;
    -- One key per (schema, queue, group); the queue's length keeps the pair unambiguous.
    perform pg_advisory_xact_lock(hashtextextended(
        'pgq admit_group {schema} ' || length(queue_name) || ':' || queue_name || group_name, 0));
    -- Reads jobs_group_idx: the group's pending jobs, and no more than needed.
    select count(*) into pending
      from (select from {schema}.jobs j
             where j.queue = queue_name and j.group_key = group_name and j.status = 'pending'
             limit lim.group_max_pending + n) x;
    excess := pending + n - lim.group_max_pending;
    if excess <= 0 then
        return true;
    end if;
    if lim.on_full = 'reject' or n > lim.group_max_pending then
        raise exception 'queue % is full for group %: % pending jobs of the group, group_max_pending %; % more rejected',
                        queue_name, group_name, pending, lim.group_max_pending, n
            using errcode = 'PGQ01',
                  detail = group_name,
                  hint = 'wait for the workers, raise the limit (pgq queues set ' || queue_name
                         || ' --group-max-pending N) or use --on-full drop_oldest';
    end if;
    entry := jsonb_build_object(
        'at', now(), 'type', 'Dropped',
        'message', format('dropped to admit a newer job: group %s of queue %s is full (group_max_pending %s)',
                          group_name, queue_name, lim.group_max_pending));
    with oldest as (
        select j.id from {schema}.jobs j
         where j.queue = queue_name and j.group_key = group_name and j.status = 'pending'
         order by j.id
         limit excess
           for update skip locked
    ),
    gone as (
        delete from {schema}.jobs j using oldest o
         where j.id = o.id and j.queue = queue_name and j.status = 'pending'
        returning ({schema}.history_row(j, 'cancelled', null,
                                         jsonb_build_object('attempt', j.attempts) || entry)).*
    ),
    archived as (
        insert into {schema}.job_history select * from gone
        returning id
    )
    select count(*) into dropped from archived;
    update {schema}.queues set rejected = rejected + dropped where name = queue_name;
    return true;
end
$$;
"""

#: Where each function replaced above was last defined, for the downgrade.
EARLIER = [
    ("0006_finish_function.py", "create function {schema}.finish_jobs("),
    ("0009_finish_completed.py", "create function {schema}.finish_completed("),
    ("0004_dependencies.py", "create function {schema}.settle_blocked("),
    ("0007_enqueue_rules.py", "create or replace function {schema}.admit("),
    ("0007_enqueue_rules.py", "create or replace function {schema}.admit_group("),
]

DOWNGRADE = r"""
drop function {schema}.any_limited(text[]);
drop function {schema}.history_row({schema}.jobs, text, jsonb, jsonb);
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    here = Path(__file__).parent
    for script, start in EARLIER:
        op.execute(render(earlier_sql(here / script, start, "\n$$;")))
    op.execute(render(DOWNGRADE))
