"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from alembic import op

from pgq.migrate_support import render

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}

UPGRADE = r"""
"""

DOWNGRADE = r"""
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
