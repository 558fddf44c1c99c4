"""One set of enqueue rules for every path, and moves to history that keep every column.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

- CHECK constraints on ``jobs`` hold the rules of a job row for every path that
  writes one: pgq's Python enqueue (statements and binary COPY), ``pgq.enqueue()``
  in SQL, and a hand-written insert:
  - ``jobs_queue_name_rule``: ASCII letters, digits, ``_ . : -`` (with 0001's
    length check, 1 to 128 of them; the letters are listed, not ranged: a range
    or a class like ``[[:alnum:]]`` would follow the database's collation);
  - ``jobs_max_attempts_limit``: at most 1000, or one more than the attempts a
    retried job already used;
  - ``jobs_key_length`` and ``jobs_group_key_length``: 1 to 255 characters.
  Live jobs that break a rule stop the migration with the list of them and the
  statement that fixes them (nothing is renamed silently); a ``max_attempts`` over
  1000 is lowered to 1000 (or to one past the attempts used).
- ``insert_job(...)``: the insert of one job with a key or parents (admission,
  locking the parents, five retries that settle a key holder committed after the
  statement's snapshot, settling a blocked job). ``enqueue(...)`` calls it, and so
  does pgq's Python enqueue for such jobs: the retry count and the order of the
  steps are one text.
- ``enqueue(...)`` gains ``delay``, ``timeout`` and ``backoff``, checks its args with
  ``check_args(args)`` (an object, ``pgq.max_payload_bytes``, at most 100 levels
  deep, numbers within the bigint range: the rules of Python's encoder), and says
  which rule a refused row broke.
- ``admit()`` and ``admit_group()`` move the jobs they drop (``on_full
  drop_oldest``) to history with ``depends_on`` and ``on_parent_failure``, which
  their copies of 0003 and 0005 left out. Rows those copies already wrote cannot be
  repaired: a drop deletes the live row in the statement that writes history, and
  nothing else kept those two columns. They are the cancelled rows whose last
  error has type ``Dropped``; their ``depends_on`` stays null.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, render

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = r"""
do $$
declare
    bad text;
begin
    select string_agg(format('job %s (queue %L, key %L, group %L)', j.id, j.queue, j.key, j.group_key), ', ')
      into bad
      from (select * from {schema}.jobs j
             where j.queue ~ '[^ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-]'
                or length(j.key) not between 1 and 255
                or length(j.group_key) not between 1 and 255
             order by j.id limit 20) j;
    if bad is not null then
        raise exception 'live jobs break the rules of queue names (1-128 ASCII letters, digits, _ . : -), keys or groups (1-255 characters): %', bad
            using hint = 'cancel them or give them a valid name (update {schema}.jobs set queue = ... where id = ...), then migrate again';
    end if;
end
$$;

update {schema}.jobs set max_attempts = greatest(1000, attempts + 1) where max_attempts > 1000;

alter table {schema}.jobs
    -- With jobs_queue_name (1 to 128 characters, migration 0001), the rule of queue names.
    -- Written as "no character outside the set": 0.3 us a row, where the anchored
    -- '^[...]{1,128}$' took 5 us (its bounded repetition), more than the rest of a COPY.
    add constraint jobs_queue_name_rule
        check (queue !~ '[^ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-]'),
    add constraint jobs_max_attempts_limit check (max_attempts <= 1000 or max_attempts <= attempts + 1),
    add constraint jobs_key_length check (length(key) between 1 and 255),
    add constraint jobs_group_key_length check (length(group_key) between 1 and 255);

-- The args rules of pgq's Python encoder (pgq/payload.py), for jobs enqueued from SQL.
-- A NUL character, a lone surrogate, NaN and Infinity never get this far: jsonb
-- refuses them when the argument is built.
create function {schema}.check_args(args jsonb) returns void
language plpgsql stable as $$
declare
    limit_bytes bigint := coalesce(nullif(current_setting('pgq.max_payload_bytes', true), '')::bigint, 1048576);
    size        bigint;
    number      jsonb;
begin
    if args is null or jsonb_typeof(args) <> 'object' then
        raise exception 'pgq.enqueue: args must be a JSON object of keyword arguments, got %',
            coalesce(jsonb_typeof(args), 'null')
            using errcode = '22023', hint = 'pass args like ''{"user_id": 7}''::jsonb';
    end if;
    size := octet_length(args::text);
    if size > limit_bytes then
        raise exception 'pgq.enqueue: args are % bytes, over the limit of % bytes', size, limit_bytes
            using errcode = '54000', hint = 'store the payload elsewhere and pass its id';
    end if;
    -- The args object is level 1; a list or object at path level 100 is level 101.
    if jsonb_path_exists(args, 'strict $.**{100 to last} ? (@.type() == "object" || @.type() == "array")') then
        raise exception 'pgq.enqueue: args nest deeper than 100 levels'
            using errcode = '22023', hint = 'flatten the structure or store it elsewhere and pass its id';
    end if;
    number := jsonb_path_query_first(args,
        'strict $.** ? (@.type() == "number" && (@ >= 9223372036854775808 || @ < -9223372036854775808))');
    if number is not null then
        raise exception 'pgq.enqueue: args hold the number %, outside the 64-bit integer range', left(number::text, 60)
            using errcode = '22023', hint = 'pass a larger number as a string';
    end if;
