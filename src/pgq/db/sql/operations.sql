-- Named queries of the operator's actions and reads (pgq.operations.OperationControls):
-- promote, delete, pause and resume queues, list queues and
-- workers, stats. {schema} is the quoted schema; parameters are %(name)s;
-- casts are written cast(x as t).

-- name: ops_promote
-- A delayed job (pending, run_at in the future) is due now, and the workers
-- are woken on the channel the enqueue trigger uses. Otherwise the job's
-- status says why nothing happened (no row: no such job).
with promoted as (
    update {schema}.jobs
       set run_at = now()
     where id = %(id)s and status = 'pending' and run_at > now()
    returning id, pg_notify(%(channel)s, '')
)
select 'promoted' as outcome from promoted
union all
select status from {schema}.jobs
 where id = %(id)s and not exists (select from promoted)
union all
select status from {schema}.find_in_history(%(id)s)
 where not exists (select from promoted);

-- name: ops_delete
-- A finished job leaves history for good; a live one is left alone and its
-- status returned (no row: no such job).
with deleted as (
    delete from {schema}.job_history
     where id = %(id)s
    returning id
)
select 'deleted' as outcome from deleted
union all
select status from {schema}.jobs
 where id = %(id)s and not exists (select from deleted);

-- name: ops_pause_queue
-- A queue may be paused before it has any job: the row is its switch.
insert into {schema}.queues as q (name, paused)
values (%(name)s, true)
on conflict (name) do update
   set paused = true, updated_at = now()
 where not q.paused;

-- name: ops_resume_queue
-- Resuming wakes the workers at once (they also poll). A queue without a
-- row was never paused: nothing to do.
with resumed as (
    update {schema}.queues
       set paused = false, updated_at = now()
     where name = %(name)s and paused
    returning name
)
select name, pg_notify(%(channel)s, '') from resumed;

-- name: ops_set_queue
-- Set some of a queue's limits (the set_* flags say which); a queue may be set
-- before it has any job. A changed rate takes effect at once: the next start is
-- due no later than one new interval from now. Workers are told on the queues
-- channel, so a change applies without a restart.
with upserted as (
    insert into {schema}.queues as q
        (name, concurrency, rate_count, rate_period, group_concurrency, group_rate_count,
         group_rate_period, max_pending, on_full, group_max_pending)
    values (%(name)s, %(concurrency)s, %(rate_count)s, make_interval(secs => cast(%(rate_seconds)s as float8)),
            %(group_concurrency)s, %(group_rate_count)s, make_interval(secs => cast(%(group_rate_seconds)s as float8)),
            %(max_pending)s, coalesce(cast(%(on_full)s as text), 'reject'), %(group_max_pending)s)
    on conflict (name) do update
       set concurrency = case when %(set_concurrency)s then excluded.concurrency else q.concurrency end,
           rate_count = case when %(set_rate)s then excluded.rate_count else q.rate_count end,
           rate_period = case when %(set_rate)s then excluded.rate_period else q.rate_period end,
           rate_tat = case when %(set_rate)s and excluded.rate_count is not null
                           then least(q.rate_tat, clock_timestamp() + excluded.rate_period / excluded.rate_count)
                           else q.rate_tat end,
           group_concurrency = case when %(set_group_concurrency)s then excluded.group_concurrency
                                    else q.group_concurrency end,
           group_rate_count = case when %(set_group_rate)s then excluded.group_rate_count
                                   else q.group_rate_count end,
           group_rate_period = case when %(set_group_rate)s then excluded.group_rate_period
                                    else q.group_rate_period end,
           max_pending = case when %(set_max_pending)s then excluded.max_pending else q.max_pending end,
           on_full = case when %(set_on_full)s then excluded.on_full else q.on_full end,
           group_max_pending = case when %(set_group_max_pending)s then excluded.group_max_pending
                                    else q.group_max_pending end,
           updated_at = now()
    returning name
)
select name, pg_notify(%(channel)s, '') from upserted;

