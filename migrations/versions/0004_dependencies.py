"""Dependencies between jobs, keys that outlive their job, a cheaper grouped claim.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

- ``jobs.depends_on`` (and in ``job_history``): the ids of the jobs this one
  waits for. A job with parents is inserted ``blocked`` (the claim never reads
  blocked rows) and becomes ``pending`` when its parents are done.
  ``on_parent_failure`` says what a parent that fails for good does to it:
  ``cancel`` (null means the same) or ``run``.
- ``settle_blocked(ids)`` decides for blocked jobs: release, cancel, or keep
  waiting. A row trigger on ``jobs`` calls it for the children of a job with
  ``has_children`` when that job leaves ``jobs``, whichever path moved it to
  history (a worker's finish, a cancel, the sweeper, a drop), so no path can
  forget them. Jobs without children pay one test of a boolean in the
  trigger's WHEN clause, evaluated without calling any function.
- ``lock_parents(ids)``: an enqueue with parents marks its live parents
  ``has_children``, which also locks their rows until the enqueuing
  transaction ends, so a parent cannot finish between the child's check and
  the child's commit (its finish waits for the child's transaction, then finds
  the child). Unknown parent ids raise SQLSTATE PGQ02.
- ``job_keys``: one row per (queue, key) enqueued with ``unique_for`` or
  ``debounce``. Its primary key is what serialises enqueuers of one key (they
  take the row's lock), and ``expires_at`` keeps a key taken by ``unique_for``
  after its job finished.
- ``claim_limited`` serves the groups of a grouped queue in turn from a
  cursor (``queues.group_cursor``, the last group served) instead of reading
  every group with pending jobs at each claim: a claim reads about as many
  groups as it takes jobs, not all of them (a claim of 10 jobs among 1,000
  groups read 2,000 index entries before).
- ``jobs_running_idx`` holds only the running jobs that hold a slot of a
  limit (``limit_slot``, set by ``claim_limited`` and by ``set_queue`` for the
  jobs already running when a limit is set), not every running job: a claim of
  a queue without limits no longer writes an entry of it (75 bytes of WAL per
  job, 9 % of a claim and finish).
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, render

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = r"""
alter table {schema}.jobs
    add column depends_on        bigint[],
    add column on_parent_failure text,
    -- Set when a job is named in another's depends_on; null means no children.
    add column has_children      boolean,
    add constraint jobs_on_parent_failure_check check (on_parent_failure in ('cancel', 'run'));
alter table {schema}.job_history
    add column depends_on        bigint[],
    add column on_parent_failure text;

-- Children waiting for a parent, found by the parent's id when it finishes.
-- Only blocked rows are indexed: the index stays as small as the set of
-- waiting jobs, and jobs without parents never enter it.
create index jobs_blocked_parents_idx on {schema}.jobs using gin (depends_on) where status = 'blocked';

create or replace view {schema}.all_jobs as
    select id, queue, task, args, priority, status, attempts, max_attempts, run_at,
           created_at, started_at, worker_id, key, group_key, progress, progress_message,
           errors, timeout, backoff, cancel_requested_at,
           null::timestamptz as finished_at, null::jsonb as result, depends_on, on_parent_failure
      from {schema}.jobs
    union all
    select id, queue, task, args, priority, status, attempts, max_attempts, run_at,
           created_at, started_at, worker_id, key, group_key, progress, progress_message,
           errors, timeout, backoff, cancel_requested_at, finished_at, result, depends_on, on_parent_failure
      from {schema}.job_history;

create table {schema}.job_keys (
    queue       text not null,
    key         text not null,
    -- The job that took the key last (live, or finished and in job_history).
    job_id      bigint,
    -- unique_for: the key stays taken until then, even after its job finished.
    expires_at  timestamptz,
    primary key (queue, key)
);

-- Mark and lock the live parents of a job being enqueued (see the header), and
-- refuse ids that are no job at all. The check is a later statement than the
-- locks, so its snapshot finds a parent that finished while we waited for its
-- lock in job_history.
create function {schema}.lock_parents(parents bigint[]) returns void
language plpgsql volatile as $$
declare
    missing bigint[];
begin
    -- Rows locked in id order, so that two enqueues naming the same parents
    -- cannot deadlock.
    perform 1 from {schema}.jobs j where j.id = any(parents) order by j.id for no key update;
    update {schema}.jobs set has_children = true
     where id = any(parents) and has_children is not true;
    select array_agg(p.id order by p.id) into missing
      from unnest(parents) as p(id)
     where not exists (select from {schema}.jobs j where j.id = p.id)
       and not exists (select from {schema}.job_history h where h.id = p.id);
    if missing is not null then
        raise exception 'depends_on names jobs that do not exist: %', array_to_string(missing, ', ')
            using errcode = 'PGQ02',
                  hint = 'pass ids returned by enqueue; a finished parent may have been pruned by retention';
    end if;
