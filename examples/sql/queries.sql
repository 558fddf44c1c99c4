-- name: throughput
-- Throughput per hour and queue: finished jobs by outcome.
select date_trunc('hour', finished_at) as hour,
       queue,
       count(*) filter (where status = 'completed') as completed,
       count(*) filter (where status = 'failed') as failed,
       count(*) filter (where status = 'cancelled') as cancelled
from pgq.job_history
where finished_at >= timestamptz '2026-11-27 00:00+00' and finished_at < timestamptz '2026-11-28 00:00+00'
group by 1, 2
order by 1, 2;

-- name: timings
-- p50/p95 wait (due -> started) and run (started -> finished) time per task, in ms, completed jobs only.
-- Wait and run time are those of the last attempt: the columns hold nothing earlier.
select task,
       count(*) as jobs,
       round(percentile_cont(0.5) within group (order by extract(epoch from started_at - greatest(run_at, created_at)))::numeric * 1000) as wait_p50_ms,
       round(percentile_cont(0.95) within group (order by extract(epoch from started_at - greatest(run_at, created_at)))::numeric * 1000) as wait_p95_ms,
       round(percentile_cont(0.5) within group (order by extract(epoch from finished_at - started_at))::numeric * 1000) as run_p50_ms,
       round(percentile_cont(0.95) within group (order by extract(epoch from finished_at - started_at))::numeric * 1000) as run_p95_ms
from pgq.job_history
where status = 'completed'
  and finished_at >= timestamptz '2026-11-27 00:00+00' and finished_at < timestamptz '2026-11-28 00:00+00'
group by task
order by task;

-- name: failures
-- Failures by error type: every failed attempt (retried or not), and how many jobs it finished for good.
select e.type as error_type,
       j.task,
       count(*) as failed_attempts,
       count(*) filter (where j.status = 'failed' and e.attempt = j.attempts) as jobs_failed,
       min(e.message) as example_message
from pgq.job_history j
cross join lateral jsonb_to_recordset(j.errors) as e(attempt int, type text, message text)
where j.finished_at >= timestamptz '2026-11-27 00:00+00' and j.finished_at < timestamptz '2026-11-28 00:00+00'
group by 1, 2
order by failed_attempts desc, error_type;

-- name: attempts
-- Every attempt of the jobs with one key, oldest first: each failed attempt from `errors`,
-- then the final outcome. History may hold a key many times (it is free again once its job finished).
select j.id, e.attempt, e.at, 'failed' as outcome, e.type || ': ' || e.message as detail
from pgq.all_jobs j
cross join lateral jsonb_to_recordset(j.errors) as e(attempt int, at timestamptz, type text, message text)
where j.queue = 'emails' and j.key = 'welcome-email:42'
union all
select j.id, j.attempts, j.finished_at, j.status, null
from pgq.all_jobs j
where j.queue = 'emails' and j.key = 'welcome-email:42' and j.status = 'completed'
order by id, attempt;