end
$$;

-- One job with its checks done: admission (max_pending, group_max_pending), the
-- parents locked (refusing unknown ids) and the job inserted blocked, then
-- settled against parents already done; a key held by a live job returns that
-- job's id. A key holder that commits after the insert's snapshot makes the
-- insert do nothing and the lookup find nothing: each try is a new statement
-- with a fresh snapshot (READ COMMITTED), so a few settle it.
create function {schema}.insert_job(
    task              text,
    args              jsonb,
    queue             text,
    priority          integer,
    run_at            timestamptz,
    delay             double precision,
    key               text,
    max_attempts      integer,
    timeout           interval,
    backoff           double precision,
    group_key         text,
    depends_on        bigint[],
    on_parent_failure text
) returns bigint
language plpgsql volatile as $$
#variable_conflict use_column
declare
    new_id  bigint;
    parents bigint[] := case when cardinality(insert_job.depends_on) > 0 then insert_job.depends_on end;
    due     timestamptz := coalesce(insert_job.run_at, now() + make_interval(secs => coalesce(insert_job.delay, 0)));
begin
    perform {schema}.admit(insert_job.queue, 1);
    perform {schema}.admit_group(insert_job.queue, insert_job.group_key, 1);
    if parents is not null then
        perform {schema}.lock_parents(parents);
    end if;
    for i in 1..5 loop
        insert into {schema}.jobs as j (task, args, queue, priority, run_at, key, max_attempts, timeout, backoff,
                                        group_key, depends_on, on_parent_failure, status)
        values (insert_job.task, insert_job.args, insert_job.queue, insert_job.priority, due, insert_job.key,
                insert_job.max_attempts, insert_job.timeout, insert_job.backoff, insert_job.group_key, parents,
                insert_job.on_parent_failure, case when parents is null then 'pending' else 'blocked' end)
        on conflict (queue, key) where key is not null do nothing
        returning j.id into new_id;
        if new_id is not null then
            if parents is not null then
                perform {schema}.settle_blocked(array[new_id]);
            end if;
            return new_id;
        end if;
        select j.id into new_id from {schema}.jobs j where j.queue = insert_job.queue and j.key = insert_job.key;
        if new_id is not null then
            return new_id;
        end if;
    end loop;
    raise exception 'pgq: could not settle key % in queue % after 5 tries: the job holding it kept changing',
                    insert_job.key, insert_job.queue
        using errcode = '40001', hint = 'enqueue with keys in READ COMMITTED transactions';
end
$$;

drop function {schema}.enqueue(text, jsonb, text, integer, timestamptz, text, integer, text, bigint[], text);

-- Enqueue from SQL (psql, triggers, other languages). Returns the new job's id,
-- or the id of the live job that already holds the key in that queue. The same
-- rules as pgq's Python enqueue: the table's CHECK constraints, check_args(), and
-- insert_job() for the rest. (group_key, not "group": a reserved word would need
-- quotes at every call.)
create function {schema}.enqueue(
    task              text,
    args              jsonb default '{}'::jsonb,
    queue             text default 'default',
    priority          integer default 0,
    run_at            timestamptz default null,
    key               text default null,
    max_attempts      integer default 3,
    group_key         text default null,
    depends_on        bigint[] default null,
    on_parent_failure text default null,
    delay             double precision default null,
    timeout           interval default null,
    backoff           double precision default null
) returns bigint
language plpgsql volatile as $$
declare
    broken text;
