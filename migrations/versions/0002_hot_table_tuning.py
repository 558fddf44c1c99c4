"""A worker index that the finish statement cannot pick.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

``jobs_worker_idx`` was partial on ``status = 'running'``. Every claim adds an
entry to it (the new row version), and the entry stays until vacuum, so the
index holds one entry per job a worker ran since the last vacuum. The finish
statement mentions ``status = 'running'``, which let the planner use that index
as a filter for every outcome: each batch scanned thousands of dead entries and
a drain at concurrency 100 fell to a few hundred jobs/s. Keyed on
``worker_id is not null`` instead, only queries that name a worker id can use it
(the sweeper's rescue, the heartbeat); the finish goes by primary key.
"""

from __future__ import annotations

from alembic import op

from pgq.migrate_support import render

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
drop index {schema}.jobs_worker_idx;
create index jobs_worker_idx on {schema}.jobs (worker_id) where worker_id is not null;
"""

DOWNGRADE = r"""
drop index {schema}.jobs_worker_idx;
create index jobs_worker_idx on {schema}.jobs (worker_id) where status = 'running';
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
