"""Flow control: per-queue and per-group limits enforced inside the claim, and explain.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

- ``queues`` gains its limits (concurrency, rate, group concurrency, group
  rate, max_pending/on_full) and the queue's rate state (a GCRA theoretical
  arrival time, ``rate_tat``).
- ``queue_groups`` keeps per (queue, group) state: the group's rate state and
  when the group was last served (round-robin across groups).
- Two partial indexes on ``jobs``; neither serves the finish (see docs/schema.md).
- ``claim_limited(worker, queue, n)``: the claim of a limited queue, serialised
  per queue by a lock on its ``queues`` row. ``job_claim`` stays as it was for
  queues without limits.
- ``admit(queue, n)``: max_pending at enqueue, exact under concurrent enqueuers.
- ``explain(id)``: what holds a pending job back, in words.
"""

from __future__ import annotations

from alembic import op

from pgq.migrate_support import render

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
alter table {schema}.queues
    add column concurrency        integer,
    add column rate_count         integer,
    add column rate_period        interval,
    add column group_concurrency  integer,
    add column group_rate_count   integer,
    add column group_rate_period  interval,
    add column max_pending        integer,
    add column on_full            text not null default 'reject',
    add column rate_tat           timestamptz,
    add column rejected           bigint not null default 0,
    add constraint queues_concurrency_check check (concurrency > 0 and group_concurrency > 0),
    add constraint queues_rate_check check (
        (rate_count is null) = (rate_period is null) and rate_count > 0 and rate_period > interval '0'),
    add constraint queues_group_rate_check check (
        (group_rate_count is null) = (group_rate_period is null)
        and group_rate_count > 0 and group_rate_period > interval '0'),
    add constraint queues_max_pending_check check (max_pending >= 0),
    add constraint queues_on_full_check check (on_full in ('reject', 'drop_oldest'));

-- Per (queue, group) state of queues with group limits. group_key '' stands
-- for the jobs of such a queue that have no group (a group name is never empty).
create table {schema}.queue_groups (
    queue          text not null,
    group_key      text not null,
    rate_tat       timestamptz,
    last_served_at timestamptz,
    primary key (queue, group_key)
);

-- Running jobs by queue and group: the limited claim counts them. The
-- predicate says "attempts > 0" (always true of a running job) so that only a
-- query that says it too can use this index: the finish mentions
-- status = 'running' and must keep going by primary key (revision 0002).
create index jobs_running_idx on {schema}.jobs (queue, group_key)
    where status = 'running' and attempts > 0;
-- Ready jobs of a group, best first: the round-robin over groups reads the
-- head of each group here. Jobs without a group never enter it.
create index jobs_group_idx on {schema}.jobs (queue, group_key, priority desc, run_at, id)
    where status = 'pending' and group_key is not null;