begin
    if task is null or btrim(task) = '' or length(task) > 255 then
        raise exception 'pgq.enqueue: task must be a non-empty name of at most 255 characters, got %', quote_nullable(task)
            using errcode = '22023';
    end if;
    perform {schema}.check_args(args);
    if max_attempts is null then
        raise exception 'pgq.enqueue: max_attempts must be between 1 and 1000, got null' using errcode = '22023';
    end if;
    if run_at is not null and delay is not null then
        raise exception 'pgq.enqueue: give run_at or delay, not both' using errcode = '22023';
    end if;
    if delay < 0 or delay = 'NaN' or delay = 'Infinity' then
        raise exception 'pgq.enqueue: delay must be zero or positive seconds, got %', delay using errcode = '22023';
    end if;
    if on_parent_failure is not null and coalesce(cardinality(depends_on), 0) = 0 then
        raise exception 'pgq.enqueue: on_parent_failure needs depends_on (parent ids)' using errcode = '22023';
    end if;
    begin
        return {schema}.insert_job(task, args, coalesce(queue, 'default'), coalesce(priority, 0), run_at, delay, key,
                                   max_attempts, timeout, backoff, group_key, depends_on, on_parent_failure);
    exception when check_violation then
        get stacked diagnostics broken = constraint_name;
        raise exception '%', 'pgq.enqueue: ' || case
            when broken in ('jobs_queue_name_rule', 'jobs_queue_name') then
                'queue must be 1-128 ASCII letters, digits, ''_'', ''.'', '':'' or ''-'', got ' || quote_nullable(queue)
            when broken in ('jobs_max_attempts_limit', 'jobs_attempts_check') then
                'max_attempts must be between 1 and 1000, got ' || max_attempts
            when broken = 'jobs_key_length' then
                'key must be a non-empty string of at most 255 characters, got ' || length(key) || ' characters'
            when broken = 'jobs_group_key_length' then
                'group_key must be a non-empty string of at most 255 characters, got ' || length(group_key) || ' characters'
            when broken = 'jobs_on_parent_failure_check' then
                'on_parent_failure must be ''cancel'' or ''run'', got ' || quote_nullable(on_parent_failure)
            else 'the job breaks the rule ' || broken || ' of table jobs' end
            using errcode = '22023';
    end;
end
$$;

-- As in 0003, but the jobs dropped to make room keep every column in history.
create or replace function {schema}.admit(queue_name text, n integer) returns boolean
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
             cancel_requested_at, finished_at, result, depends_on, on_parent_failure)
        select id, queue, task, args, priority, 'cancelled', attempts, max_attempts, run_at, created_at,
               started_at, worker_id, key, group_key, progress, progress_message,
               errors || jsonb_build_array(jsonb_build_object(
                   'attempt', attempts, 'at', now(), 'type', 'Dropped',
                   'message', format('dropped to admit a newer job: queue %s is full (max_pending %s)',
                                     queue_name, lim.max_pending))),
               timeout, backoff, now(), now(), null, depends_on, on_parent_failure
          from gone
        returning id
    )
    select count(*) into dropped from archived;
    update {schema}.queues set rejected = rejected + dropped where name = queue_name;
    return true;
end
$$;

-- As in 0005, but the jobs dropped to make room keep every column in history.
create or replace function {schema}.admit_group(queue_name text, group_name text, n integer) returns boolean
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
             cancel_requested_at, finished_at, result, depends_on, on_parent_failure)
        select id, queue, task, args, priority, 'cancelled', attempts, max_attempts, run_at, created_at,
               started_at, worker_id, key, group_key, progress, progress_message,
               errors || jsonb_build_array(jsonb_build_object(
                   'attempt', attempts, 'at', now(), 'type', 'Dropped',
                   'message', format('dropped to admit a newer job: group %s of queue %s is full (group_max_pending %s)',
                                     group_name, queue_name, lim.group_max_pending))),
               timeout, backoff, now(), now(), null, depends_on, on_parent_failure
          from gone
        returning id
    )
    select count(*) into dropped from archived;
    update {schema}.queues set rejected = rejected + dropped where name = queue_name;
    return true;
end
$$;
"""

DOWNGRADE = r"""
drop function {schema}.enqueue(text, jsonb, text, integer, timestamptz, text, integer, text, bigint[], text,
                               double precision, interval, double precision);
drop function {schema}.insert_job(text, jsonb, text, integer, timestamptz, double precision, text, integer,
                                  interval, double precision, text, bigint[], text);
drop function {schema}.check_args(jsonb);
alter table {schema}.jobs
    drop constraint jobs_queue_name_rule,
    drop constraint jobs_max_attempts_limit,
    drop constraint jobs_key_length,
    drop constraint jobs_group_key_length;
"""


def _earlier(revision_file: str, start: str, end: str) -> str:
    return earlier_sql(Path(__file__).with_name(revision_file), start, end)


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
    # The functions as their revisions wrote them, read from those migrations' own text.
    op.execute(render(_earlier("0005_admission.py", "create function {schema}.enqueue(", "\n$$;")))
    op.execute(render(_earlier("0005_admission.py", "create function {schema}.admit_group(", "\n$$;")))
    op.execute(render(_earlier("0003_flow_control.py", "create function {schema}.admit(", "\n$$;")))
