"""Per-job logs: the lines a handler logs through ctx.log, kept with their attempt.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

- ``job_logs``: one row per line (job id, attempt, time, level, message), in the
  order written (``line``). The worker writes a job's lines in one statement when
  its handler returns, and only for a job that logged something: a job that logs
  nothing costs nothing here. At most 200 lines or 64 KiB per run of an attempt
  are kept (the newest; a first line says how many were dropped).
- No foreign key (a job moves from jobs to job_history): the sweeper deletes the
  lines of jobs that are in neither table any more, so they go with their job.
"""

from __future__ import annotations

from alembic import op

from pgq.migrate_support import render

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UPGRADE = r"""
create table {schema}.job_logs (
    line    bigint      generated always as identity primary key,
    job_id  bigint      not null,
    attempt integer     not null,
    at      timestamptz not null,
    level   text        not null,
    message text        not null
);
create index job_logs_job_idx on {schema}.job_logs (job_id, line);
"""

DOWNGRADE = r"""
drop table {schema}.job_logs;
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
