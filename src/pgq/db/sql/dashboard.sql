-- Reads of the web dashboard (pgq.web). Its live ticker runs dashboard_live
-- once per tick for all connected browsers, so it touches only the live
-- table (sized by the backlog) and the rows of the jobs on their screens.
-- Finished counts come from App.stats() (a 24-hour window that never reads
-- the whole history).

-- name: dashboard_live
-- Live counts per queue, paused queues, the running jobs (their progress is
-- written by an update that fires no NOTIFY) and the jobs browsers watch.
select
    (select coalesce(json_agg(c order by c.queue), '[]'::json) from (
        select queue,
               count(*) filter (where status = 'pending' and run_at <= now()) as pending,
               count(*) filter (where status = 'pending' and run_at > now()) as delayed,
               count(*) filter (where status = 'running') as running,
               count(*) filter (where status = 'blocked') as blocked
          from {schema}.jobs
         group by queue) c) as live,
    (select coalesce(json_agg(q.name order by q.name), '[]'::json)
       from {schema}.queues q where q.paused) as paused,
    (select coalesce(json_agg(r order by r.id), '[]'::json) from (
        select id, queue, task, attempts, progress, progress_message, started_at
          from {schema}.jobs
         where status = 'running'
         order by id
         limit 50) r) as running,
    (select coalesce(json_agg(w), '[]'::json) from (
        select id, status, attempts, max_attempts, progress, progress_message, run_at <= now() as ready
          from {schema}.all_jobs
         where id = any(cast(%(ids)s as bigint[]))) w) as watched,
    (select max(id) from {schema}.jobs) as newest_live_id,
    -- Heartbeats and busy slots of the live workers (one row per process: a small table).
    (select coalesce(json_agg(k order by k.id), '[]'::json) from (
        select id, status, last_heartbeat, cardinality(running) as busy, concurrency
          from {schema}.workers
         where status in ('running', 'stopping')) k) as workers;

-- name: dashboard_failed_by_queue
-- Failed jobs of the retained history per queue (what "retry all failed"
-- would take): one (queue, status) index range per queue, failed rows only.
select q.name as queue,
       (select count(*) from {schema}.job_history h where h.queue = q.name and h.status = 'failed') as failed
  from unnest(cast(%(names)s as text[])) as q(name);

-- name: dashboard_series
-- The sweeper's metrics rows since %(start)s per queue, in steps of %(step)s
-- seconds (a range of metrics_at_idx): what the overview's charts draw. Times
-- are weighted by the jobs they measured.
select queue,
       date_bin(make_interval(secs => %(step)s), at, cast(%(start)s as timestamptz)) as bucket,
       sum(completed) as completed,
       sum(failed) as failed,
       sum(retried) as retried,
       sum(wait_ms_mean * completed) / nullif(sum(completed) filter (where wait_ms_mean is not null), 0) as wait_ms,
       sum(run_ms_mean * completed) / nullif(sum(completed) filter (where run_ms_mean is not null), 0) as run_ms
  from {schema}.metrics
 where at > cast(%(start)s as timestamptz)
 group by queue, bucket
 order by queue, bucket;

-- name: dashboard_metrics_until
-- The end of the newest metrics window: the charts are exact up to there, and
-- empty after it until a worker's sweeper writes the next window.
select max(at) as until from {schema}.metrics;

-- name: dashboard_family
-- Jobs of a workflow around %(ids)s: those jobs, and the jobs that name one
-- of them in depends_on. A child is enqueued after its parents (a workflow's
-- jobs in one transaction), so children are looked for among the next
-- %(window)s ids by primary key, and waiting ones also by
-- jobs_blocked_parents_idx wherever they are. Finished ones are read from the
-- history's partitions that can hold those ids (history_between, 0018).
select id, cast(task as text) as task, cast(status as text) as status, run_at <= now() as ready, depends_on
  from {schema}.jobs
 where id = any(cast(%(ids)s as bigint[]))
union
select id, task, status, run_at <= now(), depends_on
  from {schema}.jobs
 where id > %(low)s and id <= %(high)s + %(window)s
   and depends_on && cast(%(ids)s as bigint[])
union
select id, task, status, run_at <= now(), depends_on
  from {schema}.jobs
 where status = 'blocked' and depends_on && cast(%(ids)s as bigint[])
union
select id, task, status, run_at <= now(), depends_on
  from {schema}.history_between(%(low)s, %(high)s + %(window)s) h
 where h.id = any(cast(%(ids)s as bigint[]))
    or (h.id > %(low)s and h.depends_on && cast(%(ids)s as bigint[]))
 order by id
 limit %(limit)s;

-- name: dashboard_worker_names
select id, name from {schema}.workers where id = any(cast(%(ids)s as uuid[]));

-- name: dashboard_now
select now() as now;

-- name: dashboard_metric_totals
-- For /metrics: what the sweeper's rows count over the last 24 hours (a range
-- of metrics_at_idx, not every retained row), and each queue's latest run and
-- wait times.
select m.queue,
       sum(m.completed) as completed,
       sum(m.failed) as failed,
       sum(m.retried) as retried,
       sum(m.cancelled) as cancelled,
       sum(m.rejected) as rejected,
       (array_agg(m.run_ms_mean order by m.at desc) filter (where m.run_ms_mean is not null))[1] as run_ms_mean,
       (array_agg(m.run_ms_p95 order by m.at desc) filter (where m.run_ms_p95 is not null))[1] as run_ms_p95,
       (array_agg(m.wait_ms_mean order by m.at desc) filter (where m.wait_ms_mean is not null))[1] as wait_ms_mean,
       (array_agg(m.wait_ms_p95 order by m.at desc) filter (where m.wait_ms_p95 is not null))[1] as wait_ms_p95
  from {schema}.metrics m
 where m.at > now() - interval '24 hours'
 group by m.queue;

-- name: dashboard_rejected_totals
-- For /metrics: enqueues refused and pending jobs dropped per queue, in total
-- (queues.rejected only grows: a counter).
select name as queue, rejected from {schema}.queues where rejected > 0 order by name;

-- name: dashboard_worker_slots
-- For /metrics: live workers, their slots and the slots in use.
select count(*) as workers,
       coalesce(sum(concurrency), 0) as slots,
       coalesce(sum(cardinality(running)), 0) as busy
  from {schema}.workers
 where status in ('running', 'stopping');
