-- Bulk actions (pgq.bulk): each query acts on one batch of the jobs a filter
-- matches, in a keyset order after the previous batch's last row, and returns
-- how many it acted on (done), how many running jobs it flagged (flagged), how
-- many rows it scanned, and where the next batch starts. Only jobs that existed
-- when the action began are taken (%(last)s: the newest id then; for a retry,
-- %(cutoff)s: the time then), so that a bulk action never chases the jobs
-- enqueued, or failing again, while it runs.
--
-- bulk_job_filter is the filter's predicate on the alias x (pgq.bulk.JobFilter).

-- name: bulk_count
-- How many jobs the action would act on now.
select count(*) as n
  from {schema}.all_jobs x
 where x.status = any(cast(%(statuses)s as text[])) and x.id <= %(last)s and {part:bulk_job_filter};

-- name: bulk_retry
-- Failed or cancelled jobs back to jobs with their ids, as job_retry does for
-- one: oldest finish first, keyset on (finished_at, id), so that the batches
-- together read the history's range once (job_history_finished_idx). No job
-- whose key a live job holds; of several with one key, only the first of the
-- batch (the next batches find the key held).
with scanned as (
    select x.id, x.queue, x.key, x.finished_at
      from {schema}.job_history x
     where x.status = any(cast(%(statuses)s as text[]))
       and {part:bulk_job_filter}
       and x.finished_at <= %(cutoff)s
       -- the keyset: after (after_at, after_id), with a lower bound an index range can use
       and x.finished_at >= coalesce(cast(%(after_at)s as timestamptz), cast('-infinity' as timestamptz))
       and (cast(%(after_at)s as timestamptz) is null or x.finished_at > %(after_at)s or x.id > %(after_id)s)
     order by x.finished_at, x.id
     limit %(batch)s
),
ranked as (
    select s.id, s.queue, s.key,
           row_number() over (partition by s.queue, s.key order by s.finished_at, s.id) as n
      from scanned s
),
candidate as (
    select r.id, r.queue
      from ranked r
     where r.key is null
        or (r.n = 1 and not exists (select from {schema}.jobs j where j.queue = r.queue and j.key = r.key))
),
moved as (
    delete from {schema}.job_history h
     using candidate c
     where h.id = c.id and h.queue = c.queue and h.status = any(cast(%(statuses)s as text[]))
    returning h.*
),
inserted as (
    {part:retried_from_history}
),
last_scanned as (
    select id, finished_at from scanned order by finished_at desc, id desc limit 1
)
select (select count(*) from inserted) as done,
       0 as flagged,
       (select count(*) from scanned) as scanned,
       (select id from last_scanned) as last_id,
       (select finished_at from last_scanned) as last_at;

-- name: bulk_cancel
-- As job_cancel for each: a pending or blocked job ends cancelled at once
-- (moved to history; its dependents settle by the trigger), a running one is
-- flagged and its worker told. The rows are locked first, so a job a worker
-- claims meanwhile is either cancelled before the claim or flagged after it.
with picked as (
    select x.id
      from {schema}.jobs x
     where {part:bulk_next_batch}
       for update
),
moved as (
    delete from {schema}.jobs j
     using picked p
     where j.id = p.id and j.status in ('pending', 'blocked')
    returning ({schema}.history_row(j, 'cancelled', null, null)).*
),
archived as (
    insert into {schema}.job_history select * from moved
    returning id
),
flagged as (
    update {schema}.jobs j
       set cancel_requested_at = coalesce(j.cancel_requested_at, now())
      from picked p
     where j.id = p.id and j.status = 'running'
    returning j.id, pg_notify(%(cancel_channel)s, j.id::text)
)
select (select count(*) from archived) as done,
       (select count(*) from flagged) as flagged,
       {part:bulk_batch_counts};

-- name: bulk_priority
-- A new priority for waiting jobs (pending, delayed or blocked); a running or
-- finished job keeps the one it ran with.
with picked as (
    select x.id
      from {schema}.jobs x
     where {part:bulk_next_batch}
       for no key update
),
changed as (
    update {schema}.jobs j
       set priority = %(priority)s
      from picked p
     where j.id = p.id and j.status in ('pending', 'blocked')
    returning j.id
)
select (select count(*) from changed) as done,
       0 as flagged,
       {part:bulk_batch_counts};

-- name: bulk_delete
-- Finished jobs leave history for good.
with picked as (
    select x.id, x.queue
      from {schema}.job_history x
     where {part:bulk_next_batch}
),
deleted as (
    delete from {schema}.job_history h
     using picked p
     where h.id = p.id and h.queue = p.queue
    returning h.id
)
select (select count(*) from deleted) as done,
       0 as flagged,
       {part:bulk_batch_counts};

-- name: bulk_next_batch
-- A part of bulk_cancel, bulk_priority and bulk_delete, not a query: the predicate
-- and keyset of their batch `picked` (alias x), the next %(batch)s jobs in id
-- order after %(after_id)s, none newer than %(last)s.
x.id > %(after_id)s and x.id <= %(last)s
       and x.status = any(cast(%(statuses)s as text[]))
       and {part:bulk_job_filter}
     order by x.id
     limit %(batch)s

-- name: bulk_batch_counts
-- A part of the same three, not a query: the last columns of their result, from
-- `picked` (an id keyset has no time).
(select count(*) from picked) as scanned,
       (select max(id) from picked) as last_id,
       null::timestamptz as last_at

-- name: bulk_last_id
-- The newest job id now: a bulk action takes no job enqueued after it began.
select greatest((select max(id) from {schema}.jobs), (select max(id) from {schema}.job_history), 0) as last,
       now() as cutoff;

-- name: bulk_job_filter
-- A part of the bulk queries, not a query: the job filter's predicate on the alias x,
-- each condition off when its parameter is null (pgq.bulk.JobFilter.params).
(cast(%(f_status)s as text) is null or x.status = %(f_status)s)
   and (cast(%(f_queue)s as text) is null or x.queue = %(f_queue)s)
   and (cast(%(f_task)s as text) is null or x.task = %(f_task)s)
   and (cast(%(f_key)s as text) is null or x.key = %(f_key)s)
   and (cast(%(f_tag)s as text) is null or x.tags @> array[cast(%(f_tag)s as text)])
   and (cast(%(f_args)s as jsonb) is null or x.args @> cast(%(f_args)s as jsonb))
