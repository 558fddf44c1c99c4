-- Named queries of the sweeper: rescue, retention, metrics. Run by one
-- elected worker at a time; every statement is bounded.

-- name: sweep_mark_dead_workers
-- Workers whose heartbeat is older than the timeout (database clock).
update {schema}.workers
   set status = 'dead', stopped_at = now()
 where status in ('running', 'stopping')
   and last_heartbeat < now() - make_interval(secs => %(heartbeat_timeout)s)
returning id, name, host, pid;

-- name: sweep_gone_workers
-- Workers that stopped or were declared dead and are not released yet: jobs may
-- still be running under their ids (migration 0022). settled: every claim they
-- may have had in flight has ended (%(settle)s seconds since they stopped: the
-- statement timeout and more), so a scan that finds none of their jobs running
-- finds none later either.
select id, coalesce(stopped_at, last_heartbeat) < now() - make_interval(secs => %(settle)s) as settled
  from {schema}.workers
 where status in ('dead', 'stopped') and released_at is null;

-- name: sweep_release_workers
-- Of these settled gone workers, those with no job left running under their ids
-- are released: the rescue no longer scans for them, and their rows may be pruned.
-- One scan of jobs for them all (no index keeps a worker's jobs).
update {schema}.workers w
   set released_at = now()
 where w.id = any(cast(%(ids)s as uuid[])) and w.released_at is null
   and w.id <> all(array(select distinct j.worker_id
                           from {schema}.jobs j
                          where j.status = 'running' and j.worker_id = any(cast(%(ids)s as uuid[]))))
returning w.id;

-- name: sweep_rescue_jobs
-- Running jobs of gone workers (%(gone)s: dead or stopped, not released; see
-- sweep_gone_workers), and jobs overrunning their timeout plus a grace period on a
-- live worker, get another attempt or end failed.
-- The jobs of gone workers are found by a scan of jobs (no index keeps a worker's
-- jobs, migration 0022), skipped whole when there is no gone worker (a one-time
-- filter); the overrunning ones through jobs_timeout_idx, which holds only running
-- jobs that have a timeout.
-- Setting status and clearing worker_id fences out the late worker: its
-- finish matches on (worker_id, attempts, status = 'running') and finds nothing.
-- A job's first two crashes (fewer than two WorkerDied or Crashed entries in its
-- errors so far) give its attempt back: nothing tells the job that killed the
-- process from the others, and jobs rescued together are often claimed together
-- again. From its second crash on it is a suspect, which workers run alone in a
-- child process (pgq.worker.isolation, pgq.job.SUSPECT_AT), where only the
-- poison dies, and is charged.
with orphaned as (
    select j.id, j.queue, 'WorkerDied' as reason
      from {schema}.jobs j
     where cardinality(cast(%(gone)s as uuid[])) > 0
       and j.status = 'running'
       and j.worker_id = any(cast(%(gone)s as uuid[]))
       -- a claim that has not reached its worker's heartbeat yet is not stuck
       and j.started_at < now() - make_interval(secs => %(claim_grace)s)
     limit %(batch)s
       for update of j skip locked
),
overran as (
    select j.id, j.queue, 'Timeout' as reason
      from {schema}.jobs j
     where j.status = 'running'
       and j.timeout is not null
       and j.started_at < now() - j.timeout - make_interval(secs => %(timeout_grace)s)
       and j.started_at < now() - make_interval(secs => %(claim_grace)s)
       and not (j.worker_id = any(cast(%(gone)s as uuid[])))
     order by j.started_at
     limit %(batch)s
       for update of j skip locked
),
stuck as (
    select * from orphaned
    union all
    select * from overran
),
crash_counts as (
    select s.*, s.reason = 'WorkerDied' and c.n < 2 as given_back, c.n as crashed_before
      from stuck s
      join {schema}.jobs j on j.id = s.id and j.queue = s.queue
     cross join lateral (
           select count(*) as n
             from jsonb_array_elements(case when jsonb_typeof(j.errors) = 'array' then j.errors else '[]' end) e
            where e ->> 'type' in ('WorkerDied', 'Crashed')) c
),
entries as (
    select s.id, s.queue, s.reason, s.given_back,
           jsonb_build_object(
               'attempt', j.attempts, 'at', now(), 'type', s.reason,
               'message', case when s.reason = 'WorkerDied'
                               then 'worker died, or stopped without finishing it (heartbeat timeout '
                                    || %(heartbeat_timeout)s || ' s): ' || coalesce(j.worker_id::text, '?')
                                    || case when s.given_back and s.crashed_before = 0
                                            then '; a first crash: attempt given back'
                                            when s.given_back
                                            then '; a second crash: attempt given back, and from now on it runs alone in a child process'
                                            else '' end
                               else 'attempt overran its timeout of ' || j.timeout::text || ' (rescued by the sweeper)' end,
               'worker', j.worker_id)
           || case when s.given_back then jsonb_build_object('charged', false) else '{}'::jsonb end as error,
           (j.attempts >= j.max_attempts and not s.given_back) or j.cancel_requested_at is not null as ends,
           case when j.cancel_requested_at is not null then 'cancelled' else 'failed' end as final_status
      from crash_counts s join {schema}.jobs j on j.id = s.id and j.queue = s.queue
),
failed as (
    delete from {schema}.jobs j
     using entries e
     where j.id = e.id and j.queue = e.queue and e.ends and j.status = 'running'
    returning ({schema}.history_row(j, e.final_status, null, e.error)).*
),
archived as (
    insert into {schema}.job_history select * from failed
    returning id, status as outcome
),
retried as (
    update {schema}.jobs j
       set status = 'pending', worker_id = null, run_at = now(),
           attempts = j.attempts - e.given_back::int,
           errors = j.errors || jsonb_build_array(e.error)
      from entries e
     where j.id = e.id and j.queue = e.queue and not e.ends and j.status = 'running'
    returning j.id, 'retried' as outcome
),
woken as (
    select pg_notify(%(channel)s, '') from retried limit 1
)
select id, outcome from archived
union all
select id, outcome from retried
union all
select null, 'notified' from woken;

