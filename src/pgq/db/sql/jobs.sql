-- Named queries on pgq.jobs and pgq.job_history.
-- {schema} is replaced by the quoted schema name; parameters are %(name)s.
-- Casts are written cast(x as t), not x::t, so the same text also runs
-- through SQLAlchemy's text() on a caller's connection.

-- name: job_insert_one
-- One job. A live job holding the same key in the queue wins: the insert does
-- nothing and the second branch returns the holder's id. A holder committed
-- after this statement's snapshot returns no row at all; the caller retries.
with inserted as (
    insert into {schema}.jobs
        (task, args, queue, priority, run_at, key, max_attempts, timeout, backoff)
    values (
        %(task)s, cast(%(args)s as jsonb), %(queue)s, %(priority)s,
        coalesce(cast(%(run_at)s as timestamptz),
                 now() + make_interval(secs => coalesce(cast(%(delay)s as float8), 0))),
        %(key)s, %(max_attempts)s, cast(%(timeout)s as interval), cast(%(backoff)s as float8)
    )
    on conflict (queue, key) where key is not null do nothing
    returning id
)
select id, true as created from inserted
union all
select id, false as created
  from {schema}.jobs
 where cast(%(key)s as text) is not null
   and queue = %(queue)s and key = %(key)s
   and not exists (select from inserted);

-- name: job_insert_many
-- Many jobs in one statement. Rows are inserted in input order, so the
-- returned ids, sorted, follow the input; rows whose key is already held
-- return nothing and are looked up with job_ids_by_key.
insert into {schema}.jobs
    (task, args, queue, priority, run_at, key, max_attempts, timeout, backoff)
select t.task, t.args, t.queue, t.priority,
       coalesce(t.run_at, now() + make_interval(secs => coalesce(t.delay, 0))),
       t.key, t.max_attempts, t.timeout, t.backoff
  from unnest(
        cast(%(task)s as text[]), cast(%(args)s as jsonb[]), cast(%(queue)s as text[]),
        cast(%(priority)s as integer[]), cast(%(run_at)s as timestamptz[]),
        cast(%(delay)s as float8[]), cast(%(key)s as text[]), cast(%(max_attempts)s as integer[]),
        cast(%(timeout)s as interval[]), cast(%(backoff)s as float8[])
       ) with ordinality
       as t(task, args, queue, priority, run_at, delay, key, max_attempts, timeout, backoff, ord)
 order by t.ord
    on conflict (queue, key) where key is not null do nothing
returning id, queue, key;

-- name: job_ids_by_key
select j.queue, j.key, j.id
  from {schema}.jobs j
  join unnest(cast(%(queue)s as text[]), cast(%(key)s as text[])) as k(queue, key)
    on j.queue = k.queue and j.key = k.key;

-- name: job_get
select *
  from {schema}.all_jobs
 where id = %(id)s;

-- name: job_list
-- Newest first; keyset pagination on id (before_id) keeps deep pages cheap.
select *
  from {schema}.all_jobs
 where (cast(%(status)s as text) is null or status = %(status)s)
   and (cast(%(queue)s as text) is null or queue = %(queue)s)
   and (cast(%(task)s as text) is null or task = %(task)s)
   and (cast(%(key)s as text) is null or key = %(key)s)
   and (cast(%(before_id)s as bigint) is null or id < %(before_id)s)
 order by id desc
 limit %(limit)s;
