-- Named queries on pgq.jobs and pgq.job_history.
-- {schema} is replaced by the quoted schema name; parameters are %(name)s.
-- Casts are written cast(x as t), not x::t, so the same text also runs
-- through SQLAlchemy's text() on a caller's connection.
-- %(name)b sends a parameter in binary: the batch statements pass arrays, and a
-- text array of JSON documents costs a quoting pass per element on each side.

-- name: job_insert_many
-- Many jobs in one statement. Rows are inserted in input order, so the
-- returned ids, sorted, follow the input; rows whose key is already held
-- return nothing and are looked up with job_ids_by_key.
-- Queues with max_pending are admitted first, as in job_insert_plain, in name
-- order, so that two batches locking the same queues take them in one order;
-- then the groups of queues with group_max_pending, in (queue, group) order.
-- depends_on comes as one array literal per job ('{1,2}'): PostgreSQL arrays
-- cannot be ragged, so an array of arrays would not hold them.
with admitted as (
    select bool_and({schema}.admit(c.name, c.n)) as ok
      from (select q.name, cast(g.n as integer) as n
              from (select queue, count(*) as n from unnest(cast(%(queue)b as text[])) as b(queue)
                     group by queue) g
              join {schema}.queues q on q.name = g.queue and q.max_pending is not null
             order by q.name) c
),
group_admitted as (
    -- After admitted (it reads it), so every batch takes the queue locks first.
    select bool_and({schema}.admit_group(c.queue, c.group_key, c.n)) as ok
      from (select g.queue, g.group_key, cast(g.n as integer) as n
              from (select b.queue, b.group_key, count(*) as n
                      from unnest(cast(%(queue)b as text[]), cast(%(group_key)b as text[])) as b(queue, group_key)
                     where b.group_key is not null
                     group by b.queue, b.group_key) g
              join {schema}.queues q on q.name = g.queue and q.group_max_pending is not null
             order by g.queue, g.group_key) c
     where coalesce((select ok from admitted), true)
)
insert into {schema}.jobs
    (task, args, queue, priority, run_at, key, max_attempts, timeout, backoff, group_key,
     depends_on, on_parent_failure, status, tags, meta)
select t.task, t.args, t.queue, t.priority,
       coalesce(t.run_at, now() + make_interval(secs => coalesce(t.delay, 0))),
       t.key, t.max_attempts, t.timeout, t.backoff, t.group_key,
       cast(t.depends_on as bigint[]), t.on_parent_failure,
       case when t.depends_on is null then 'pending' else 'blocked' end,
       cast(t.tags as text[]), t.meta
  from unnest(
        cast(%(task)b as text[]), cast(%(args)b as jsonb[]), cast(%(queue)b as text[]),
        cast(%(priority)b as integer[]), cast(%(run_at)b as timestamptz[]),
        cast(%(delay)b as float8[]), cast(%(key)b as text[]), cast(%(max_attempts)b as integer[]),
        cast(%(timeout)b as interval[]), cast(%(backoff)b as float8[]), cast(%(group_key)b as text[]),
        cast(%(depends_on)b as text[]), cast(%(on_parent_failure)b as text[]), cast(%(tags)b as text[]),
        cast(%(meta)b as jsonb[])
       ) with ordinality
       as t(task, args, queue, priority, run_at, delay, key, max_attempts, timeout, backoff, group_key,
            depends_on, on_parent_failure, tags, meta, ord)
 where coalesce((select ok from admitted), true) and coalesce((select ok from group_admitted), true)
 order by t.ord
    on conflict (queue, key) where key is not null do nothing
returning id, queue, key;

-- name: job_lock_parents
-- Before inserting jobs with parents: lock the live parents until this
-- transaction ends, refuse unknown ids (SQLSTATE PGQ02). See migration 0004.
select {schema}.lock_parents(cast(%(parents)s as bigint[]));

-- name: job_settle
-- After inserting jobs with parents: release those whose parents all
-- completed already, cancel those with a parent that failed.
select {schema}.settle_blocked(cast(%(ids)s as bigint[]));

-- name: job_parent_results
-- How each of a job's parents ended, and the results of those that completed
-- (ctx.parent_statuses, ctx.parent_results). A parent no longer in history
-- (pruned by retention) has a null status.
select p.id, h.status, h.result
  from unnest(cast(%(ids)s as bigint[])) as p(id)
  left join lateral (select status, result from {schema}.find_in_history(p.id) limit 1) h on true;

