-- Statements about the session rather than pgq's tables: LISTEN and NOTIFY,
-- settings of the session or transaction, and the savepoints of ctx.session.

-- name: listen
-- LISTEN takes an identifier, not a value: the channel is quoted in by query().
listen {ident:channel};

-- name: notify
-- The listener's probe: a NOTIFY on its own channel that it must hear back.
select pg_notify(%(channel)s, %(payload)s);

-- name: session_lock_timeout
-- SET lock_timeout for the session (as SET does outside a transaction), in milliseconds.
select set_config('lock_timeout', %(ms)s, false);

-- name: transaction_idle_limit
-- idle_in_transaction_session_timeout for this transaction only, in milliseconds.
select set_config('idle_in_transaction_session_timeout', %(ms)s, true);

-- name: lent_savepoint
-- ctx.session (worker/lent_session.py): a savepoint is open while SQLAlchemy holds
-- pgq's connection. Its commit releases it and opens the next; its rollback goes
-- back to it (which keeps it).
savepoint pgq_session;

-- name: lent_release
release savepoint pgq_session; savepoint pgq_session;

-- name: lent_rollback
rollback to savepoint pgq_session;
