-- Named queries of `pgq bench` (bench/runner.py), in its own schema (pgq_bench):
-- set-up and clean-up, the plain-SQL drain it compares pgq with, the database's
-- own timestamps it measures rates from, and the history it ages the tables with.

-- name: bench_drop_schema
drop schema if exists {schema} cascade;

-- name: bench_clear
truncate {schema}.jobs, {schema}.job_history;

-- name: bench_show
-- A server setting for the report (SHOW takes a name, not a value).
show {ident:setting};

-- name: bench_rate
-- Seconds from the first start to the last finish, and how many jobs finished.
select extract(epoch from max(finished_at) - min(started_at)) as seconds, count(*) as n
  from {schema}.job_history;

-- name: bench_rate_of_bench_async
-- As bench_rate, for the drain's own jobs only (history holds others).
select extract(epoch from max(finished_at) - min(started_at)) as seconds, count(*) as n
  from {schema}.job_history where task = 'bench_async';

-- name: bench_delete_bench_async
delete from {schema}.job_history where task = 'bench_async';

-- name: bench_any_job
select exists(select from {schema}.jobs);

-- name: bench_jobs_left
select count(*) from {schema}.jobs;

-- name: bench_history_reached
-- How many of the first %(n)s finished jobs are in history (at most n).
select count(*) from (select from {schema}.job_history limit %(n)s) h;

-- name: bench_plain_create_jobs
-- The plain-SQL drain: no queue library, a table of the jobs' shape, a claim of a
-- batch with FOR UPDATE SKIP LOCKED (one statement) and a move to a history table
-- (a second), until none is left.
create table {schema}.plain_jobs (like {schema}.jobs including defaults including identity);

-- name: bench_plain_index
create index on {schema}.plain_jobs (queue, priority desc, run_at, id) where status = 'pending';

-- name: bench_plain_create_history
create table {schema}.plain_history (like {schema}.job_history including defaults);

-- name: bench_plain_fill
insert into {schema}.plain_jobs (task, args) select 'bench_async', jsonb_build_object('i', g)
  from generate_series(1, %(count)s) g;

-- name: bench_plain_claim
update {schema}.plain_jobs j set status = 'running', attempts = j.attempts + 1, started_at = now()
 where j.id in (select id from {schema}.plain_jobs where queue = 'default' and status = 'pending'
                 order by priority desc, run_at, id limit %(batch)s for update skip locked)
returning j.id;

-- name: bench_plain_finish
with d as (delete from {schema}.plain_jobs where id = any(%(ids)s) returning *)
insert into {schema}.plain_history (id, queue, task, args, priority, status, attempts, max_attempts,
                                    run_at, created_at, started_at)
select id, queue, task, args, priority, 'completed', attempts, max_attempts,
       run_at, created_at, started_at from d;

-- name: bench_plain_drop
drop table {schema}.plain_jobs, {schema}.plain_history;

-- name: bench_history_fill
-- Ageing: %(rows)s old finished jobs in history (negative ids, clear of the real ones).
insert into {schema}.job_history (id, queue, task, args, priority, status, attempts,
        max_attempts, run_at, created_at, started_at, finished_at)
select -g, 'default', 'old', '{}', 0, 'completed', 1, 3, now(), now(), now(), now()
  from generate_series(1, %(rows)s) g;

-- name: bench_analyze_history
analyze {schema}.job_history;

-- name: bench_churn_insert
-- Churn: jobs through the live table in SQL (insert, then move to history), which
-- leaves the dead tuples a real run would.
insert into {schema}.jobs (task, args) select 'churn', '{}' from generate_series(1, %(batch)s);

-- name: bench_churn_move
with d as (delete from {schema}.jobs where task = 'churn' returning *)
insert into {schema}.job_history (id, queue, task, args, priority, status, attempts,
       max_attempts, run_at, created_at, finished_at)
select id, queue, task, args, priority, 'completed', 1, max_attempts, run_at, created_at, now()
  from d;
