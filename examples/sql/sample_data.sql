-- Sample history for the queries in README.md: two hours of one Friday morning (UTC),
-- 80 emails, 30 image resizes, a failing webhook and one welcome email that needed three tries.
-- Every time is fixed, so the queries give the same output everywhere.

insert into pgq.job_history
    (id, queue, task, args, priority, status, attempts, max_attempts,
     run_at, created_at, started_at, finished_at, key, errors)
select i, 'emails', 'send_welcome', jsonb_build_object('user_id', i), 0,
       case when i % 20 = 0 then 'failed' else 'completed' end,
       case when i % 20 = 0 then 3 else 1 end, 3,
       t, t,
       t + make_interval(secs => (i % 7) * 0.05),                       -- waited 0-300 ms
       t + make_interval(secs => (i % 7) * 0.05 + 0.1 + (i % 5) * 0.1), -- ran 100-500 ms
       'welcome-email:' || i,
       case when i % 20 = 0 then jsonb_build_array(
           jsonb_build_object('attempt', 1, 'at', t, 'type', 'SMTPServerDisconnected', 'message', 'Connection unexpectedly closed'),
           jsonb_build_object('attempt', 2, 'at', t + interval '2 s', 'type', 'SMTPServerDisconnected', 'message', 'Connection unexpectedly closed'),
           jsonb_build_object('attempt', 3, 'at', t + interval '6 s', 'type', 'SMTPServerDisconnected', 'message', 'Connection unexpectedly closed'))
       else '[]'::jsonb end
from generate_series(1, 80) as i,
     lateral (select timestamptz '2026-11-27 09:00:00+00' + make_interval(mins => i * 90 / 80)) as s(t);

insert into pgq.job_history
    (id, queue, task, args, priority, status, attempts, max_attempts,
     run_at, created_at, started_at, finished_at, errors)
select 100 + i, 'images', 'resize', jsonb_build_object('image_id', i), 5,
       case when i % 10 = 0 then 'failed' else 'completed' end, 1, 3,
       t, t,
       t + make_interval(secs => 1 + i % 4),                    -- waited 1-4 s behind a big batch
       t + make_interval(secs => 1 + i % 4 + 2 + (i % 3) * 1.5), -- ran 2-5 s
       case when i % 10 = 0 then jsonb_build_array(
           jsonb_build_object('attempt', 1, 'at', t, 'type', 'PermanentError', 'message', 'not an image: image/svg+xml', 'permanent', true))
       else '[]'::jsonb end
from generate_series(1, 30) as i,
     lateral (select timestamptz '2026-11-27 10:00:00+00' + make_interval(mins => i)) as s(t);

insert into pgq.job_history
    (id, queue, task, args, priority, status, attempts, max_attempts,
     run_at, created_at, started_at, finished_at, errors)
select 200 + i, 'webhooks', 'deliver_webhook', jsonb_build_object('delivery_id', i), 0, 'failed', 3, 3,
       t, t, t + interval '10 s', t + interval '15 s',
       jsonb_build_array(
           jsonb_build_object('attempt', 1, 'at', t, 'type', 'HTTPStatusError', 'message', 'Server error 503'),
           jsonb_build_object('attempt', 2, 'at', t + interval '2 s', 'type', 'Timeout', 'message', 'attempt ran over its timeout of 5 s'),
           jsonb_build_object('attempt', 3, 'at', t + interval '6 s', 'type', 'HTTPStatusError', 'message', 'Server error 503'))
from generate_series(1, 4) as i,
     lateral (select timestamptz '2026-11-27 10:15:00+00' + make_interval(mins => i * 10)) as s(t);

-- welcome-email:42 again, the next day: failed twice on a flaky SMTP server, then went through.
insert into pgq.job_history
    (id, queue, task, args, priority, status, attempts, max_attempts,
     run_at, created_at, started_at, finished_at, key, errors)
values (301, 'emails', 'send_welcome', '{"user_id": 42}', 0, 'completed', 3, 3,
        '2026-11-28 08:00:06+00', '2026-11-28 08:00:00+00', '2026-11-28 08:00:06.01+00', '2026-11-28 08:00:06.3+00',
        'welcome-email:42',
        '[{"attempt": 1, "at": "2026-11-28T08:00:00.2+00:00", "type": "ConnectionError", "message": "SMTP server not reachable"},
          {"attempt": 2, "at": "2026-11-28T08:00:02.3+00:00", "type": "SMTPResponseException", "message": "451 try again later"}]');