end
$$;

-- Release, cancel or keep waiting each of these blocked jobs. Each job's row is
-- locked first (in id order, so two settlements of overlapping sets cannot
-- deadlock), then its parents are read in a later statement, with a snapshot
-- taken after the lock: of two parents finishing at once, whichever settles
-- second sees the other's commit.
create function {schema}.settle_blocked(ids bigint[]) returns integer
language plpgsql volatile as $$
declare
    child    record;
    parent   record;
    waiting  boolean;
    failed   record;
    released integer := 0;
begin
    for child in
        select j.id, j.queue, j.depends_on, coalesce(j.on_parent_failure, 'cancel') as on_failure
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
            with gone as (
                delete from {schema}.jobs j
                 where j.id = child.id and j.queue = child.queue and j.status = 'blocked'
                returning j.*
            )
            insert into {schema}.job_history
                (id, queue, task, args, priority, status, attempts, max_attempts, run_at, created_at,
                 started_at, worker_id, key, group_key, progress, progress_message, errors, timeout, backoff,
                 cancel_requested_at, finished_at, result, depends_on, on_parent_failure)
            select id, queue, task, args, priority, 'cancelled', attempts, max_attempts, run_at, created_at,
                   started_at, worker_id, key, group_key, progress, progress_message,
                   errors || jsonb_build_array(jsonb_build_object(
                       'attempt', attempts, 'at', now(), 'type', 'ParentFailed', 'parent', failed.id,
                       'message', format('parent job %s %s', failed.id,
                                         case failed.state when 'missing' then 'no longer exists'
                                                           else 'ended ' || failed.state end))),
                   timeout, backoff, now(), now(), null, depends_on, on_parent_failure
              from gone;
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

-- A parent leaving jobs (finished, moved to job_history in the same statement):
-- settle its blocked children. An AFTER row trigger runs at the end of that
-- statement, so it sees the parent's history row.
create function {schema}.settle_children() returns trigger
language plpgsql as $$
declare
    children bigint[];
begin
    select array_agg(j.id) into children
      from {schema}.jobs j
     where j.status = 'blocked' and j.depends_on @> array[old.id];
    if children is not null then
        perform {schema}.settle_blocked(children);
    end if;
    return null;
end
$$;

create trigger jobs_settle_children after delete on {schema}.jobs
    for each row when (old.has_children) execute function {schema}.settle_children();

-- Running jobs that hold a slot of their queue's (or group's) limits. Set by
-- claim_limited, and by set_queue on the jobs already running when it sets a
-- concurrency limit; never by the claim of a queue without limits, so those
-- claims write no entry of the index below.
alter table {schema}.jobs add column limit_slot boolean;
drop index {schema}.jobs_running_idx;
create index jobs_running_idx on {schema}.jobs (queue, group_key)
    where status = 'running' and limit_slot;

-- The last group a claim served; the next claim starts after it.
alter table {schema}.queues add column group_cursor text;

-- One job of group g (the group '' stands for the jobs without a group) for
-- the claim in progress, locked, or null: the group's own limits are checked
-- here (ungrouped jobs have none).
create function {schema}.claim_group_job(
    queue_name text, g text, lim {schema}.queues, ts timestamptz, picked bigint[], taken integer
) returns bigint
language plpgsql volatile as $$
declare
    job_id  bigint;
    cand    record;
    running bigint;
    tat     timestamptz;
begin
    if g = '' then
        -- Looked for among the first 500 ready jobs of the queue in claim order
        -- (jobs without a group have no index of their own).
        for cand in
            select j.id, j.group_key from {schema}.jobs j
             where j.queue = queue_name and j.status = 'pending' and j.run_at <= ts
             order by j.priority desc, j.run_at, j.id
             limit 500
        loop
            continue when cand.group_key is not null or cand.id = any(picked);
            select j.id into job_id from {schema}.jobs j
             where j.id = cand.id and j.queue = queue_name and j.status = 'pending'
               for update skip locked;
            if job_id is not null then
                return job_id;
            end if;
        end loop;
        return null;
    end if;
    if lim.group_rate_count is not null then
        if taken > 0 then
            return null;  -- one start per group and claim: the rate spaces them
        end if;
        select qg.rate_tat into tat from {schema}.queue_groups qg where qg.queue = queue_name and qg.group_key = g;
        if tat is not null and tat > ts then
            return null;
        end if;
    end if;
    if lim.group_concurrency is not null then
        select count(*) into running from {schema}.jobs j
         where j.queue = queue_name and j.group_key = g and j.status = 'running' and j.limit_slot;
        if running + taken >= lim.group_concurrency then
            return null;
        end if;
    end if;
    select j.id into job_id from {schema}.jobs j
     where j.queue = queue_name and j.status = 'pending' and j.group_key = g and j.run_at <= ts
       and not (j.id = any(picked))
     order by j.priority desc, j.run_at, j.id
     limit 1
       for update skip locked;
    return job_id;
