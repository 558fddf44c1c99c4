"""Admission per group, rejections in the metrics rows, workers' tasks, explain.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

- ``queues.group_max_pending``: max_pending for each group of a queue, applied
  by ``admit_group(queue, group, n)`` (called by the enqueue statements after
  ``admit``).
- ``metrics.rejected`` (enqueues refused and pending jobs dropped in the row's
  interval) and ``metrics.rejected_total`` (``queues.rejected`` when the row was
  written: the next row's delta starts there).
- ``workers.tasks``: the task names a worker has registered (null: a worker
  from before this revision, taken to know every task).
- ``enqueue(...)`` gains ``group_key``, ``depends_on`` and ``on_parent_failure``,
  and goes through admission.
- ``explain(id)`` says when no live worker serving the job's queue knows its
  task, names the parents a blocked job waits for, and is rewritten as one
  small block per clause.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, render

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = r"""
alter table {schema}.queues
    add column group_max_pending integer,
    add constraint queues_group_max_pending_check check (group_max_pending >= 0);

alter table {schema}.metrics
    add column rejected       bigint not null default 0,
    add column rejected_total bigint;

alter table {schema}.workers
    add column tasks text[];

-- Admission per group (group_max_pending): called by the enqueue statements for
-- a job with a group in a queue whose row has group_max_pending, after admit().
-- Enqueuers of one (queue, group) take turns on a transaction-level advisory
-- lock, not on the queue_groups row: claim_limited writes that row (and holds
-- the queue's row lock meanwhile), so a lock on it held until an enqueuing
-- transaction ends would stall every claim of the queue; the sweeper's pruning
-- would wait on it too. The count, read after the lock, sees every committed
-- enqueue of the group: exact under concurrency.
create function {schema}.admit_group(queue_name text, group_name text, n integer) returns boolean
language plpgsql volatile as $$
declare
    lim     record;
    pending bigint;
    excess  bigint;
    dropped bigint;
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
                   'message', format('dropped to admit a newer job: group %s of queue %s is full (group_max_pending %s)',
                                     group_name, queue_name, lim.group_max_pending))),
               timeout, backoff, now(), now(), null
          from gone
        returning id
    )
    select count(*) into dropped from archived;
    update {schema}.queues set rejected = rejected + dropped where name = queue_name;
    return true;
end
$$;

drop function {schema}.enqueue(text, jsonb, text, integer, timestamptz, text, integer);

-- Enqueue from SQL (psql, triggers, other languages). Returns the new job's id,
-- or the id of the live job that already holds the key in that queue. The
-- queue's max_pending and group_max_pending apply as for pgq's own enqueue.
-- (group_key, not "group": a reserved word would need quotes at every call.)
create function {schema}.enqueue(
    task         text,
    args         jsonb default '{}'::jsonb,
    queue        text default 'default',
    priority     integer default 0,
    run_at       timestamptz default null,
    key          text default null,
    max_attempts integer default 3,
    group_key    text default null,
    depends_on   bigint[] default null,
    on_parent_failure text default null
) returns bigint
language plpgsql volatile as $$
#variable_conflict use_column
declare
    new_id bigint;
    queue_name text := coalesce(enqueue.queue, 'default');
    limit_bytes bigint := coalesce(nullif(current_setting('pgq.max_payload_bytes', true), '')::bigint, 1048576);