-- name: ops_mark_limit_slots
-- Jobs already running in a queue that now has a concurrency limit hold slots
-- of it: mark them, so that claim_limited counts them (jobs_running_idx only
-- holds marked jobs). Workers mark their own when they hear of the limit too,
-- which covers a claim that was in flight while this ran.
update {schema}.jobs j
   set limit_slot = true
  from {schema}.queues q
 where q.name = %(name)s and (q.concurrency is not null or q.group_concurrency is not null)
   and j.queue = q.name and j.status = 'running' and j.limit_slot is not true;

-- name: ops_group_rates_reset
-- A changed group rate applies at once to every group of the queue.
update {schema}.queue_groups g
   set rate_tat = least(g.rate_tat, clock_timestamp() + q.group_rate_period / q.group_rate_count)
  from {schema}.queues q
 where q.name = %(name)s and g.queue = q.name and q.group_rate_count is not null and g.rate_tat is not null;

-- name: ops_count_rejected
-- Enqueues refused by max_pending or group_max_pending (counted after the
-- refusal, on pgq's own connection).
update {schema}.queues set rejected = rejected + %(n)s where name = %(name)s;

-- name: ops_explain
select {schema}.explain(%(id)s) as text;

-- name: queue_names_and_live_counts
-- A part of ops_list_queues and ops_stats (written {part:queue_names_and_live_counts}
-- after "with recursive"), not a query: the CTEs names (every queue that has a
-- row in queues, a live job, retained history or a live worker serving it),
-- live (its live counts, exact: jobs holds only the backlog) and staff (its
-- live workers). History's queues are read by a skip scan of its
-- (queue, status, finished_at) index: one probe per queue, not per row.
history_queues as (
    (select queue from {schema}.job_history order by queue limit 1)
    union all
    select (select h.queue from {schema}.job_history h where h.queue > hq.queue order by h.queue limit 1)
      from history_queues hq
     where hq.queue is not null
),
live as (
    select queue,
           count(*) filter (where status = 'pending' and run_at <= now()) as waiting,
           count(*) filter (where status = 'pending' and run_at > now()) as delayed,
           count(*) filter (where status = 'running') as active,
           count(*) filter (where status = 'blocked') as blocked,
           extract(epoch from now() - min(run_at) filter (where status = 'pending' and run_at <= now()))
               as oldest_waiting_seconds
      from {schema}.jobs
     group by queue
),
staff as (
    -- slots: of the live workers serving the queue; busy: the slots its jobs held on
    -- average over the last minute (each worker's own measure, its busy_slots).
    select q.name as queue, count(*) as workers, sum(w.concurrency) as slots,
           sum(coalesce(cast(w.busy_slots ->> q.name as float8), 0)) as busy
      from {schema}.workers w cross join lateral unnest(w.queues) as q(name)
     where w.status in ('running', 'stopping')
     group by q.name
),
names as (
    select name as queue from {schema}.queues
    union select queue from live
    union select queue from history_queues where queue is not null
    union select queue from staff
)

-- name: ops_list_queues
-- Every queue (see queue_names_and_live_counts), with its settings and live counts.
with recursive {part:queue_names_and_live_counts}
select n.queue as name,
       coalesce(p.paused, false) as paused,
       p.updated_at,
       p.concurrency, p.rate_count, p.rate_period, p.group_concurrency, p.group_rate_count,
       p.group_rate_period, p.max_pending, coalesce(p.on_full, 'reject') as on_full,
       coalesce(p.rejected, 0) as rejected, p.group_max_pending,
       coalesce(l.waiting, 0) as waiting,
       coalesce(l.delayed, 0) as delayed,
       coalesce(l.active, 0) as active,
       coalesce(l.blocked, 0) as blocked,
       coalesce(s.workers, 0) as workers,
       l.oldest_waiting_seconds,
       coalesce(p.slo, '{}') as slo
  from names n
  left join {schema}.queues p on p.name = n.queue
  left join live l on l.queue = n.queue
  left join staff s on s.queue = n.queue
 order by n.queue;

-- name: ops_stats
-- Per queue: live counts now (as ops_list_queues), finished counts over the
-- last %(window)s seconds, rates over the last %(rate_window)s seconds, and
-- run and wait times of the latest %(sample)s completed jobs of the last
-- %(timing_window)s seconds.
-- Finished counts never read the whole history: the sweeper's metrics rows
-- (those whose `at` is in the window) count what they cover, and job_history
-- only what no row covers (after the queue's latest row: seconds, with a
-- sweeper running), by index range per status. Without metrics (no sweeper
-- runs) that is the whole window, still index ranges.
with recursive {part:queue_names_and_live_counts},
win as (
    -- the two windows: finished counts, and per-minute rates
    select 'all' as kind, now() - make_interval(secs => %(window)s) as start
    union all
    select 'rate', now() - make_interval(secs => %(rate_window)s)
),
covered as (
    -- the sweeper's metrics rows in each window; a row counts what finished in (since, at]
    select w.kind, w.start, m.queue, m.at, m.at - make_interval(secs => m.interval_seconds) as since,
           m.completed, m.failed, m.cancelled
      from win w
      join {schema}.metrics m on m.at > w.start
      join names n on n.queue = m.queue
),
ranges as (
    -- the stretches of each window that no metrics row covers: before a queue's first row and
    -- between rows (no sweeper ran, or a row hit its one-hour cap), and after its latest row
    select g.kind, g.queue, g.lo, g.hi
      from (select c.kind, c.queue, c.since as hi,
                   coalesce(lag(c.at) over (partition by c.kind, c.queue order by c.at), c.start) as lo
              from covered c) g
     where g.hi > g.lo + interval '1 millisecond'
    union all
    select w.kind, n.queue,
           greatest(w.start, (select max(c.at) from covered c where c.kind = w.kind and c.queue = n.queue)),
           cast('infinity' as timestamptz)
      from win w cross join names n
),
uncovered as (
    -- what finished in those stretches, from history by index range per status. Written as row
    -- comparisons so that only job_history_queue_status_idx (queue, status, finished_at) can serve
    -- them: a range on finished_at alone would tempt the planner into the finished_at index, which
    -- reads every queue's rows.
    select r.kind, r.queue,
           (select count(*) from {schema}.job_history h
             where h.queue = r.queue and h.status = 'completed'
               and (h.queue, h.status, h.finished_at) > (r.queue, 'completed', r.lo)
               and (h.queue, h.status, h.finished_at) <= (r.queue, 'completed', r.hi))
               as completed,
           (select count(*) from {schema}.job_history h
             where h.queue = r.queue and h.status = 'failed'
               and (h.queue, h.status, h.finished_at) > (r.queue, 'failed', r.lo)
               and (h.queue, h.status, h.finished_at) <= (r.queue, 'failed', r.hi))
               as failed,
           (select count(*) from {schema}.job_history h
             where h.queue = r.queue and h.status = 'cancelled'
               and (h.queue, h.status, h.finished_at) > (r.queue, 'cancelled', r.lo)
               and (h.queue, h.status, h.finished_at) <= (r.queue, 'cancelled', r.hi))
               as cancelled
      from ranges r
),
counted as (
    select x.queue,
           sum(x.completed) filter (where x.kind = 'all') as completed,
           sum(x.failed) filter (where x.kind = 'all') as failed,
           sum(x.cancelled) filter (where x.kind = 'all') as cancelled,
           sum(x.completed) filter (where x.kind = 'rate') as recent_completed,
           sum(x.failed) filter (where x.kind = 'rate') as recent_failed
      from (select kind, queue, completed, failed, cancelled from covered
            union all
            select kind, queue, completed, failed, cancelled from uncovered) x
     group by x.queue
),
rejections as (
    -- Rejections over the window: the metrics rows in it (by their primary key), plus what
    -- queues.rejected gained since the queue's latest row (a smaller total: the row was
    -- made anew). No row with a total: only a queue row made within the window says.
    select n.queue,
           (select coalesce(sum(m.rejected), 0) from {schema}.metrics m
             where m.queue = n.queue and m.at > now() - make_interval(secs => %(window)s)) as in_rows,
           (select m.rejected_total from {schema}.metrics m
             where m.queue = n.queue and m.rejected_total is not null
             order by m.at desc limit 1) as last_total
      from names n
),
timed as (
    select n.queue,
           percentile_cont(0.5) within group (order by t.run_ms) as run_ms_p50,
           percentile_cont(0.95) within group (order by t.run_ms) as run_ms_p95,
           percentile_cont(0.5) within group (order by t.wait_ms) as wait_ms_p50,
           percentile_cont(0.95) within group (order by t.wait_ms) as wait_ms_p95
      from names n
     cross join lateral (
            select extract(epoch from h.finished_at - h.started_at) * 1000 as run_ms,
                   greatest(extract(epoch from h.started_at - greatest(h.run_at, h.created_at)) * 1000, 0)
                       as wait_ms
              from {schema}.job_history h
             where (h.queue, h.status, h.finished_at)
                   > (n.queue, 'completed', now() - make_interval(secs => %(timing_window)s))
               and (h.queue, h.status) <= (n.queue, 'completed')
               and h.started_at is not null
             order by h.queue desc, h.status desc, h.finished_at desc
             limit %(sample)s) t
     group by n.queue
)
select n.queue,
       coalesce(p.paused, false) as paused,
       coalesce(l.waiting, 0) as waiting,
       coalesce(l.delayed, 0) as delayed,
       coalesce(l.active, 0) as active,
       coalesce(l.blocked, 0) as blocked,
       coalesce(c.completed, 0) as completed, coalesce(c.failed, 0) as failed,
       coalesce(c.cancelled, 0) as cancelled,
       coalesce(s.workers, 0) as workers,
       100.0 * s.busy / nullif(s.slots, 0) as utilization_pct,
       coalesce(p.slo, '{}') as slo,
       coalesce(c.recent_completed, 0) * 60.0 / %(rate_window)s as completed_per_minute,
       coalesce(c.recent_failed, 0) * 60.0 / %(rate_window)s as failed_per_minute,
       l.oldest_waiting_seconds,
       t.run_ms_p50, t.run_ms_p95, t.wait_ms_p50, t.wait_ms_p95,
       now() as at,
       coalesce(p.rejected, 0) as rejected,
       case when p.name is null then 0
            when rj.last_total is not null
                then rj.in_rows + case when p.rejected >= rj.last_total then p.rejected - rj.last_total
                                       else p.rejected end
            when p.created_at > now() - make_interval(secs => %(window)s) then p.rejected
       end as rejected_in_window
  from names n
  left join counted c on c.queue = n.queue
  left join {schema}.queues p on p.name = n.queue
  left join live l on l.queue = n.queue
  left join staff s on s.queue = n.queue
  left join timed t on t.queue = n.queue
  left join rejections rj on rj.queue = n.queue
 order by n.queue;

-- name: ops_set_queue_slo
-- Set some of a queue's service-level objectives and remove others (keys of
-- queues.slo, see pgq.slo); a queue may be set before it has any job.
insert into {schema}.queues as q (name, slo)
values (%(name)s, %(set)s)
on conflict (name) do update
   set slo = (q.slo || excluded.slo) - cast(%(remove)s as text[]),
       updated_at = now();