end
$$;

-- The claim of a queue with group limits: groups take turns. Each pass walks
-- the groups with pending jobs in key order, starting after the group the
-- last claim served and wrapping around (the jobs without a group count as
-- one more group, '', between the last key and the first), and takes at most
-- one job per group; passes repeat until the claim has its jobs or a pass
-- finds none. So every group gets a turn before any gets a second, and a
-- claim reads about as many groups as it takes jobs while most groups have
-- room. Called by claim_limited with the queue's row locked.
create function {schema}.claim_grouped(worker uuid, queue_name text, lim {schema}.queues, n integer)
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
            select j.group_key into nxt from {schema}.jobs j
             where j.queue = queue_name and j.status = 'pending' and j.group_key is not null and j.group_key > g
             order by j.group_key
             limit 1;
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
    insert into {schema}.queue_groups as qg (queue, group_key, last_served_at, rate_tat)
    select queue_name, x.g, ts, case when x.g <> '' and gstep is not null then ts + gstep end
      from unnest(groups) as x(g)
    on conflict (queue, group_key) do update
       set last_served_at = excluded.last_served_at,
           rate_tat = case when excluded.group_key = '' or gstep is null then qg.rate_tat
                           else greatest(coalesce(qg.rate_tat, ts), ts) + gstep end;
    return query
    with clock as materialized (select clock_timestamp() as at)
    update {schema}.jobs j
       set status = 'running', attempts = j.attempts + 1, worker_id = worker, started_at = (select at from clock),
           progress = null, progress_message = null, limit_slot = true
     where j.id = any(picked) and j.queue = queue_name
    returning j.*;
end
$$;

-- As in 0003, but the claim of a grouped queue is claim_grouped's.
create or replace function {schema}.claim_limited(worker uuid, queue_name text, max_jobs integer)
returns setof {schema}.jobs
language plpgsql volatile as $$
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
          from chosen c
         where j.id = c.id and j.queue = queue_name
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
"""

DOWNGRADE = r"""
drop function if exists {schema}.claim_grouped(uuid, text, {schema}.queues, integer) cascade;
drop function if exists {schema}.claim_group_job(text, text, {schema}.queues, timestamptz, bigint[], integer);
alter table {schema}.queues drop column if exists group_cursor;
drop index if exists {schema}.jobs_running_idx;
create index jobs_running_idx on {schema}.jobs (queue, group_key)
    where status = 'running' and attempts > 0;
alter table {schema}.jobs drop column if exists limit_slot;
drop trigger if exists jobs_settle_children on {schema}.jobs;
drop function if exists {schema}.settle_children();
drop function if exists {schema}.settle_blocked(bigint[]);
drop function if exists {schema}.lock_parents(bigint[]);
drop table if exists {schema}.job_keys;
drop view if exists {schema}.all_jobs;
create view {schema}.all_jobs as
    select id, queue, task, args, priority, status, attempts, max_attempts, run_at,
           created_at, started_at, worker_id, key, group_key, progress, progress_message,
           errors, timeout, backoff, cancel_requested_at,
           null::timestamptz as finished_at, null::jsonb as result
      from {schema}.jobs
    union all
    select id, queue, task, args, priority, status, attempts, max_attempts, run_at,
           created_at, started_at, worker_id, key, group_key, progress, progress_message,
           errors, timeout, backoff, cancel_requested_at, finished_at, result
      from {schema}.job_history;
drop index if exists {schema}.jobs_blocked_parents_idx;
alter table {schema}.jobs
    drop constraint jobs_on_parent_failure_check,
    drop column has_children,
    drop column depends_on,
    drop column on_parent_failure;
alter table {schema}.job_history
    drop column depends_on,
    drop column on_parent_failure;
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
    op.execute(render(_claim_limited_of_0003()))


def _claim_limited_of_0003() -> str:
    """0003's claim_limited, read from that migration itself rather than copied here."""
    return earlier_sql(
        Path(__file__).with_name("0003_flow_control.py"), "create function {schema}.claim_limited(", "$$;"
    )
