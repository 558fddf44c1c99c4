"""claim_jobs() and finish_jobs(): the worker's claim and batched, fenced finish with fixed
plans; seconds_to_next_run(); a grouped claim with one statement per group.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

The finish was a statement the worker sent (``job_finish_many``). On a freshly
filled ``jobs`` table, before autovacuum had analysed it, the planner estimated
one row for the join of the outcomes with ``jobs`` and chose a sequential scan
of the whole backlog inside a nested loop: 132 ms for 500 outcomes, so a drain
cost O(backlog x batches) and fell to a few hundred jobs/s in some runs. A
function can carry planner settings of its own (``SET`` clauses apply while it
runs and work through a transaction pooler, unlike session settings), and its
statement is shaped so that those settings leave one plan: see the comment
above it.
``tests/test_plans.py`` checks the plan on tables whose statistics mislead.

Same outcomes, same fences and same columns as the statement it replaces.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, render

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Write many outcomes of one worker. kind: completed | failed | cancelled (moved
-- to job_history), retry | return (back to pending; "return" gives back the
-- attempt, for a graceful shutdown). The outcome arrays may be shorter than the
-- job arrays, or null: a missing kind is 'completed', a missing result, error
-- or delay is null (so a batch of plain completions sends three arrays).
-- Returns the ids refused by the fence: usually none, so nothing comes back.
-- It wakes the workers (NOTIFY, sent at commit) when it put a job back to
-- pending that is due now, or finished one that held a slot of a queue's
-- concurrency limit: another worker may claim now. The insert trigger does not
-- see either, and a separate round trip for it cost a limited queue's drain a
-- third of its rate.
--
-- The plan is pinned by construction, not by statistics. Rows of jobs are found
-- by "id = any(job_ids)", an index condition on the primary key, and matched to
-- their outcomes by a hash join: with nested loops, merge joins and sequential
-- scans switched off inside this function, no other plan is left, and it costs
-- O(outcomes) whatever the planner believes about the table. The belief that
-- did harm: with statistics taken while every row was pending, the filter on
-- running rows was estimated at one row, and the planner scanned the whole
-- table once per outcome in a nested loop. Every branch keeps the fence (worker,
-- attempt, running) in its own WHERE clause, so that a row the sweeper changed
-- meanwhile is re-checked on its new version and refused, not overwritten. The
-- worker fence is written "is not distinct from" (the same test, as owner is
-- never null) because that form cannot use jobs_worker_idx, whose dead entries
-- grow with every job a worker claimed until vacuum (see migration 0002).
create function {schema}.finish_jobs(
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
    written bigint[];
    wake boolean;
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
        returning j.*,
                  case when o.kind in ('retry', 'return') then 'cancelled' else o.kind end as final,
                  o.result as outcome_result, o.error as outcome_error
    ),
    archived as (
        insert into {schema}.job_history
            (id, queue, task, args, priority, status, attempts, max_attempts, run_at, created_at,
             started_at, worker_id, key, group_key, progress, progress_message, errors, timeout, backoff,
             cancel_requested_at, finished_at, result, depends_on, on_parent_failure)
        select f.id, f.queue, f.task, f.args, f.priority, f.final, f.attempts, f.max_attempts, f.run_at,
               f.created_at, f.started_at, f.worker_id, f.key, f.group_key,
               case when f.final = 'completed' then 1 else f.progress end, f.progress_message,
               case when f.outcome_error is null then f.errors else f.errors || jsonb_build_array(f.outcome_error) end,
               f.timeout, f.backoff, f.cancel_requested_at, now(), f.outcome_result, f.depends_on,
               f.on_parent_failure
          from finished f
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
    select array(select a.id from archived a union all select r.id from requeued r),
           coalesce((select bool_or(f.limit_slot) from finished f), false)
           or coalesce((select bool_or(r.due) from requeued r), false)
      into written, wake;
    if wake then
        perform pg_notify({channel}, '');
    end if;
    return query select x.id from unnest(job_ids) as x(id) except all select unnest(written);
end
$$;

-- The claim of a queue with limits, as in 0004, with its plans pinned as
-- claim_jobs()'s are (and claim_grouped()'s, which it calls): with statistics
-- taken while the table was small, it sorted a sequential scan of the whole
-- backlog to choose its jobs, and scanned it again to update them, at every
-- claim. The rows to update are named by an array, not joined.
create or replace function {schema}.claim_limited(worker uuid, queue_name text, max_jobs integer)
returns setof {schema}.jobs
language plpgsql volatile
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
    lim       {schema}.queues%rowtype;
    ts        timestamptz;
    n         integer := max_jobs;
    busy      bigint;
    claimed   bigint;
    step      interval;
begin
    if max_jobs is null or max_jobs < 1 then
        return;
    end if;
    -- A worker the sweeper declared dead claims nothing under that id.
    if not exists (select from {schema}.workers w
                    where w.id = worker and w.status in ('running', 'stopping')) then
        return;
    end if;
    select * into lim from {schema}.queues where name = queue_name for update;
    if not found or lim.paused then
        return;
    end if;
    ts := clock_timestamp();
    if lim.concurrency is not null then
        select count(*) into busy from {schema}.jobs j
         where j.queue = queue_name and j.status = 'running' and j.limit_slot;
        n := least(n, lim.concurrency - busy);
    end if;
    if lim.rate_count is not null then
        -- GCRA without burst: one start per emission interval, never two at once.
        if lim.rate_tat is not null and lim.rate_tat > ts then
            return;
        end if;
        n := least(n, 1);
        step := make_interval(secs => ceil(extract(epoch from lim.rate_period) * 1e6 / lim.rate_count) / 1e6);
    end if;
    if n < 1 then
        return;
    end if;

    if lim.group_concurrency is null and lim.group_rate_count is null then
        return query
        with clock as materialized (select clock_timestamp() as at),
        chosen as (
            select j.id
              from {schema}.jobs j
             where j.queue = queue_name and j.status = 'pending' and j.run_at <= (select at from clock)
             order by j.priority desc, j.run_at, j.id
             limit n
               for update of j skip locked
        )
        update {schema}.jobs j
           set status = 'running', attempts = j.attempts + 1, worker_id = worker, started_at = (select at from clock),
               progress = null, progress_message = null, limit_slot = true
         where j.id = any(array(select c.id from chosen c)) and j.queue = queue_name
        returning j.*;
    else
        return query select * from {schema}.claim_grouped(worker, queue_name, lim, n);
    end if;
    get diagnostics claimed = row_count;
    if claimed > 0 and step is not null then
        -- From a time after the claim's (its started_at): the next start is at least one
        -- interval after this one, in job_history's own timestamps too.
        ts := clock_timestamp();
        update {schema}.queues
           set rate_tat = greatest(coalesce(rate_tat, ts), ts) + step
         where name = queue_name;
    end if;
end
$$;

-- The claim of a queue with group limits, as in 0004, with one statement per
-- group instead of three (next group, its running count, its best job) when
-- the queue has no group rate: the next group's best ready job is found and
-- locked in one walk of jobs_group_idx, whose order is (queue, group_key,
-- priority desc, run_at, id); and no queue_groups row is written then. 1,000
-- groups at group concurrency 1 drained at 0.7 x an unlimited queue; each
-- claimed job cost about 40 us of server time.
create or replace function {schema}.claim_grouped(worker uuid, queue_name text, lim {schema}.queues, n integer)
returns setof {schema}.jobs
language plpgsql volatile as $$
declare
    ts       timestamptz := clock_timestamp();
    cursor_g text := lim.group_cursor;
    picked   bigint[] := '{}';
    groups   text[] := '{}';
    counts   integer[] := '{}';
    g        text;
    job_id   bigint;
    got      integer;
    slot     integer;
    gstep    interval;
    last_g   text;
    nxt      text;
    wrapped  boolean;
    no_loose boolean := false;
    -- Without group rates, one statement finds a group's next ready job (see below).
    fast     boolean := lim.group_rate_count is null;
    running  bigint;
begin
    if lim.group_rate_count is not null then
        gstep := make_interval(
            secs => ceil(extract(epoch from lim.group_rate_period) * 1e6 / lim.group_rate_count) / 1e6);
    end if;
    <<passes>>
    loop
        got := 0;
        -- The cycle: the groups after the cursor, then '', then the groups up to the cursor.
        g := coalesce(cursor_g, '');
        wrapped := false;
        <<cycle>>
        loop
            job_id := null;
            if fast then
                -- The next group's best ready job, found and locked in one walk of
                -- jobs_group_idx (whose order is exactly this one).
                select j.group_key, j.id into nxt, job_id from {schema}.jobs j
                 where j.queue = queue_name and j.status = 'pending' and j.group_key is not null
                   and j.group_key > g and j.run_at <= ts and not (j.id = any(picked))
                 order by j.group_key, j.priority desc, j.run_at, j.id
                 limit 1
                   for update skip locked;
            else
                select j.group_key into nxt from {schema}.jobs j
                 where j.queue = queue_name and j.status = 'pending' and j.group_key is not null and j.group_key > g
                 order by j.group_key
                 limit 1;
            end if;
            if nxt is null then
                exit cycle when wrapped;
                g := '';  -- past the last key: the turn of the jobs without a group
            else
                g := nxt;
                exit cycle when wrapped and g > cursor_g;
            end if;
            slot := array_position(groups, g);
            if g = '' and no_loose then
                job_id := null;  -- no job without a group was found earlier in this claim
            elsif fast and g <> '' then
                -- The job found above, if its group has room (a job it leaves locked is
                -- let go of when the claim's transaction ends).
                if job_id is not null and lim.group_concurrency is not null then
                    select count(*) into running from {schema}.jobs j
                     where j.queue = queue_name and j.group_key = g and j.status = 'running' and j.limit_slot;
                    if running + coalesce(counts[slot], 0) >= lim.group_concurrency then
                        job_id := null;
                    end if;
                end if;
            else
                job_id := {schema}.claim_group_job(queue_name, g, lim, ts, picked, coalesce(counts[slot], 0));
                no_loose := no_loose or (g = '' and job_id is null);
            end if;
            if job_id is not null then
                picked := picked || job_id;
                if slot is null then
                    groups := groups || g;
                    counts := counts || 1;
                else
                    counts[slot] := counts[slot] + 1;
                end if;
                got := got + 1;
                last_g := g;
                exit passes when cardinality(picked) >= n;
            end if;
            if g = '' then
                exit cycle when coalesce(cursor_g, '') = '';
                wrapped := true;
            elsif wrapped and g = cursor_g then
                exit cycle;
            end if;
        end loop;
        exit passes when got = 0;
    end loop;
    if cardinality(picked) = 0 then
        return;
    end if;
    update {schema}.queues set group_cursor = last_g where name = queue_name;
    if gstep is not null then
        -- Each group's rate: its next start. Without a group rate the rows would only
        -- record when each group was last served, which nothing reads (a row per
        -- group served, on every claim: a seventh of a grouped claim's time).
        insert into {schema}.queue_groups as qg (queue, group_key, last_served_at, rate_tat)
        select queue_name, x.g, ts, case when x.g <> '' then ts + gstep end
          from unnest(groups) as x(g)
        on conflict (queue, group_key) do update
           set last_served_at = excluded.last_served_at,
               rate_tat = case when excluded.group_key = '' then qg.rate_tat
                               else greatest(coalesce(qg.rate_tat, ts), ts) + gstep end;
    end if;
    return query
    with clock as materialized (select clock_timestamp() as at)
    update {schema}.jobs j
       set status = 'running', attempts = j.attempts + 1, worker_id = worker, started_at = (select at from clock),
           progress = null, progress_message = null, limit_slot = true
     where j.id = any(picked) and j.queue = queue_name
    returning j.*;
end
$$;

-- Claim up to max_jobs ready jobs of these queues for a worker, best first, with
-- the columns the worker makes its Jobs of, and next_wait: when the claim found
-- fewer jobs than it asked for, the seconds until the next delayed job is due
-- (null: none is), so that the worker knows how long it may sleep without a
-- second round trip. One ordered index scan per queue reads the claim index
-- (queue, priority desc, run_at, id), so a deep backlog costs nothing; a plain
-- "queue = any(...) order by ..." would sort every ready row of every queue.
-- Each queue may lock up to max_jobs rows; those the outer limit drops are let
-- go of when the claim's transaction ends.
--
-- A function, for its plan: as a statement, the claim was planned again at
-- every call (custom plans of a prepared statement, 0.3 ms: a third of a
-- one-job claim's time, on the path of every job's latency). Here the plan is
-- generic and kept; with sequential scans, hash and merge joins off, and the
-- rows to update named by an array, it cannot be anything but index scans in
-- claim order and primary-key probes, whatever the row estimates were when it
-- was made (a generic plan takes a parameter LIMIT for 10 % of the table).
create function {schema}.claim_jobs(worker uuid, queue_names text[], max_jobs integer)
returns table (
    id bigint, queue text, task text, args jsonb, priority integer, attempts integer, max_attempts integer,
    run_at timestamptz, created_at timestamptz, started_at timestamptz, key text, group_key text,
    timeout interval, backoff double precision, depends_on bigint[], on_parent_failure text, errors jsonb,
    next_wait double precision
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
        returning j.id, j.queue, j.task, j.args, j.priority, j.attempts, j.max_attempts, j.run_at, j.created_at,
                  j.started_at, j.key, j.group_key, j.timeout, j.backoff, j.depends_on, j.on_parent_failure,
                  nullif(j.errors, cast('[]' as jsonb)) as errors
    )
    select c.*,
           case when (select count(*) from claimed) < max_jobs
                then (select {schema}.seconds_to_next_run(queue_names)) end
      from claimed c;
end
$$;

-- Seconds (by the database clock) until the next delayed job of these queues is
-- due, or null: an idle worker sleeps exactly that long, and a claim that found
-- fewer jobs than it asked for returns it with its jobs (job_claim), which
-- saves a round trip per claim under a steady stream. The claim index is ordered
-- by priority first, so "the earliest run_at" is read per priority: a skip scan
-- walks the distinct priorities of each queue's pending jobs (one index probe
-- each), then takes the first future run_at of each. A plain min(run_at) read
-- every pending row of the queue.
create function {schema}.seconds_to_next_run(queue_names text[]) returns double precision
language plpgsql stable as $$
begin
    -- plpgsql, not SQL: a SQL function with a recursive query is planned at every call
    -- (0.4-0.7 ms here, more than the claim it rides on); plpgsql keeps its plan.
    return (
        with recursive priorities(queue, priority) as (
            select q.name,
                   (select j.priority from {schema}.jobs j
                     where j.queue = q.name and j.status = 'pending'
                     order by j.priority desc limit 1)
              from unnest(queue_names) as q(name)
            union all
            select p.queue,
                   (select j.priority from {schema}.jobs j
                     where j.queue = p.queue and j.status = 'pending' and j.priority < p.priority
                     order by j.priority desc limit 1)
              from priorities p
             where p.priority is not null
        )
        -- Null when no job is delayed (greatest() would turn that into 0: a busy loop).
        select cast(extract(epoch from min(n.run_at) - now()) as double precision)
          from priorities p
         cross join lateral (
                select j.run_at from {schema}.jobs j
                 where j.queue = p.queue and j.status = 'pending' and j.priority = p.priority and j.run_at > now()
                 order by j.run_at
                 limit 1
             ) n
         where p.priority is not null
    );
end
$$;
"""

DOWNGRADE = r"""
drop function {schema}.claim_jobs(uuid, text[], integer);
{claim_limited_0004}
drop function {schema}.seconds_to_next_run(text[]);
{claim_grouped_0004}
drop function {schema}.finish_jobs(uuid, bigint[], text[], integer[], text[], jsonb[], jsonb[], float8[]);
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    earlier = earlier_sql(
        Path(__file__).with_name("0004_dependencies.py"), "create function {schema}.claim_grouped(", "$$;"
    )
    limited = earlier_sql(
        Path(__file__).with_name("0004_dependencies.py"),
        "create or replace function {schema}.claim_limited(worker uuid, queue_name text, max_jobs integer)",
        "$$;",
    )
    op.execute(render(DOWNGRADE.replace("{claim_grouped_0004}", earlier).replace("{claim_limited_0004}", limited)))