-- name: ops_list_workers
-- Every worker row (stopped and dead ones are kept a day), live ones first.
-- `running` is read from jobs, so it is exact now, not as of the last heartbeat:
-- one scan of jobs for every worker (no index keeps a worker's jobs, migration
-- 0022; one subquery per worker would scan once per row).
with held as (
    select j.worker_id, array_agg(j.id order by j.id) as ids
      from {schema}.jobs j
     where j.status = 'running' and j.worker_id is not null
     group by j.worker_id
)
select w.id, w.name, w.host, w.pid, w.status, w.queues, w.concurrency, w.started_at,
       w.last_heartbeat, w.stopped_at, w.version, w.tasks, 100.0 * w.utilization as utilization_pct,
       extract(epoch from now() - w.last_heartbeat) as seconds_since_heartbeat,
       coalesce(h.ids, '{}') as running
  from {schema}.workers w
  left join held h on h.worker_id = w.id
 order by case w.status when 'running' then 0 when 'stopping' then 1 when 'dead' then 2 else 3 end,
          w.started_at desc, w.id;

-- name: replica_lag
-- On a streaming standby: seconds it is behind its primary, 0 when it replayed all the WAL it
-- received (an idle primary sends nothing: the last replay time alone would look like lag).
-- Null on a server that is not in recovery (PGQ_READ_URL naming the primary itself).
select case
         when not pg_is_in_recovery() then null
         when pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then 0.0
         else greatest(extract(epoch from now() - pg_last_xact_replay_timestamp()), 0.0)
       end as lag;

