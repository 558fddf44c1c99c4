-- Named queries on pgq.workers.

-- name: worker_register
-- tasks: the names this worker can run, for explain's "no live worker knows its task".
insert into {schema}.workers (id, name, host, pid, queues, concurrency, version, tasks)
values (%(id)s, %(name)s, %(host)s, %(pid)s, cast(%(queues)s as text[]), %(concurrency)s, %(version)s,
        cast(%(tasks)s as text[]));

-- name: worker_heartbeat
-- Returns the worker's status (no row: the sweeper declared it dead and
-- removed it) and the ids of its running jobs that someone asked to cancel,
-- found among the jobs it holds (%(running)s) by primary key: no index keeps
-- the jobs of a worker (migration 0022).
-- utilization and busy_slots: the worker's own measure of the last minute.
with beat as (
    update {schema}.workers
       set last_heartbeat = now(), running = cast(%(running)s as bigint[]), status = %(status)s,
           utilization = %(utilization)s, busy_slots = coalesce(%(busy_slots)s, busy_slots)
     where id = %(id)s and status in ('running', 'stopping')
    returning status
)
select (select status from beat) as status,
       coalesce((select array_agg(id) from {schema}.jobs
                  where id = any(cast(%(running)s as bigint[])) and worker_id = %(id)s
                    and status = 'running' and cancel_requested_at is not null),
                '{}') as cancel_ids;

-- name: worker_stop
-- %(released)s: the worker stopped holding no job in the database (every outcome
-- written, no claim answer lost), so the sweeper has nothing to look for under its
-- id (migration 0022); otherwise it scans for the jobs left running.
update {schema}.workers
   set status = 'stopped', stopped_at = now(), last_heartbeat = now(), running = '{}',
       released_at = case when %(released)s then now() end
 where id = %(id)s and status in ('running', 'stopping');