-- name: job_key_take
-- unique_for and debounce: take the lock of the key's row in job_keys (made
-- on first use), so that enqueuers of one key go one at a time until their
-- transactions end. Returns the job that took the key last, and whether
-- unique_for still holds it.
insert into {schema}.job_keys as k (queue, key)
values (%(queue)s, %(key)s)
on conflict (queue, key) do update set key = excluded.key
returning k.job_id, coalesce(k.expires_at > now(), false) as held;

-- name: job_key_debounce
-- The live job holding the key, if any (read after job_key_take, so with a
-- snapshot that sees every earlier holder's commit). A pending or blocked
-- holder gets the new args and its run_at pushed; a running one gives its key
-- up, so that a new job can take it (graphile-worker's "replace" mode).
with holder as (
    select j.id, j.queue
      from {schema}.jobs j
     where j.queue = %(queue)s and j.key = %(key)s
       for update
),
pushed as (
    update {schema}.jobs j
       set args = cast(%(args)s as jsonb),
           run_at = now() + make_interval(secs => cast(%(delay)s as float8))
      from holder h
     where j.id = h.id and j.queue = h.queue and j.status in ('pending', 'blocked')
    returning j.id
),
released as (
    update {schema}.jobs j
       set key = null
      from holder h
     where j.id = h.id and j.queue = h.queue and j.status = 'running'
    returning j.id
)
select id, 'pushed' as outcome from pushed
union all
select id, 'released' from released;

-- name: job_key_holder
select id from {schema}.jobs where queue = %(queue)s and key = %(key)s;

-- name: job_key_record
update {schema}.job_keys
   set job_id = %(job_id)s,
       expires_at = case when cast(%(unique_for)s as float8) is null then null
                         else now() + make_interval(secs => cast(%(unique_for)s as float8)) end
 where queue = %(queue)s and key = %(key)s;

-- name: job_ids_by_key
select j.queue, j.key, j.id
  from {schema}.jobs j
  join unnest(cast(%(queue)s as text[]), cast(%(key)s as text[])) as k(queue, key)
    on j.queue = k.queue and j.key = k.key;

-- name: job_get
-- A finished job is read from the partitions that can hold its id
-- (find_in_history, migration 0018), not from every one.
select *
  from {schema}.all_jobs
 where id = %(id)s and finished_at is null
union all
select * from {schema}.find_in_history(%(id)s);

-- name: job_list
-- Newest first; keyset pagination on id (before_id) keeps deep pages cheap.
-- args: jobs whose args contain this JSON object (args @> ...).
select *
  from {schema}.all_jobs
 where {part:job_list_filters}
 order by id desc
 limit %(limit)s;

-- name: job_list_filters
-- A part of job_list and job_list_tagged, not a query: the filters a list takes,
-- each off when its parameter is null.
(cast(%(status)s as text) is null or status = %(status)s)
   and (cast(%(queue)s as text) is null or queue = %(queue)s)
   and (cast(%(task)s as text) is null or task = %(task)s)
   and (cast(%(key)s as text) is null or key = %(key)s)
   and (cast(%(args)s as jsonb) is null or args @> cast(%(args)s as jsonb))
   and (cast(%(before_id)s as bigint) is null or id < %(before_id)s)

-- name: job_list_tagged
-- job_list of the jobs with one tag. The tag's test is a plain condition, not
-- "is null or", so that the partial GIN indexes on tags (migration 0014) find a
-- rare tag's jobs among millions instead of a walk of every id.
select *
  from {schema}.all_jobs
 where tags @> array[cast(%(tag)s as text)]
   and {part:job_list_filters}
 order by id desc
 limit %(limit)s;

-- name: job_claim
-- Claim up to %(limit)s ready jobs of the worker's queues, best first, with
-- next_wait when fewer came back (claim_jobs(), migration 0006, whose plan is
-- fixed and kept). The columns are repo.CLAIM_COLUMNS, in that order, then
-- next_wait: a claimed job's other fields are known (running, this worker, no
-- progress), and an empty errors array comes back as null (no JSON to parse).
select * from {schema}.claim_jobs(%(worker_id)s, cast(%(queues)s as text[]), %(limit)s);

-- name: job_claim_finishing
-- job_claim carrying the worker's plain completions (claim_jobs() of migration
-- 0011): they are written first, in the claim's transaction, through
-- finish_completed(). A row with a null task is an outcome the fence refused (its
-- id alone); the others are job_claim's. The outcome columns come as array text
-- made in Python: psycopg's list dumpers took 19 us for three arrays of ten.
select * from {schema}.claim_jobs(%(worker_id)s, cast(%(queues)s as text[]), %(limit)s,
                                  cast(%(done_id)s as bigint[]), cast(%(done_queue)s as text[]),
                                  cast(%(done_attempt)s as integer[]));

