"""Dependencies between jobs, and keys that outlive their job.

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
"""

from __future__ import annotations

from alembic import op

from pgq.migrate_support import render

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
"""

DOWNGRADE = r"""
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