-- The claim of a queue with limits. The lock on the queue's row serialises the
-- claims of that queue across every worker, so the counts it reads (running
-- jobs, rate state) are exact. Time is clock_timestamp(), never now() (the
-- transaction's start, stale after a wait on the lock): the rate check reads it
-- after the lock, and the claim statement reads its own (started_at) once its
-- snapshot is taken, so a job never starts before the finish it saw committed.
create function {schema}.claim_limited(worker uuid, queue_name text, max_jobs integer)
returns setof {schema}.jobs
language plpgsql volatile as $$
declare
    lim       {schema}.queues%rowtype;
    ts        timestamptz;
    n         integer := max_jobs;
    busy      bigint;
    claimed   bigint;
    step      interval;
    gstep     interval;
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
         where j.queue = queue_name and j.status = 'running' and j.attempts > 0;
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
    if lim.group_rate_count is not null then
        gstep := make_interval(
            secs => ceil(extract(epoch from lim.group_rate_period) * 1e6 / lim.group_rate_count) / 1e6);
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
               progress = null, progress_message = null
          from chosen c
         where j.id = c.id and j.queue = queue_name
        returning j.*;
    else
        return query
        with recursive clock as materialized (select clock_timestamp() as at),
        heads as (
            -- Groups with a pending job: one probe of jobs_group_idx per group (a skip scan).
            (select j.group_key from {schema}.jobs j
              where j.queue = queue_name and j.status = 'pending' and j.group_key is not null
              order by j.group_key limit 1)
            union all
            select (select j.group_key from {schema}.jobs j
                     where j.queue = queue_name and j.status = 'pending' and j.group_key is not null
                       and j.group_key > h.group_key
                     order by j.group_key limit 1)
              from heads h
             where h.group_key is not null
        ),
        groups as (
            select h.group_key as g from heads h where h.group_key is not null
            union all
            -- Jobs without a group: looked for among the first 500 ready jobs of the queue.
            select '' where exists (
                select from (select j.group_key from {schema}.jobs j
                              where j.queue = queue_name and j.status = 'pending' and j.run_at <= (select at from clock)
                              order by j.priority desc, j.run_at, j.id
                              limit 500) s
                 where s.group_key is null)
        ),
        busy_groups as (
            select coalesce(j.group_key, '') as g, count(*) as running
              from {schema}.jobs j
             where j.queue = queue_name and j.status = 'running' and j.attempts > 0
             group by 1
        ),
        eligible as (
            select gr.g, s.last_served_at,
                   case when gr.g = '' then n
                        when lim.group_rate_count is not null then 1
                        else least(n, coalesce(lim.group_concurrency - coalesce(b.running, 0), n)) end as room
              from groups gr
              left join busy_groups b on b.g = gr.g
              left join {schema}.queue_groups s on s.queue = queue_name and s.group_key = gr.g
             where gr.g = ''
                or ((lim.group_concurrency is null or coalesce(b.running, 0) < lim.group_concurrency)
                    and (lim.group_rate_count is null or s.rate_tat is null or s.rate_tat <= (select at from clock)))
        ),
        candidates as (
            select e.g, e.last_served_at, c.id,
                   row_number() over (partition by e.g order by c.priority desc, c.run_at, c.id) as rn
              from eligible e
             cross join lateral (
                    (select j.id, j.priority, j.run_at
                       from {schema}.jobs j
                      where e.g <> '' and j.queue = queue_name and j.status = 'pending'
                        and j.group_key = e.g and j.run_at <= (select at from clock)
                      order by j.priority desc, j.run_at, j.id
                      limit e.room)
                    union all
                    (select s.id, s.priority, s.run_at
                       from (select j.id, j.priority, j.run_at, j.group_key
                               from {schema}.jobs j
                              where e.g = '' and j.queue = queue_name and j.status = 'pending' and j.run_at <= (select at from clock)
                              order by j.priority desc, j.run_at, j.id
                              limit 500) s
                      where s.group_key is null
                      order by s.priority desc, s.run_at, s.id
                      limit e.room)
                 ) c
        ),
        picked as (
            -- Round-robin: the first job of every group before the second of any;
            -- among groups, the one served longest ago first.
            select c.id from candidates c
             order by c.rn, c.last_served_at nulls first, c.g
             limit n
        ),
        locked as (
            select j.id, coalesce(j.group_key, '') as g
              from {schema}.jobs j
              join picked p on j.id = p.id and j.queue = queue_name
             where j.status = 'pending'
               for update of j skip locked
        ),
        served as (
            insert into {schema}.queue_groups as qg (queue, group_key, last_served_at, rate_tat)
            select queue_name, l.g, (select at from clock), case when l.g <> '' and gstep is not null then (select at from clock) + gstep end
              from (select distinct g from locked) l
            on conflict (queue, group_key) do update
               set last_served_at = excluded.last_served_at,
                   rate_tat = case when excluded.group_key = '' or gstep is null then qg.rate_tat
                                   else greatest(coalesce(qg.rate_tat, (select at from clock)), (select at from clock)) + gstep end
        )
        update {schema}.jobs j
           set status = 'running', attempts = j.attempts + 1, worker_id = worker, started_at = (select at from clock),
               progress = null, progress_message = null
          from locked l
         where j.id = l.id and j.queue = queue_name
        returning j.*;
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

-- Admission (max_pending): called by the enqueue statements for a queue whose
-- row has max_pending, before their insert. The lock on the row serialises the
-- enqueuers of that queue until their transactions end, and the count, taken
-- after it, sees every committed enqueue: exact under concurrency. Over the
-- limit: on_full 'reject' raises SQLSTATE PGQ01 (nothing is written), and
-- 'drop_oldest' cancels the oldest pending jobs into history to make room.
create function {schema}.admit(queue_name text, n integer) returns boolean
language plpgsql volatile as $$
declare
    lim     record;
    pending bigint;
    excess  bigint;
    dropped bigint;
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
        returning j.*
    ),
    archived as (
        insert into {schema}.job_history
            (id, queue, task, args, priority, status, attempts, max_attempts, run_at, created_at,
             started_at, worker_id, key, group_key, progress, progress_message, errors, timeout, backoff,
             cancel_requested_at, finished_at, result)
        select id, queue, task, args, priority, 'cancelled', attempts, max_attempts, run_at, created_at,
               started_at, worker_id, key, group_key, progress, progress_message,
               errors || jsonb_build_array(jsonb_build_object(
                   'attempt', attempts, 'at', now(), 'type', 'Dropped',
                   'message', format('dropped to admit a newer job: queue %s is full (max_pending %s)',
                                     queue_name, lim.max_pending))),
               timeout, backoff, now(), now(), null
          from gone
        returning id
    )
    select count(*) into dropped from archived;
    update {schema}.queues set rejected = rejected + dropped where name = queue_name;
    return true;
end
$$;

