-- Named queries on pgq.workers.

-- name: worker_register
-- tasks: the names this worker can run, for explain's "no live worker knows its task".
insert into {schema}.workers (id, name, host, pid, queues, concurrency, version, tasks)
values (%(id)s, %(name)s, %(host)s, %(pid)s, cast(%(queues)s as text[]), %(concurrency)s, %(version)s,
        cast(%(tasks)s as text[]));

-- name: worker_heartbeat
-- Returns the worker's status (no row: the sweeper declared it dead and
-- removed it) and the ids of its running jobs that someone asked to cancel.
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
                  where worker_id = %(id)s and status = 'running' and cancel_requested_at is not null),
                '{}') as cancel_ids;

-- name: worker_stop
update {schema}.workers
   set status = 'stopped', stopped_at = now(), last_heartbeat = now(), running = '{}'
 where id = %(id)s and status in ('running', 'stopping');