-- name: history_maintain
-- Partition upkeep (migration 0018): close, make ahead, drop the expired whole.
select * from {schema}.maintain_history_partitions(%(period)s, %(ahead)s, %(keep)s);

-- name: sweep_prune_history
-- One batch of finished jobs of the statuses retention deletes row by row (those
-- kept shorter than the longest retention, or shorter than a partition); returns
-- how many. The first bound (the shortest of their retentions) is what the
-- finished_at index scan stops at: without it, a sweep that finds fewer than a
-- batch of expired rows walks the whole history (2 s for 10 million rows, every
-- sweep).
with doomed as (
    select id, queue
      from {schema}.job_history
     where finished_at < now() - make_interval(secs => %(shortest)s)
       and status = any(cast(%(statuses)s as text[]))
       and {part:history_expired}
     order by finished_at
     limit %(batch)s
),
deleted as (
    delete from {schema}.job_history h
     using doomed d
     where h.id = d.id and h.queue = d.queue
    returning 1
)
select count(*) as deleted from deleted;

-- name: sweep_prune_history_in
-- The same for every status, in one partition that is never dropped whole while
-- it takes rows (the default partition) or that holds the history from before
-- partitions.
with doomed as (
    select id, queue
      from {schema}.{ident:table}
     where finished_at < now() - make_interval(secs => least(%(completed)s, %(failed)s, %(cancelled)s))
       and {part:history_expired}
     order by finished_at
     limit %(batch)s
),
deleted as (
    delete from {schema}.{ident:table} h
     using doomed d
     where h.id = d.id and h.queue = d.queue
    returning 1
)
select count(*) as deleted from deleted;

-- name: history_expired
finished_at < now() - make_interval(secs => case status
               when 'completed' then %(completed)s
               when 'failed' then %(failed)s
               else %(cancelled)s end)

-- name: sweep_prune_waiters
-- Rows of job_waiters whose session is gone (a process killed in app.wait):
-- while any row is there, every finish sends a NOTIFY (migration 0015).
with deleted as (
    delete from {schema}.job_waiters w
     where not exists (select from pg_stat_activity a where a.pid = w.pid)
    returning 1
)
select count(*) as deleted from deleted;

