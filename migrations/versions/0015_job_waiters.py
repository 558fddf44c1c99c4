"""Waiting for a job's end: app.wait() is woken by a NOTIFY when a job it waits
for moves to job_history, and costs nothing when nobody waits.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

- ``job_waiters`` (unlogged: a waiter is a live session, nothing to keep over a
  crash): a row per job a session waits for, with that session's backend pid.
  The waiter deletes its rows when it stops waiting; the sweeper deletes the rows
  of sessions that are gone.
- ``wake_waiters()``: a statement trigger after every insert into job_history,
  the one way a job ends (0012). When ``job_waiters`` has a row it sends one
  NOTIFY on ``<schema>_done`` per statement (not per job), and the waiters look
  up the jobs they wait for. When it has none (the usual case) it reads an empty
  table and sends nothing: a NOTIFY in every finish would serialise the commits
  of all workers on the server's notify queue lock.
"""

from __future__ import annotations

from alembic import op

from pgq.db import channels
from pgq.migrate_support import render, schema_name

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPGRADE = r"""
create unlogged table {schema}.job_waiters (
    job_id bigint      not null,
    pid    integer     not null default pg_backend_pid(),
    since  timestamptz not null default now()
);
create index job_waiters_job_id_idx on {schema}.job_waiters (job_id);

create function {schema}.wake_waiters() returns trigger
language plpgsql as $$
begin
    if exists (select from {schema}.job_waiters) then
        perform pg_notify({done_channel}, '');
    end if;
    return null;
end
$$;

create trigger job_history_wakes_waiters after insert on {schema}.job_history
    for each statement execute function {schema}.wake_waiters();
"""

DOWNGRADE = r"""
drop trigger job_history_wakes_waiters on {schema}.job_history;
drop function {schema}.wake_waiters();
drop table {schema}.job_waiters;
"""


def _render(sql: str) -> str:
    return render(sql).replace("{done_channel}", f"'{channels.done(schema_name())}'")


def upgrade() -> None:
    op.execute(_render(UPGRADE))


def downgrade() -> None:
    op.execute(_render(DOWNGRADE))