-- Why isn't my job running? One line per thing that holds a pending job back.
create function {schema}.explain(job_id bigint) returns text
language plpgsql stable as $$
declare
    j        record;
    lim      record;
    lines    text[] := '{}';
    busy     bigint;
    holders  text;
    grp      record;
    ahead    bigint;
begin
    select * into j from {schema}.jobs where id = job_id;
    if not found then
        select * into j from {schema}.job_history where id = job_id;
        if not found then
            return format('job %s: no such job', job_id);
        end if;
        return format('job %s is %s (finished at %s): nothing holds it back', job_id, j.status, j.finished_at);
    end if;
    if j.status = 'running' then
        return format('job %s is running (attempt %s of %s, started at %s, worker %s)',
                      job_id, j.attempts, j.max_attempts, j.started_at, j.worker_id);
    end if;
    if j.status = 'blocked' then
        return format('job %s is blocked: it waits for its parents to complete', job_id);
    end if;
    if j.run_at > now() then
        lines := lines || format('its run_at is in the future: due at %s (in %s s)',
                                 j.run_at, round(extract(epoch from j.run_at - now())::numeric, 1));
    end if;
    if j.attempts >= j.max_attempts then
        lines := lines || format('it is out of attempts (%s of %s used): it runs once more only after a retry',
                                 j.attempts, j.max_attempts);
    end if;
    select * into lim from {schema}.queues where name = j.queue;
    if found then
        if lim.paused then
            lines := lines || format('its queue %s is paused (pgq queues resume %s)', j.queue, j.queue);
        end if;
        if lim.concurrency is not null then
            select count(*), string_agg(x.id::text, ', ' order by x.id) into busy, holders
              from (select r.id from {schema}.jobs r
                     where r.queue = j.queue and r.status = 'running' and r.attempts > 0
                     order by r.id) x;
            if busy >= lim.concurrency then
                lines := lines || format('queue %s concurrency is full: %s of %s running (jobs %s)',
                                         j.queue, busy, lim.concurrency, holders);
            end if;
        end if;
        if lim.rate_count is not null and lim.rate_tat > clock_timestamp() then
            lines := lines || format('queue %s rate limit (%s per %s) allows the next start at %s',
                                     j.queue, lim.rate_count, lim.rate_period, lim.rate_tat);
        end if;
        if j.group_key is not null and lim.group_concurrency is not null then
            select count(*), string_agg(x.id::text, ', ' order by x.id) into busy, holders
              from (select r.id from {schema}.jobs r
                     where r.queue = j.queue and r.group_key = j.group_key
                       and r.status = 'running' and r.attempts > 0
                     order by r.id) x;
            if busy >= lim.group_concurrency then
                lines := lines || format('group %s concurrency is full: %s of %s running (jobs %s)',
                                         j.group_key, busy, lim.group_concurrency, holders);
            end if;
        end if;
        if j.group_key is not null and lim.group_rate_count is not null then
            select * into grp from {schema}.queue_groups g where g.queue = j.queue and g.group_key = j.group_key;
            if found and grp.rate_tat > clock_timestamp() then
                lines := lines || format('group %s rate limit (%s per %s) allows the next start at %s',
                                         j.group_key, lim.group_rate_count, lim.group_rate_period, grp.rate_tat);
            end if;
        end if;
    end if;
    if not exists (select from {schema}.workers w
                    where w.status in ('running', 'stopping') and j.queue = any(w.queues)) then
        lines := lines || format('no live worker serves its queue %s (start one: pgq worker APP --queues %s)',
                                 j.queue, j.queue);
    end if;
    if cardinality(lines) = 0 then
        select count(*) into ahead from {schema}.jobs a
         where a.queue = j.queue and a.status = 'pending' and a.run_at <= now()
           and (a.priority > j.priority or (a.priority = j.priority and (a.run_at, a.id) < (j.run_at, j.id)));
        return format('job %s is pending and due; nothing holds it back: %s jobs of queue %s are ahead of it',
                      job_id, ahead, j.queue);
    end if;
    return format('job %s is pending; held back by:', job_id) || E'\n- ' || array_to_string(lines, E'\n- ');
end
$$;
"""

DOWNGRADE = r"""
drop function if exists {schema}.explain(bigint);
drop function if exists {schema}.admit(text, integer);
drop function if exists {schema}.claim_limited(uuid, text, integer);
drop index if exists {schema}.jobs_group_idx;
drop index if exists {schema}.jobs_running_idx;
drop table if exists {schema}.queue_groups;
alter table {schema}.queues
    drop constraint queues_concurrency_check,
    drop constraint queues_rate_check,
    drop constraint queues_group_rate_check,
    drop constraint queues_max_pending_check,
    drop constraint queues_on_full_check,
    drop column concurrency,
    drop column rate_count,
    drop column rate_period,
    drop column group_concurrency,
    drop column group_rate_count,
    drop column group_rate_period,
    drop column max_pending,
    drop column on_full,
    drop column rate_tat,
    drop column rejected;
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
