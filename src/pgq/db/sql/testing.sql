-- Named queries of the test helpers (pgq.testing).

-- name: testing_any_due
-- testing/running.py: is a job of these queues ready to claim now?
select exists (select from {schema}.jobs
                where queue = any(%(queues)s) and status = 'pending' and run_at <= now()) as due;