-- name: job_claim_batch
-- Top up a worker's batch: claim up to %(limit)s more ready jobs of one batch
-- task in one queue, best first, fenced as job_claim is (a paused queue, or
-- one with limits, gives nothing; a worker declared dead claims nothing). It
-- walks the claim index of the queue and skips rows of other tasks, so a
-- batch task sharing its queue with a deep backlog of others pays for reading
-- past them: batch tasks are best in a queue of their own (docs/batches.md).
-- The update finds the chosen rows by primary key through an array: in a
-- generic plan the planner takes a parameter LIMIT for 10 % of the table, and
-- a join with the chosen rows became a hash join over a seq scan of pgq.jobs.
with chosen as (
    select j.id
      from {schema}.jobs j
     where j.queue = %(queue)s
       and j.status = 'pending'
       and j.run_at <= now()
       and j.task = %(task)s
       and not exists (select from {schema}.queues p
                        where p.name = %(queue)s
                          and (p.paused or p.concurrency is not null or p.rate_count is not null
                               or p.group_concurrency is not null or p.group_rate_count is not null))
       and exists (select from {schema}.workers w
                    where w.id = %(worker_id)s and w.status in ('running', 'stopping'))
     order by j.priority desc, j.run_at, j.id
     limit %(limit)s
       for update of j skip locked
)
update {schema}.jobs j
   set status = 'running',
       attempts = j.attempts + 1,
       worker_id = %(worker_id)s,
       started_at = now(),
       progress = null,
       progress_message = null
 where j.id = any(array(select id from chosen)) and j.queue = %(queue)s
returning j.*;

-- name: job_claim_limited
-- Claim up to %(limit)s jobs of one queue with limits (migration 0003's
-- claim_limited: serialised per queue by a lock on its queues row).
-- The columns of repo.CLAIM_COLUMNS, as job_claim returns them.
select id, queue, task, args, priority, attempts, max_attempts, run_at, created_at, started_at, key, group_key,
       timeout, backoff, depends_on, on_parent_failure, nullif(errors, cast('[]' as jsonb)) as errors, snoozes,
       tags, meta
  from {schema}.claim_limited(%(worker_id)s, %(queue)s, %(limit)s);

-- name: job_claim_limited_finishing
-- job_claim_limited carrying the worker's plain completions (claim_limited() of
-- migration 0021), as job_claim_finishing does for the queues without limits: they are
-- written first, so that the slots they held are free for the claim. The outcome columns
-- (done_*) come as array text, as job_claim_finishing's do. A row with a null task is an
-- outcome the fence refused (its id alone).
select id, queue, task, args, priority, attempts, max_attempts, run_at, created_at, started_at, key, group_key,
       timeout, backoff, depends_on, on_parent_failure, nullif(errors, cast('[]' as jsonb)) as errors, snoozes,
       tags, meta
  from {schema}.claim_limited(%(worker_id)s, %(queue)s, %(limit)s, cast(%(done_id)s as bigint[]),
                              cast(%(done_queue)s as text[]), cast(%(done_attempt)s as integer[]));

-- name: job_limited_queues
-- Which of these queues have limits (and so are claimed by claim_limited), and
-- whether a limit counts the queue's running jobs as a whole (its concurrency or
-- rate; group limits count each group's).
select name, (concurrency is not null or rate_count is not null) as queue_wide
  from {schema}.queues
 where name = any(cast(%(queues)s as text[]))
   and (concurrency is not null or rate_count is not null
        or group_concurrency is not null or group_rate_count is not null);

-- name: job_mark_limit_slots
-- This worker's running jobs in queues it just learnt have limits hold slots of
-- them (see ops_mark_limit_slots): found among the jobs it holds (%(held)s) by
-- primary key.
update {schema}.jobs
   set limit_slot = true
 where id = any(cast(%(held)s as bigint[])) and worker_id = %(worker_id)s and status = 'running'
   and queue = any(cast(%(queues)s as text[])) and limit_slot is not true;

