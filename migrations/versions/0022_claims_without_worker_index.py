"""Claims write no entry in a worker index: ``jobs_worker_idx`` goes, and what read it
finds a worker's jobs another way.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08

Every claim added an entry to ``jobs_worker_idx`` for each job it took, and the claim
waited for it: 3.5 us of the claim's 29 us a job, and dropping the index made a drain
11 % faster at concurrency 100, 6 % at 10 (docs/performance.md). Its readers now go
without it:

- the heartbeat's cancellations, through the ids of the jobs the worker holds (the
  primary key);
- the return of jobs whose claim answer was lost: a scan, run only after a claim of
  that worker failed (pgq.worker.heartbeat);
- the sweeper's rescue of a dead or stopped worker's jobs: a scan, run only while such
  a worker has not been released. ``workers.released_at`` says that no job can still be
  running under its id: set by a worker that stopped holding nothing and lost no claim
  answer, or by the sweeper once no running job of it is left after every claim it may
  have had in flight has ended (pgq.maintenance.rescue);
- the rescue of jobs overrunning their timeout, through ``jobs_timeout_idx``: running
  jobs that have a timeout, an entry only for those.

Workers that stopped or died before this revision and hold no running job are released
here (through the old index, before it goes). Workers of an older pgq still running after
it name their jobs by worker id at every heartbeat, which is now a scan of jobs: restart
them on the new version with the migration.
"""

from __future__ import annotations

from alembic import op

from pgq.migrate_support import render

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

UPGRADE = r"""
alter table {schema}.workers add column released_at timestamptz;
update {schema}.workers w
   set released_at = coalesce(w.stopped_at, w.last_heartbeat)
 where w.status in ('stopped', 'dead')
   and not exists (select from {schema}.jobs j where j.worker_id = w.id and j.status = 'running');
create index jobs_timeout_idx on {schema}.jobs (started_at) where status = 'running' and timeout is not null;
drop index {schema}.jobs_worker_idx;
"""

DOWNGRADE = r"""
create index jobs_worker_idx on {schema}.jobs (worker_id) where worker_id is not null;
drop index {schema}.jobs_timeout_idx;
alter table {schema}.workers drop column released_at;
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