-- name: sweep_prune_logs
-- Log lines of jobs that are gone (pruned or deleted from history), a batch at a time.
with deleted as (
    delete from {schema}.job_logs
     where line in (
        select l.line
          from {schema}.job_logs l
         where not exists (select from {schema}.jobs j where j.id = l.job_id)
           and not exists (select from {schema}.job_history h where h.id = l.job_id)
         limit %(batch)s)
    returning 1
)
select count(*) as deleted from deleted;

-- name: sweep_prune_workers
-- Rows of workers that stopped or died more than a day ago, unless a job is still
-- running under their ids: the rescue finds those jobs by these rows (migration
-- 0022). Only for rows not released is jobs scanned (a one-time filter skips the
-- scan when there is none: app.prune() runs without the rescue).
with old as (
    select w.id, w.released_at
      from {schema}.workers w
     where w.status in ('stopped', 'dead') and coalesce(w.stopped_at, w.last_heartbeat) < now() - interval '1 day'
),
holding as (
    select distinct j.worker_id as id
      from {schema}.jobs j
     where exists (select from old where old.released_at is null)
       and j.status = 'running'
       and j.worker_id = any(array(select old.id from old where old.released_at is null))
),
deleted as (
    delete from {schema}.workers w
     using old
     where w.id = old.id and not exists (select from holding h where h.id = old.id)
    returning 1
)
select count(*) as deleted from deleted;

-- name: sweep_prune_keys
-- Rows of pgq.job_keys that hold nothing any more: a unique_for period over
-- for a day, or a debounce key whose job is no longer live. Rows an enqueuer
-- holds right now are skipped (it may be about to use them); a deleted row is
-- made again on the key's next use.
with doomed as (
    select k.queue, k.key
      from {schema}.job_keys k
     where case when k.expires_at is not null then k.expires_at < now() - interval '1 day'
                else not exists (select from {schema}.jobs j where j.queue = k.queue and j.key = k.key) end
     limit %(batch)s
       for update skip locked
),
deleted as (
    delete from {schema}.job_keys k
     using doomed d
     where k.queue = d.queue and k.key = d.key
    returning 1
)
select count(*) as deleted from deleted;

-- name: sweep_prune_queue_groups
-- Rows of queue_groups whose state no longer matters: the group's rate token is
-- due (a past rate_tat limits nothing), it was not served for %(idle)s seconds,
-- and it has no pending or running job (by jobs_group_idx and jobs_running_idx).
-- Nothing of the round-robin is lost (its cursor is on the queue's row, not
-- here), only when the group was last served. The row of jobs without a group ('') has
-- no rate state and is kept only while recently served. Rows a claim holds are
-- skipped, never waited for.
with doomed as (
    select g.queue, g.group_key
      from {schema}.queue_groups g
     where (g.rate_tat is null or g.rate_tat < now())
       and (g.last_served_at is null or g.last_served_at < now() - make_interval(secs => %(idle)s))
       and (g.group_key = ''
            or (not exists (select from {schema}.jobs j
                             where j.queue = g.queue and j.group_key = g.group_key and j.status = 'pending')
                and not exists (select from {schema}.jobs j
                                 where j.queue = g.queue and j.group_key = g.group_key
                                   and j.status = 'running' and j.limit_slot)))
     limit %(batch)s
       for update skip locked
),
deleted as (
    delete from {schema}.queue_groups g
     using doomed d
     where g.queue = d.queue and g.group_key = d.group_key
    returning 1
)
select count(*) as deleted from deleted;

-- name: sweep_prune_metrics
with deleted as (
    delete from {schema}.metrics where at < now() - make_interval(secs => %(keep)s)
    returning 1
)
select count(*) as deleted from deleted;