begin
    if task is null or length(task) = 0 then
        raise exception 'pgq.enqueue: task must be a non-empty name'
            using errcode = '22023';
    end if;
    if args is null or jsonb_typeof(args) <> 'object' then
        raise exception 'pgq.enqueue: args must be a JSON object of keyword arguments, got %',
            coalesce(jsonb_typeof(args), 'null')
            using errcode = '22023', hint = 'pass args like ''{"user_id": 7}''::jsonb';
    end if;
    if octet_length(args::text) > limit_bytes then
        raise exception 'pgq.enqueue: args are % bytes, over the limit of % bytes',
            octet_length(args::text), limit_bytes
            using errcode = '54000', hint = 'store the payload elsewhere and pass its id';
    end if;
    if max_attempts is null or max_attempts < 1 then
        raise exception 'pgq.enqueue: max_attempts must be at least 1, got %', max_attempts
            using errcode = '22023';
    end if;
    if enqueue.group_key is not null and length(enqueue.group_key) not between 1 and 255 then
        raise exception 'pgq.enqueue: group_key must be a non-empty string of at most 255 characters, got % characters',
            length(enqueue.group_key)
            using errcode = '22023', hint = 'pass null for a job without a group';
    end if;
    if enqueue.on_parent_failure is not null and enqueue.on_parent_failure not in ('cancel', 'run') then
        raise exception 'pgq.enqueue: on_parent_failure must be ''cancel'' or ''run'', got %', enqueue.on_parent_failure
            using errcode = '22023';
    end if;
    if cardinality(enqueue.depends_on) = 0 then
        depends_on := null;
    end if;
    perform {schema}.admit(queue_name, 1);
    perform {schema}.admit_group(queue_name, enqueue.group_key, 1);
    if enqueue.depends_on is not null then
        -- As pgq's own enqueue: lock the live parents until this transaction ends
        -- (refusing unknown ids), insert blocked, then settle against parents done.
        perform {schema}.lock_parents(enqueue.depends_on);
    end if;
    -- A concurrent enqueue with the same key may commit, or the holder of the key
    -- may finish, between our insert and our lookup: try again (bounded).
    for i in 1..10 loop
        insert into {schema}.jobs as j (task, args, queue, priority, run_at, key, max_attempts, group_key,
                                        depends_on, on_parent_failure, status)
        values (enqueue.task, enqueue.args, queue_name,
                coalesce(enqueue.priority, 0), coalesce(enqueue.run_at, now()),
                enqueue.key, enqueue.max_attempts, enqueue.group_key,
                enqueue.depends_on, enqueue.on_parent_failure,
                case when enqueue.depends_on is null then 'pending' else 'blocked' end)
        on conflict (queue, key) where key is not null do nothing
        returning j.id into new_id;
        if new_id is not null then
            if enqueue.depends_on is not null then
                perform {schema}.settle_blocked(array[new_id]);
            end if;
            return new_id;
        end if;
        select j.id into new_id from {schema}.jobs j
         where j.queue = queue_name and j.key = enqueue.key;
        if new_id is not null then
            return new_id;
        end if;
    end loop;
    raise exception 'pgq.enqueue: could not settle key % in queue % after 10 tries', key, queue
        using errcode = '40001';
end
$$;