-- name: job_next_due
-- Seconds until the first of these limited queues' next rate token (the queue's own,
-- or a group's, by the database clock) and next delayed job (null: neither is due),
-- in one round trip: a worker whose limited claims came back empty sleeps until then.
select least(
    (select extract(epoch from min(x.t) - clock_timestamp())
       from (select q.rate_tat as t
               from {schema}.queues q
              where q.name = any(cast(%(queues)s as text[])) and q.rate_count is not null
                and q.rate_tat > clock_timestamp()
             union all
             select g.rate_tat
               from {schema}.queue_groups g
               join {schema}.queues q on q.name = g.queue
              where g.queue = any(cast(%(queues)s as text[])) and q.group_rate_count is not null
                and g.rate_tat > clock_timestamp()) x),
    {schema}.seconds_to_next_run(cast(%(queues)s as text[]))) as wait;

-- name: job_next_run_at
-- Seconds until the next delayed job of these queues is due (migration 0006).
select {schema}.seconds_to_next_run(cast(%(queues)s as text[])) as wait;

-- name: job_finish_many
-- Write many outcomes in one call of finish_jobs() (migration 0006), whose
-- planner settings pin the plan to the primary key whatever the statistics.
-- kind: completed | failed | cancelled (moved to history), retry | return
-- (back to pending; "return" gives back the attempt); a null array of kinds
-- means all completed, a null array of results, errors or delays all null.
-- Returns the ids the fence refused.
select {schema}.finish_jobs(
    cast(%(worker_id)b as uuid), cast(%(id)b as bigint[]), cast(%(queue)b as text[]),
    cast(%(attempt)b as integer[]), cast(%(kind)b as text[]), cast(%(result)b as jsonb[]),
    cast(%(error)b as jsonb[]), cast(%(delay)b as float8[])) as id;

-- name: job_finish_in_transaction
-- A transactional handler's completion, in the handler's own transaction
-- (pgq.worker.transactional): the completer's fence (this worker, this attempt,
-- running) on one job found by its primary key, and its move to history. Not
-- finish_jobs(): that function is planned anew at each call (1.2 ms), which a
-- batch of outcomes shares and a transaction per job cannot. Returns the job's
-- id, none when the fence refused; wakes the workers if its queue has limits.
-- "is not distinct from" on worker_id, as in finish_jobs(): it cannot use
-- jobs_worker_idx, which the planner would pick when its statistics say the
-- worker runs few jobs (and whose dead entries made finishes scan thousands).
with finished as (
    delete from {schema}.jobs j
     where j.id = %(id)s and j.queue = %(queue)s and j.worker_id is not distinct from %(worker_id)s
       and j.attempts = %(attempt)s and j.status = 'running'
    returning ({schema}.history_row(j, 'completed', cast(%(result)s as jsonb), null)).*
),
archived as (
    insert into {schema}.job_history select * from finished
    returning {schema}.job_history.id, {schema}.job_history.queue
)
select a.id, case when {schema}.any_limited(array[a.queue]) then pg_notify(%(channel)s, '') end as woken
  from archived a;