-- name: sweep_write_metrics
-- One row per queue, counting what finished (or was refused at enqueue) in one
-- window shared by every queue: from the previous row of any queue (the first
-- row ever: the last 24 hours) to the row's `at`. Consecutive windows meet
-- exactly, so every finished job is counted once, however far apart sweeps are
-- and whichever queues had rows before.
-- A job's finished_at is the start of the transaction that finished it, which
-- commits a moment later. So a window ends before every transaction still open
-- in the database (as far as pgq's role sees them) and at least %(lag)s seconds
-- before now: a finish that commits after this statement read the history
-- falls in the next window, never before this one's end.
-- %(now)s (null: the database clock) lets tests place sweeps in time.
-- The history is read within the one-row bounds, not joined to windows (one row
-- per queue, all with the same bounds): joined to windows the planner hashed the
-- whole history, 2.6 s a sweep with a million rows in 126 partitions.
-- It is read twice, not three times: `done` takes every count, mean and retry of
-- the window in one pass (a hash aggregate), and `tails` the p95s. `jobs` is read
-- once (`live`), not three times. A p95 is exact
-- up to 10,000 finishes of a queue in a window; beyond that it is taken over a
-- sample of about 10,000 of them. Sorting every finish cost 85 ms per p95
-- for the 250,000 of a 10-second window at 25,000 jobs/s, and the statement took
-- 270 ms of a server core each sweep (drains right after a burst lost 20 %).
-- date_part, not extract: extract returns numeric, 30 % slower to average and sort.
with clock as (
    select least(coalesce(cast(%(now)s as timestamptz), now()) - make_interval(secs => %(lag)s),
                 coalesce((select min(a.xact_start)
                             from pg_stat_activity a
                            where a.datname = current_database() and a.backend_type = 'client backend'
                              and a.xact_start is not null and a.pid <> pg_backend_pid()),
                          'infinity')) as at
),
bounds as (
    select c.at,
           coalesce((select max(m.at) from {schema}.metrics m), c.at - interval '24 hours') as since
      from clock c
),
last_rows as (
    select queue, max(at) as at from {schema}.metrics group by queue
),
done as (
    -- Rows finished after the window are read too (a moment's worth: the window ends
    -- at most the lag before now, or at the oldest open transaction): their failed
    -- attempts inside the window are this window's retries. Every other figure counts
    -- only the window's own rows. Of a failed or cancelled job, the final error entry
    -- is its failure, not a retry.
    select h.queue,
           count(*) filter (where h.finished_at <= b.at) as finished,
           count(*) filter (where h.finished_at <= b.at and h.status = 'completed') as completed,
           count(*) filter (where h.finished_at <= b.at and h.status = 'failed') as failed,
           count(*) filter (where h.finished_at <= b.at and h.status = 'cancelled') as cancelled,
           avg(date_part('epoch', h.finished_at - h.started_at) * 1000)
               filter (where h.finished_at <= b.at and h.started_at is not null) as run_ms_mean,
           avg(greatest(date_part('epoch', h.started_at - greatest(h.run_at, h.created_at)) * 1000, 0))
               filter (where h.finished_at <= b.at and h.started_at is not null) as wait_ms_mean,
           coalesce(sum((select count(*)
                           from jsonb_array_elements(h.errors) with ordinality as e(entry, n)
                          where jsonb_typeof(e.entry) = 'object'
                            and (e.entry->>'at')::timestamptz > b.since and (e.entry->>'at')::timestamptz <= b.at
                            and not (h.status in ('failed', 'cancelled') and e.n = jsonb_array_length(h.errors))))
                    filter (where h.errors <> '[]'::jsonb and jsonb_typeof(h.errors) = 'array'), 0) as retried
      from {schema}.job_history h, bounds b
     where h.finished_at > b.since and b.at > b.since
     group by h.queue
),
live as (
    -- Every failed attempt of a live job inside the window led to a retry.
    select j.queue,
           count(*) filter (where j.status = 'pending' and j.run_at <= now()) as pending,
           count(*) filter (where j.status = 'pending' and j.run_at > now()) as scheduled,
           count(*) filter (where j.status = 'running') as running,
           count(*) filter (where j.status = 'blocked') as blocked,
           coalesce(sum((select count(*)
                           from jsonb_array_elements(j.errors) as e(entry)
                          where jsonb_typeof(e.entry) = 'object'
                            and (e.entry->>'at')::timestamptz > b.since and (e.entry->>'at')::timestamptz <= b.at))
                    filter (where j.errors <> '[]'::jsonb and jsonb_typeof(j.errors) = 'array'), 0) as retried
      from {schema}.jobs j, bounds b
     group by j.queue
),
names as (
    -- `live` has every queue of `jobs`: one scan of the live table, not two
    select queue from live
    union select name from {schema}.queues
    union select queue from done where finished > 0
),
windows as (
    -- every queue shares the window; none is written when the clock has not moved past the last one
    select n.queue, b.since, b.at from names n cross join bounds b where b.at > b.since
),
tails as (
    select h.queue,
           percentile_cont(0.95) within group (order by date_part('epoch', h.finished_at - h.started_at) * 1000)
               as run_ms_p95,
           percentile_cont(0.95) within group (order by greatest(date_part('epoch', h.started_at - greatest(h.run_at, h.created_at)) * 1000, 0))
               as wait_ms_p95
      from {schema}.job_history h
     cross join bounds b
      join done d on d.queue = h.queue
     where h.finished_at > b.since and h.finished_at <= b.at and b.at > b.since
       and h.started_at is not null
       -- The sample: ids whose hash falls in 1 of ceil(finished / 10,000) buckets (a hash,
       -- not `id % k`, so that jobs enqueued in a repeating pattern are not sampled in step).
       and hashint8(h.id) %% ((d.finished + 9999) / 10000) = 0
     group by h.queue
),
staff as (
    select q as queue, count(*) as workers
      from {schema}.workers, unnest(queues) q
     where status in ('running', 'stopping')
     group by q
),
rejections as (
    -- Refusals and drops since the queue's previous row: the growth of queues.rejected
    -- since the total that row saw (a smaller total: the queue's row was made anew). With
    -- no total to start from (no row yet, or rows from before revision 0005), only a queue
    -- row made within the window is known to have gathered its whole count in it.
    select w.queue, p.rejected as total,
           case when p.name is null then 0
                when m.rejected_total is not null
                    then case when p.rejected >= m.rejected_total then p.rejected - m.rejected_total
                              else p.rejected end
                when p.created_at > w.since then p.rejected
                else 0 end as rejected
      from windows w
      join {schema}.queues p on p.name = w.queue
      left join last_rows l on l.queue = w.queue
      left join {schema}.metrics m on m.queue = l.queue and m.at = l.at
)
insert into {schema}.metrics
    (queue, at, interval_seconds, pending, scheduled, running, blocked, workers, completed, failed, retried,
     cancelled, run_ms_mean, run_ms_p95, wait_ms_mean, wait_ms_p95, rejected, rejected_total)
select w.queue, w.at, date_part('epoch', w.at - w.since),
       coalesce(l.pending, 0), coalesce(l.scheduled, 0), coalesce(l.running, 0), coalesce(l.blocked, 0),
       coalesce(s.workers, 0), coalesce(d.completed, 0), coalesce(d.failed, 0),
       coalesce(l.retried, 0) + coalesce(d.retried, 0),
       coalesce(d.cancelled, 0), d.run_ms_mean, t.run_ms_p95, d.wait_ms_mean, t.wait_ms_p95,
       coalesce(rj.rejected, 0), rj.total
  from windows w
  left join live l on l.queue = w.queue
  left join done d on d.queue = w.queue
  left join tails t on t.queue = w.queue
  left join staff s on s.queue = w.queue
  left join rejections rj on rj.queue = w.queue
returning queue;

-- name: sweep_dead_rows
-- Dead rows in the live table, as the statistics system counts them.
select n_dead_tup as dead
  from pg_stat_user_tables
 where relid = cast('{schema}.jobs' as regclass);

-- name: sweep_vacuum_throttled
-- Before the sweeper's vacuum of jobs, on its session: autovacuum's throttle (a
-- 2 ms sleep per 200 units of work), so that the vacuum spreads its work instead
-- of taking a core in one burst: under a load of 16,000 jobs/s the p99 from
-- commit to start was 13.6 ms (median of 7 runs) unthrottled and 7.2 ms (of 13)
-- throttled. Throttled, a large table takes longer than a statement may (1 GB of
-- dead rows: about 35 s), so the vacuum runs with no statement timeout;
-- sweep_vacuum_done sets it back.
select set_config('vacuum_cost_delay', '2ms', false), set_config('statement_timeout', '0', false);

-- name: sweep_vacuum_jobs
vacuum {schema}.jobs;

-- name: sweep_vacuum_done
-- Back to the session's own statement timeout (the one its connection set).
reset statement_timeout;

-- name: sweep_try_lock
-- The election: a session advisory lock on the sweeper's own connection, held
-- for as long as that session lives (the key is one per schema).
select pg_try_advisory_lock(%(key)s) as held;
