"""Tags and metadata: jobs.tags (text[]) and jobs.meta (a JSON object), kept in
job_history, returned by the claim, taken by every enqueue path, and found by tag
through an index.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

- ``tags``: at most 20 tags of 1 to 100 characters each, without whitespace,
  commas or nulls (the domain ``job_tags``, checked by ``tags_ok()``): labels to
  find jobs by (``tenant:42``, ``import``), in ``GET /api/jobs?tag=``,
  ``pgq jobs list --tag`` and the dashboard. Null when a job has none.
- ``meta``: a JSON object (the domain ``job_meta``) for the caller's own
  bookkeeping; pgq never reads it. Null when a job has none.
- Both are appended last to ``jobs``, ``job_history`` and ``all_jobs``, and
  added to ``history_row()`` alone of the moves to history (0012).
- ``jobs_tags_idx`` and ``job_history_tags_idx``: GIN indexes on tags, partial
  (``where tags is not null``), so a job without tags writes no entry into
  them (its enqueue, claim and finish cost what they did).
- ``all_jobs`` casts the domain columns of jobs (0010) to the types of
  job_history's: branches of different types kept the planner from merging the
  two primary keys, and the dashboard's newest-first list of a million jobs took
  734 ms instead of 0.2 (PostgreSQL 15; since 0010).
- ``insert_job()`` and ``enqueue()`` take ``tags`` and ``meta`` (the last two
  parameters, with defaults in ``enqueue()``); a function's parameters cannot
  change in place, so both are dropped and made again, as are both
  ``claim_jobs()`` overloads, which return the two columns after ``snoozes``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, render

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent

UPGRADE = r"""
-- A job's tags, as the domain job_tags checks them. Strict: null tags are not checked.
create function {schema}.tags_ok(tags text[]) returns boolean
language sql immutable strict as $$
    select cardinality(tags) <= 20
       and not exists (select from unnest(tags) as t(tag)
                        where t.tag is null or length(t.tag) not between 1 and 100
                           or t.tag ~ '[[:space:][:cntrl:],]')
$$;

create domain {schema}.job_tags as text[]
    constraint job_tags_rule check ({schema}.tags_ok(value));
create domain {schema}.job_meta as jsonb
    constraint job_meta_object check (jsonb_typeof(value) = 'object');

alter table {schema}.jobs add column tags {schema}.job_tags, add column meta {schema}.job_meta;
alter table {schema}.job_history add column tags text[], add column meta jsonb;

create index jobs_tags_idx on {schema}.jobs using gin (tags) where tags is not null;
create index job_history_tags_idx on {schema}.job_history using gin (tags) where tags is not null;

-- The columns of jobs that are domains (0010, and tags and meta) are cast to their
-- base types, those of job_history: a UNION ALL whose branches differ in type is
-- planned as two subqueries whose rows are appended, then sorted, so "the newest 50
-- jobs" read and sorted every row of both tables (734 ms at a million). Of one type,
-- it is flattened, and the newest ids are read backwards from both primary keys
-- and merged (0.2 ms).
drop view {schema}.all_jobs;
create view {schema}.all_jobs as
    select id, cast(queue as text) as queue, cast(task as text) as task, cast(args as jsonb) as args, priority,
           cast(status as text) as status, cast(attempts as integer) as attempts,
           cast(max_attempts as integer) as max_attempts, run_at, created_at, started_at, worker_id,
           cast(key as text) as key, cast(group_key as text) as group_key,
           cast(progress as double precision) as progress, progress_message, cast(errors as jsonb) as errors,
           timeout, backoff, cancel_requested_at, null::timestamptz as finished_at, null::jsonb as result,
           depends_on, cast(on_parent_failure as text) as on_parent_failure, snoozes,
           cast(tags as text[]) as tags, cast(meta as jsonb) as meta
      from {schema}.jobs
    union all
    select id, queue, task, args, priority, status, attempts, max_attempts, run_at,
           created_at, started_at, worker_id, key, group_key, progress, progress_message,
           errors, timeout, backoff, cancel_requested_at, finished_at, result, depends_on, on_parent_failure,
           snoozes, tags, meta
      from {schema}.job_history;

-- As in 0013, with tags and meta.
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
               now(), result, j.depends_on, j.on_parent_failure, j.snoozes, j.tags, j.meta)::{schema}.job_history
$$;

drop function {schema}.enqueue(text, jsonb, text, integer, timestamptz, text, integer, text, bigint[], text,
                               double precision, interval, double precision);
drop function {schema}.insert_job(text, jsonb, text, integer, timestamptz, double precision, text, integer,
                                  interval, double precision, text, bigint[], text);

-- As in 0007, with tags and meta (an empty tags array is stored as null).
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
    on_parent_failure text,
    tags              text[],
    meta              jsonb
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
                                        group_key, depends_on, on_parent_failure, status, tags, meta)
        values (insert_job.task, insert_job.args, insert_job.queue, insert_job.priority, due, insert_job.key,
                insert_job.max_attempts, insert_job.timeout, insert_job.backoff, insert_job.group_key, parents,
                insert_job.on_parent_failure, case when parents is null then 'pending' else 'blocked' end,
                nullif(insert_job.tags, '{}'), insert_job.meta)
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