-- name: job_finish_completed
-- A batch of plain completions (no result, error or delay), the common batch,
-- through finish_completed() (migration 0009): the fences and history row of
-- job_finish_many without its other kinds' work. Returns the ids the fence refused.
-- The three arrays come as array text made in Python (as job_claim_finishing's):
-- psycopg's binary list dumpers took 126 us for three arrays of 100, the text 46.
select {schema}.finish_completed(
    cast(%(worker_id)b as uuid), cast(%(id)s as bigint[]), cast(%(queue)s as text[]),
    cast(%(attempt)s as integer[])) as id;

-- name: job_progress_many
update {schema}.jobs j
   set progress = p.progress, progress_message = p.message
  from unnest(cast(%(id)b as bigint[]), cast(%(queue)b as text[]), cast(%(attempt)b as integer[]),
              cast(%(progress)b as float8[]), cast(%(message)b as text[])) as p(id, queue, attempt, progress, message)
 where j.id = p.id and j.queue = p.queue and j.worker_id is not distinct from %(worker_id)b and j.attempts = p.attempt and j.status = 'running';

-- name: job_cancel
-- A pending or blocked job is cancelled at once (moved to history); a running
-- one is flagged, and its worker is told through the cancel channel.
with pending as (
    delete from {schema}.jobs j
     where j.id = %(id)s and j.status in ('pending', 'blocked')
    returning ({schema}.history_row(j, 'cancelled', null, null)).*
),
archived as (
    insert into {schema}.job_history select * from pending
    returning id
),
flagged as (
    update {schema}.jobs
       set cancel_requested_at = coalesce(cancel_requested_at, now())
     where id = %(id)s and status = 'running'
    returning id, pg_notify(%(cancel_channel)s, id::text)
)
select 'cancelled' as outcome from archived
union all
select 'cancelling' from flagged
union all
select 'finished:' || status from {schema}.find_in_history(%(id)s)
 where not exists (select from archived) and not exists (select from flagged);

-- name: job_retry
-- Bring a failed or cancelled job back from history with the same id. A job
-- out of attempts gets one more (as Oban does); its errors stay. A live job
-- holding the same key blocks the retry (no row returned); a key taken by a
-- concurrent enqueue makes the insert fail, which undoes the delete too.
with candidate as (
    select h.id, h.queue
      from {schema}.job_history h
     where h.id = %(id)s and h.status in ('failed', 'cancelled')
       and (h.key is null
            or not exists (select from {schema}.jobs j where j.queue = h.queue and j.key = h.key))
       for update
),
moved as (
    delete from {schema}.job_history h
     using candidate c
     where h.id = c.id and h.queue = c.queue
    returning h.*
)
{part:retried_from_history};

-- name: retried_from_history
-- A part of job_retry and bulk_retry, not a query: the rows of a CTE `moved`
-- (history rows deleted for a retry) written back into jobs with their ids,
-- pending now, one more attempt if they used them all; returns their ids. One
-- column list, so that a column added to both tables is carried back in one place.
insert into {schema}.jobs
    (id, queue, task, args, priority, status, attempts, max_attempts, run_at, created_at,
     key, group_key, errors, timeout, backoff, depends_on, on_parent_failure, snoozes, tags, meta)
select id, queue, task, args, priority, 'pending', attempts,
       greatest(max_attempts, attempts + 1), now(), created_at,
       key, group_key, errors, timeout, backoff, depends_on, on_parent_failure, snoozes, tags, meta
  from moved
returning id

-- name: job_return_orphans
-- Jobs this worker holds as running in the database but not in memory (a
-- claim whose answer was lost with its connection) go back to pending. The
-- attempt stays counted: a re-claim must get a new (worker, attempt) pair, or
-- fencing could not tell a late answer from the new run. Claims younger than
-- the grace are left alone: their answer may still be on its way.
-- A scan of jobs (no index keeps a worker's jobs, migration 0022): the worker
-- runs it only after one of its claims failed (pgq.worker.heartbeat).
update {schema}.jobs
   set status = 'pending', worker_id = null
 where worker_id = %(worker_id)s
   and status = 'running'
   and not (id = any(cast(%(owned)s as bigint[])))
   and started_at < now() - make_interval(secs => %(grace)s)
returning id;

-- name: job_insert_plain
-- One job without a key or parents: nothing to decide against other rows, so a
-- plain insert. A queue with max_pending is admitted first (admit() locks its
-- row, counts, and raises SQLSTATE PGQ01 when full), then the job's group if the
-- queue has group_max_pending (admit_group(), migration 0005); other queues pay
-- one probe of queues (an InitPlan; the OR is evaluated left to right, so the
-- admits run only for a queue with limits, and would only return true otherwise).
-- The values are cast to base types: queue is also compared with queues.name, and
-- a parameter both a domain column (0010) and text takes is ambiguous.
insert into {schema}.jobs
    (task, args, queue, priority, run_at, max_attempts, timeout, backoff, group_key, tags, meta)
select cast(%(task)s as text), cast(%(args)s as jsonb), cast(%(queue)s as text), %(priority)s,
       coalesce(cast(%(run_at)s as timestamptz),
                now() + make_interval(secs => coalesce(cast(%(delay)s as float8), 0))),
       cast(%(max_attempts)s as integer), cast(%(timeout)s as interval), cast(%(backoff)s as float8),
       cast(%(group_key)s as text), cast(%(tags)s as text[]), cast(%(meta)s as jsonb)
 where not exists (select from {schema}.queues q
                    where q.name = %(queue)s and (q.max_pending is not null or q.group_max_pending is not null))
    or ({schema}.admit(%(queue)s, 1) and {schema}.admit_group(%(queue)s, cast(%(group_key)s as text), 1))
returning id;

-- name: job_insert_fn
-- One job with a key or parents, through the function that pgq.enqueue() calls
-- too (migration 0007): admission, locking the parents, the retries that settle
-- a key holder committed after the statement's snapshot.
select {schema}.insert_job(
    %(task)s, cast(%(args)s as jsonb), %(queue)s, %(priority)s, cast(%(run_at)s as timestamptz),
    cast(%(delay)s as float8), cast(%(key)s as text), %(max_attempts)s, cast(%(timeout)s as interval),
    cast(%(backoff)s as float8), cast(%(group_key)s as text), cast(%(depends_on)s as bigint[]),
    cast(%(on_parent_failure)s as text), cast(%(tags)s as text[]), cast(%(meta)s as jsonb)) as id;

-- name: job_copy_prepare
-- Before a COPY of plain jobs: ids for them from the jobs' own sequence (COPY
-- returns nothing), and which of their queues admit enqueues (max_pending,
-- group_max_pending): those jobs go through job_insert_many instead. The
-- sequence comes as a parameter cast once: a pg_get_serial_sequence() subquery
-- here was evaluated for every id (5 ms for 1,000 ids, against 0.6 ms).
select array(select nextval(cast(%(sequence)s as regclass)) from generate_series(1, %(n)s)) as ids,
       array(select q.name
               from {schema}.queues q
              where q.name = any(cast(%(queues)s as text[]))
                and (q.max_pending is not null or q.group_max_pending is not null)) as limited;

-- name: job_copy
-- Columns in the order of pgq.enqueueing.COPY_COLUMNS (the data is encoded there).
copy {schema}.jobs (id, args, task, queue, priority, max_attempts, timeout, backoff, group_key)
from stdin (format binary);

-- name: job_copy_traced
-- job_copy with the trace context of pgq.telemetry in meta, the last field of each row.
copy {schema}.jobs (id, args, task, queue, priority, max_attempts, timeout, backoff, group_key, meta)
from stdin (format binary);

-- name: job_wait_register
-- app.wait: this session waits for the job's end (migration 0015; pid is this backend's).
insert into {schema}.job_waiters (job_id) values (%(id)s);

