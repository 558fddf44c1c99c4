"""claim_limited() that first writes the worker's plain completions, as claim_jobs() has
since 0011: a queue with a concurrency limit claims again in the round trip that frees
its slots.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07

A worker at a queue's concurrency limit holds, at each claim, the outcomes of the jobs
that just finished. Until they are written the database counts their slots as taken,
so the claim of a queue with a queue-wide limit waited for the completer: its write on
a second session, its commit, its NOTIFY, then the claim, two round trips and two
commits for every slot that freed. This overload of ``claim_limited()`` takes those
outcomes along: in one transaction it moves them to history through
``finish_completed()`` (same fences, same history row, same notification), then claims
through the three-argument ``claim_limited()``, whose count of the queue's running jobs
no longer holds them.

Its rows are those of ``claim_limited()``, preceded by one row per outcome the fence
refused: its id, every other column null (a claimed job always has a task). A failed
call writes nothing and claims nothing: the worker's completer then writes those
outcomes as before.
"""

from __future__ import annotations

from alembic import op

from pgq.migrate_support import render

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

UPGRADE = r"""
create function {schema}.claim_limited(
    worker        uuid,
    queue_name    text,
    max_jobs      integer,
    done_ids      bigint[],
    done_queues   text[],
    done_attempts integer[]
)
returns setof {schema}.jobs
language plpgsql volatile
as $$
begin
    if cardinality(done_ids) > 0 then
        -- A refused outcome is a row with its id alone.
        return query
        select refused.*
          from {schema}.finish_completed(worker, done_ids, done_queues, done_attempts) as r(id),
               jsonb_populate_record(null::{schema}.jobs, jsonb_build_object('id', r.id)) as refused;
    end if;
    return query select * from {schema}.claim_limited(worker, queue_name, max_jobs);
end
$$;
"""

DOWNGRADE = r"""
drop function {schema}.claim_limited(uuid, text, integer, bigint[], text[], integer[]);
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