-- As in 0007, with tags and meta.
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
    backoff           double precision default null,
    tags              text[] default null,
    meta              jsonb default null
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
    if meta is not null and jsonb_typeof(meta) <> 'object' then
        raise exception 'pgq.enqueue: meta must be a JSON object, got %', jsonb_typeof(meta)
            using errcode = '22023', hint = 'pass meta like ''{"source": "import"}''::jsonb';
    end if;
    if octet_length(meta::text) > coalesce(nullif(current_setting('pgq.max_payload_bytes', true), '')::bigint, 1048576) then
        raise exception 'pgq.enqueue: meta is % bytes, over the limit of args', octet_length(meta::text)
            using errcode = '54000', hint = 'keep meta small: what you search and group by, not the payload';
    end if;
    if on_parent_failure is not null and coalesce(cardinality(depends_on), 0) = 0 then
        raise exception 'pgq.enqueue: on_parent_failure needs depends_on (parent ids)' using errcode = '22023';
    end if;
    begin
        return {schema}.insert_job(task, args, coalesce(queue, 'default'), coalesce(priority, 0), run_at, delay, key,
                                   max_attempts, timeout, backoff, group_key, depends_on, on_parent_failure,
                                   tags, meta);
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
            when broken = 'job_tags_rule' then
                'tags must be at most 20 tags of 1 to 100 characters each, without spaces, commas or nulls, got '
                || quote_nullable(tags::text)
            when broken = 'jobs_on_parent_failure_check' then
                'on_parent_failure must be ''cancel'' or ''run'', got ' || quote_nullable(on_parent_failure)
            else 'the job breaks the rule ' || broken || ' of table jobs' end
            using errcode = '22023';
    end;
end
$$;

drop function {schema}.claim_jobs(uuid, text[], integer, bigint[], text[], integer[]);
drop function {schema}.claim_jobs(uuid, text[], integer);

-- As in 0013, with tags and meta after snoozes.
create function {schema}.claim_jobs(worker uuid, queue_names text[], max_jobs integer)
returns table (
    id bigint, queue text, task text, args jsonb, priority integer, attempts integer, max_attempts integer,
    run_at timestamptz, created_at timestamptz, started_at timestamptz, key text, group_key text,
    timeout interval, backoff double precision, depends_on bigint[], on_parent_failure text, errors jsonb,
    snoozes integer, tags text[], meta jsonb, next_wait double precision
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
                  nullif(cast(j.errors as jsonb), cast('[]' as jsonb)) as errors, j.snoozes,
                  cast(j.tags as text[]), cast(j.meta as jsonb)
    )
    select c.*,
           case when (select count(*) from claimed) < max_jobs
                then (select {schema}.seconds_to_next_run(queue_names)) end
      from claimed c;
end
$$;

-- As in 0013, with tags and meta after snoozes.
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
    snoozes integer, tags text[], meta jsonb, next_wait double precision
)
language plpgsql volatile
as $$
begin
    if cardinality(done_ids) > 0 then
        -- A refused outcome is a row with its id alone.
        return query
        select r.id, null::text, null::text, null::jsonb, null::integer, null::integer, null::integer,
               null::timestamptz, null::timestamptz, null::timestamptz, null::text, null::text, null::interval,
               null::double precision, null::bigint[], null::text, null::jsonb, null::integer, null::text[], null::jsonb,
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
drop function {schema}.enqueue(text, jsonb, text, integer, timestamptz, text, integer, text, bigint[], text,
                               double precision, interval, double precision, text[], jsonb);
drop function {schema}.insert_job(text, jsonb, text, integer, timestamptz, double precision, text, integer,
                                  interval, double precision, text, bigint[], text, text[], jsonb);
drop view {schema}.all_jobs;
alter table {schema}.jobs drop column tags, drop column meta;
alter table {schema}.job_history drop column tags, drop column meta;
drop domain {schema}.job_tags;
drop domain {schema}.job_meta;
drop function {schema}.tags_ok(text[]);
"""

#: What the downgrade makes again, as the revision that last wrote it: (script, start).
EARLIER = [
    ("0013_snooze.py", "create or replace view {schema}.all_jobs as"),
    ("0013_snooze.py", "create or replace function {schema}.history_row("),
    ("0007_enqueue_rules.py", "create function {schema}.insert_job("),
    ("0007_enqueue_rules.py", "create function {schema}.enqueue("),
    ("0013_snooze.py", "create function {schema}.claim_jobs(worker uuid, queue_names text[], max_jobs integer)"),
    ("0013_snooze.py", "create function {schema}.claim_jobs(\n    worker        uuid,"),
]


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    parts = [DOWNGRADE]
    for script, start in EARLIER:
        end = "from {schema}.job_history;" if "view" in start else "\n$$;"
        parts.append(earlier_sql(HERE / script, start, end))
    op.execute(render("\n".join(parts)))