-- name: job_wait_settle
-- A finish that deleted the job's row but has not committed yet holds it locked,
-- and it may have looked for waiters before this session registered: waiting for
-- the lock here means that the next read sees the job where that finish left it.
-- KEY SHARE does not wait for a claim or a progress update, only for a delete.
select id from {schema}.jobs where id = %(id)s for key share;

-- name: job_wait_unregister
delete from {schema}.job_waiters where pid = pg_backend_pid();

-- name: job_update
-- app.update_job: change a waiting job (pending, delayed or blocked) in place;
-- each column changes only when its set_ flag is true. A running or finished
-- job is left alone and its status returned (no row: no such job), as is a job
-- whose attempts already reach the max_attempts asked for ('attempts:N').
-- A new run time or priority wakes the workers (a job due sooner than they
-- planned for).
with changed as (
    update {schema}.jobs j
       set args = case when %(set_args)s then cast(%(args)s as jsonb) else j.args end,
           priority = case when %(set_priority)s then cast(%(priority)s as integer) else j.priority end,
           run_at = case when %(set_run_at)s
                         then coalesce(cast(%(run_at)s as timestamptz),
                                       now() + make_interval(secs => coalesce(cast(%(delay)s as double precision), 0)))
                         else j.run_at end,
           max_attempts = case when %(set_max_attempts)s then cast(%(max_attempts)s as integer) else j.max_attempts end,
           tags = case when %(set_tags)s then nullif(cast(%(tags)s as text[]), '{}') else j.tags end,
           meta = case when %(set_meta)s then cast(%(meta)s as jsonb) else j.meta end
     where j.id = %(id)s and j.status in ('pending', 'blocked')
       and (not %(set_max_attempts)s or j.attempts <= cast(%(max_attempts)s as integer))
    returning j.id, case when %(set_run_at)s or %(set_priority)s then pg_notify(%(channel)s, '') end
)
select 'updated' as outcome from changed
union all
select case when status in ('pending', 'blocked') then 'attempts:' || attempts else status end
  from {schema}.jobs
 where id = %(id)s and not exists (select from changed)
union all
select status from {schema}.find_in_history(%(id)s)
 where not exists (select from changed);

-- name: job_log_insert
-- The lines one run of a job's handler logged through ctx.log (migration 0016).
insert into {schema}.job_logs (job_id, attempt, at, level, message)
select %(job_id)s, %(attempt)s, t.at, t.level, t.message
  from unnest(cast(%(at)s as timestamptz[]), cast(%(level)s as text[]), cast(%(message)s as text[]))
       with ordinality as t(at, level, message, n)
 order by t.n;

-- name: job_log_list
select attempt, at, level, message
  from {schema}.job_logs
 where job_id = %(id)s
 order by line;