-- Why isn't my job running? One line per thing that holds a pending job back.
-- Each clause is one block: a test and the line it adds to `lines`. A new
-- clause is one more block; none depends on another's result.
create or replace function {schema}.explain(job_id bigint) returns text
language plpgsql stable as $$
declare
    j        record;
    q        {schema}.queues%rowtype;  -- all null for a queue without a row
    grp      {schema}.queue_groups%rowtype;
    lines    text[] := '{}';
    busy     bigint;
    holders  text;
    ahead    bigint;
    serving  bigint;
    knowing  bigint;
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
    -- its parents are not done
    if j.status = 'blocked' then
        select string_agg(format('job %s is %s', p.id, p.status), ', ' order by p.id) into holders
          from {schema}.jobs p
         where p.id = any(j.depends_on);
        return format('job %s is blocked; held back by:', job_id) || E'\n- '
               || format('its parents are not done: %s', coalesce(holders, 'none is live any more'));
    end if;
    select * into q from {schema}.queues where name = j.queue;
    if j.group_key is not null then
        select * into grp from {schema}.queue_groups g where g.queue = j.queue and g.group_key = j.group_key;
    end if;

    -- its run_at is in the future
    if j.run_at > now() then
        lines := lines || format('its run_at is in the future: due at %s (in %s s)',
                                 j.run_at, round(extract(epoch from j.run_at - now())::numeric, 1));
    end if;

    -- it is out of attempts
    if j.attempts >= j.max_attempts then
        lines := lines || format('it is out of attempts (%s of %s used): it runs once more only after a retry',
                                 j.attempts, j.max_attempts);
    end if;

    -- its queue is paused
    if q.paused then
        lines := lines || format('its queue %s is paused (pgq queues resume %s)', j.queue, j.queue);
    end if;

    -- the queue's concurrency is full
    if q.concurrency is not null then
        select count(*), string_agg(x.id::text, ', ' order by x.id) into busy, holders
          from (select r.id from {schema}.jobs r
                 where r.queue = j.queue and r.status = 'running' and r.limit_slot
                 order by r.id) x;
        if busy >= q.concurrency then
            lines := lines || format('queue %s concurrency is full: %s of %s running (jobs %s)',
                                     j.queue, busy, q.concurrency, holders);
        end if;
    end if;

    -- the queue's rate limit allows the next start at T
    if q.rate_count is not null and q.rate_tat > clock_timestamp() then
        lines := lines || format('queue %s rate limit (%s per %s) allows the next start at %s',
                                 j.queue, q.rate_count, q.rate_period, q.rate_tat);
    end if;

    -- the group's concurrency is full
    if j.group_key is not null and q.group_concurrency is not null then
        select count(*), string_agg(x.id::text, ', ' order by x.id) into busy, holders
          from (select r.id from {schema}.jobs r
                 where r.queue = j.queue and r.group_key = j.group_key
                   and r.status = 'running' and r.limit_slot
                 order by r.id) x;
        if busy >= q.group_concurrency then
            lines := lines || format('group %s concurrency is full: %s of %s running (jobs %s)',
                                     j.group_key, busy, q.group_concurrency, holders);
        end if;
    end if;

    -- the group's rate limit allows the next start at T
    if j.group_key is not null and q.group_rate_count is not null and grp.rate_tat > clock_timestamp() then
        lines := lines || format('group %s rate limit (%s per %s) allows the next start at %s',
                                 j.group_key, q.group_rate_count, q.group_rate_period, grp.rate_tat);
    end if;

    -- no live worker serves its queue, or none of those knows its task
    -- (workers.tasks null: a worker from before revision 0005, taken to know every task)
    select count(*), count(*) filter (where w.tasks is null or j.task = any(w.tasks)) into serving, knowing
      from {schema}.workers w
     where w.status in ('running', 'stopping') and j.queue = any(w.queues);
    if serving = 0 then
        lines := lines || format('no live worker serves its queue %s (start one: pgq worker APP --queues %s)',
                                 j.queue, j.queue);
    elsif knowing = 0 then
        lines := lines || format('no live worker knows its task %s: the %s live worker(s) serving queue %s have not '
                                 'registered it (deploy the code that defines it, or check the task name)',
                                 j.task, serving, j.queue);
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
drop function {schema}.enqueue(text, jsonb, text, integer, timestamptz, text, integer, text, bigint[], text);

drop function {schema}.admit_group(text, text, integer);
alter table {schema}.workers drop column tasks;
alter table {schema}.metrics drop column rejected, drop column rejected_total;
alter table {schema}.queues
    drop constraint queues_group_max_pending_check,
    drop column group_max_pending;
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def _explain_0003() -> str:
    """Revision 0003's explain(id), read from its own file rather than copied here."""
    return earlier_sql(Path(__file__).with_name("0003_flow_control.py"), "-- Why isn't my job running?")


def _enqueue_0001() -> str:
    """Revision 0001's enqueue(...), read from its own file rather than copied here."""
    return earlier_sql(Path(__file__).with_name("0001_initial.py"), "create function {schema}.enqueue(", "\n$$;")


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
    op.execute(render(_enqueue_0001()))
    op.execute(render(_explain_0003()))
