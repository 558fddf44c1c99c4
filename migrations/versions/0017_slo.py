"""Service-level objectives: each worker's utilisation, and thresholds per queue.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

- ``workers.utilization``: the share of the worker's slots its jobs held over the
  last minute (0 to 1), measured in the worker and written by its heartbeat.
- ``workers.busy_slots``: the same by queue, as busy slots on average over that
  minute (``{"emails": 3.2}``); a queue's utilisation is its busy slots over the
  slots of the live workers that serve it.
- ``queues.slo``: a queue's thresholds (``wait_p95_ms``, ``run_p95_ms``,
  ``utilization_pct``, ``error_rate_pct``, ``completion_rate_pct``), set by
  ``app.set_queue(..., slo_...=)`` or ``pgq queues set --slo-...``; a key not set
  takes the ``PGQ_SLO_*`` setting.
"""

from __future__ import annotations

from alembic import op

from pgq.migrate_support import render

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = r"""
alter table {schema}.workers
    add column utilization real,
    add column busy_slots jsonb not null default '{}';
alter table {schema}.queues
    add column slo jsonb not null default '{}';
"""

DOWNGRADE = r"""
alter table {schema}.queues drop column slo;
alter table {schema}.workers drop column busy_slots, drop column utilization;
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
