-- Named queries on pgq.schedules.

-- name: schedule_upsert
-- Declared in code (at worker start) or at run time. A changed cron or time
-- zone, or a re-enabled schedule, takes the freshly computed next_run_at;
-- otherwise the stored one stays, so a redeploy neither skips nor repeats a tick.
insert into {schema}.schedules as s
    (name, cron, timezone, task, args, queue, priority, max_attempts, catch_up, enabled, source, next_run_at)
values (%(name)s, %(cron)s, %(timezone)s, %(task)s, cast(%(args)s as jsonb), %(queue)s, %(priority)s,
        %(max_attempts)s, %(catch_up)s, %(enabled)s, %(source)s, %(next_run_at)s)
on conflict (name) do update
   set cron = excluded.cron,
       timezone = excluded.timezone,
       task = excluded.task,
       args = excluded.args,
       queue = excluded.queue,
       priority = excluded.priority,
       max_attempts = excluded.max_attempts,
       catch_up = excluded.catch_up,
       -- From code, an operator's disable stands across deploys; a schedule
       -- that was disabled because it left the code (next_run_at null) is back.
       enabled = case when excluded.source = 'code' and s.source = 'code' and s.next_run_at is not null
                      then s.enabled else excluded.enabled end,
       source = excluded.source,
       next_run_at = case
           when s.cron is distinct from excluded.cron or s.timezone is distinct from excluded.timezone
                or s.next_run_at is null
           then excluded.next_run_at
           else s.next_run_at end,
       updated_at = now()
returning *;

-- name: schedule_disable_missing
-- Schedules that came from code but are no longer declared there are disabled,
-- not deleted, so their history stays. Only those this app could have declared:
-- its tasks' schedules.
update {schema}.schedules
   set enabled = false, next_run_at = null, updated_at = now()
 where source = 'code' and enabled
   and not (name = any(cast(%(declared)s as text[])))
   and task = any(cast(%(tasks)s as text[]))
returning name;

-- name: schedule_due
-- Enabled schedules whose tick has come, with the database's clock. A schedule
-- declared in code fires only in the app that registers its task (%(tasks)s, names
-- and aliases): another app sharing the database does not serve its queue.
select s.*, now() as db_now
  from {schema}.schedules s
 where s.enabled and s.next_run_at <= now()
   and (s.source <> 'code' or s.task = any(cast(%(tasks)s as text[])))
 order by s.next_run_at
 limit 100;

-- name: schedule_next_wait
-- The schedules schedule_due may return, or a foreign schedule's overdue tick makes it spin.
select now() as db_now, extract(epoch from min(next_run_at) - now()) as wait
  from {schema}.schedules
 where enabled and (source <> 'code' or task = any(cast(%(tasks)s as text[])));

-- name: schedule_take_tick
-- Exactly one scheduler wins each tick: the update only matches while
-- next_run_at still holds the tick this scheduler saw. It runs in the
-- transaction that enqueues the tick's job.
update {schema}.schedules
   set next_run_at = %(next_run_at)s, last_run_at = now(), updated_at = now()
 where name = %(name)s and enabled and next_run_at = %(tick)s
returning name;

-- name: schedule_triggered
-- A run asked for by hand (pgq schedules trigger, the dashboard's Run now):
-- last run and last job, not the next tick.
update {schema}.schedules set last_run_at = now(), last_job_id = %(job_id)s, updated_at = now()
 where name = %(name)s;

-- name: schedule_set_last_job
update {schema}.schedules set last_job_id = %(job_id)s where name = %(name)s;

-- name: schedule_list
select * from {schema}.schedules order by name;

-- name: schedule_get
select * from {schema}.schedules where name = %(name)s;

-- name: schedule_delete
delete from {schema}.schedules where name = %(name)s returning name;

-- name: schedule_set_enabled
-- Re-enabling computes a new next_run_at: the ticks missed while disabled are skipped.
update {schema}.schedules
   set enabled = %(enabled)s,
       next_run_at = case when %(enabled)s and not enabled then %(next_run_at)s else next_run_at end,
       updated_at = now()
 where name = %(name)s
returning *;

-- name: db_now
select now() as db_now;
