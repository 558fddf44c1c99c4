"""The first pass of a grouped claim by set: one walk of the groups instead of a loop.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

A queue with group limits and no group rate (``set_queue(group_concurrency=N)``) is
claimed by ``claim_grouped()``. Its first pass over the groups (each group with room
gives its best ready job, in the cycle's order from the queue's cursor) took two
statements per group in a plpgsql loop: the group's best job, locked, then a count of
the group's running jobs. Measured on PostgreSQL 15 over a drain of 30,000 jobs in
1,000 groups at group concurrency 1, 100 jobs a claim: 45-59 us of server time a
claimed job, against 17-20 us for a queue without limits.

Now:

- the groups at their concurrency are read once, from ``jobs_running_idx``;
- ``claim_group_walk()`` walks ``jobs_group_idx`` from group to group (a recursive
  query, one index probe per group), leaves out the full groups, and locks up to n
  of the jobs found in one statement;
- the cycle's order is kept: the groups after the cursor, then one job without a
  group, then the groups up to the cursor (a second walk);
- the passes after the first one (when fewer groups than n have room, so a group
  may give a second job) and every pass of a queue with group rates are the loop
  of 0006, unchanged.

The same drain: 30-45 us a claimed job (one run to the next on a shared machine;
the old function 47-59 in the same runs). On PostgreSQL 15 each probe of the walk
reads its whole leaf page (about 10 us a group); PostgreSQL 17 and later stop early.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, render

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Up to n ready jobs of a grouped queue, one per group, from the groups after
-- after_g (up to upto_g when given) in group order, leaving out full_groups:
-- found by a walk of jobs_group_idx (queue, group_key, priority desc, run_at,
-- id) that probes the next group's best job from the last one, then locked in
-- one statement (a job another session holds is skipped, as in the loop).
create function {schema}.claim_group_walk(
    queue_name text, after_g text, upto_g text, ts timestamptz, full_groups text[], n integer
) returns table (id bigint, g text)
language plpgsql volatile as $$
begin
    return query
    -- The walk starts from a row of its own (after_g, no job), which it then leaves out.
    with recursive walk(g, id) as (
        select after_g, cast(null as bigint)
        union all
        (select x.g, x.id
           from walk w
          cross join lateral (
                select cast(j.group_key as text) as g, j.id from {schema}.jobs j
                 where j.queue = queue_name and j.status = 'pending' and j.group_key is not null
                   and j.group_key > w.g and j.run_at <= ts
                 order by j.group_key, j.priority desc, j.run_at, j.id
                 limit 1) x
          where upto_g is null or w.g < upto_g)
    ),
    chosen as materialized (
        select w.g, w.id from walk w
         where w.id is not null and (upto_g is null or w.g <= upto_g) and w.g <> all(full_groups)
         limit n
    )
    select j.id, cast(j.group_key as text) from {schema}.jobs j
     where j.id = any(array(select c.id from chosen c)) and j.queue = queue_name and j.status = 'pending'
       for update of j skip locked;
end
$$;

-- As in 0006, with the first pass taken by claim_group_walk() when the queue has
-- no group rate.
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
    -- The groups at their concurrency when the claim starts (the first pass's check).
    full_groups text[];
begin
    if lim.group_rate_count is not null then
        gstep := make_interval(
            secs => ceil(extract(epoch from lim.group_rate_period) * 1e6 / lim.group_rate_count) / 1e6);
    end if;
    if fast then
        -- The first pass, in the cycle's order, by set: the groups after the cursor,
        -- the turn of the jobs without a group, the groups up to the cursor.
        full_groups := array(
            select r.group_key from {schema}.jobs r
             where r.queue = queue_name and r.status = 'running' and r.limit_slot and r.group_key is not null
             group by r.group_key
            having count(*) >= lim.group_concurrency);
        select coalesce(array_agg(w.id order by w.g), '{}'), coalesce(array_agg(w.g order by w.g), '{}')
          into picked, groups
          from {schema}.claim_group_walk(queue_name, coalesce(cursor_g, ''), null, ts, full_groups, n) w;
        if cardinality(picked) < n then
            job_id := {schema}.claim_group_job(queue_name, '', lim, ts, picked, 0);
            if job_id is null then
                no_loose := true;
            else
                picked := picked || job_id;
                groups := groups || ''::text;
            end if;
        end if;
        if cardinality(picked) < n and coalesce(cursor_g, '') <> '' then
            select picked || coalesce(array_agg(w.id order by w.g), '{}'),
                   groups || coalesce(array_agg(w.g order by w.g), '{}')
              into picked, groups
              from {schema}.claim_group_walk(queue_name, '', cursor_g, ts, full_groups, n - cardinality(picked)) w;
        end if;
        counts := array_fill(1, array[cardinality(groups)]);
        last_g := groups[cardinality(groups)];
    end if;
    -- The passes one group at a time: every pass with group rates, and the passes after
    -- the first one without them (when the groups with room are fewer than n).
    <<passes>>
    loop
        exit passes when fast and (cardinality(picked) = 0 or cardinality(picked) >= n);
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

"""

DOWNGRADE = r"""
drop function {schema}.claim_group_walk(text, text, text, timestamptz, text[], integer);
"""

HERE = Path(__file__).parent


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    earlier = earlier_sql(
        HERE / "0006_finish_function.py",
        "create or replace function {schema}.claim_grouped(worker uuid, queue_name text, lim {schema}.queues, n integer)",
        "$$;",
    )
    op.execute(render(earlier + "\n" + DOWNGRADE))
