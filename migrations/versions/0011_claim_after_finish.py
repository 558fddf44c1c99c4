"""claim_jobs() that first writes the worker's plain completions: one round trip
and one commit where a busy worker made two.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

A busy worker claims as soon as slots free, and slots free when jobs finish: so
at the moment of each claim it holds the outcomes of the jobs that just freed
them. Written apart (the completer's ``finish_completed()`` on a second
session), they cost a statement, a commit and a wake-up of a second backend per
claim. This overload of ``claim_jobs()`` takes those outcomes along: in one
transaction it moves them to history through ``finish_completed()`` (same
fences, same history row, same notification), then claims through the
three-argument ``claim_jobs()`` (same plan, same checks), so the finished jobs
have left ``jobs`` before the claim looks.

Its rows are those of ``claim_jobs()``, preceded by one row per outcome the
fence refused: its id, every other column null (a claimed job always has a
task). A failed call writes nothing and claims nothing: the worker's completer
then writes those outcomes as before.

Measured before building it, in the tight loop of ``benchmarks/cmp`` at 10 slots
(PostgreSQL 15, 30,000 jobs, three alternating pairs): the finish carried by the
next claim instead of its own statement took the drain from 15,100-15,300 to
15,400-17,600 jobs/s, with client CPU 30-33 -> 20-22 us and server CPU 39-40
-> 28-31 us a job.
"""

from __future__ import annotations

from alembic import op

from pgq.migrate_support import render

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = r"""
create function {schema}.claim_jobs(
    worker        uuid,
    queue_names   text[],
    max_jobs      integer,
    done_ids      bigint[],
    done_queues   text[],
    done_attempts integer[]
)
returns table (
    id bigint, queue text, task text, args jsonb, priority integer, attempts integer, max_attempts integer,
    run_at timestamptz, created_at timestamptz, started_at timestamptz, key text, group_key text,
    timeout interval, backoff double precision, depends_on bigint[], on_parent_failure text, errors jsonb,
    next_wait double precision
)
language plpgsql volatile
as $$
begin
    if cardinality(done_ids) > 0 then
        -- A refused outcome is a row with its id alone.
        return query
        select r.id, null::text, null::text, null::jsonb, null::integer, null::integer, null::integer,
               null::timestamptz, null::timestamptz, null::timestamptz, null::text, null::text, null::interval,
               null::double precision, null::bigint[], null::text, null::jsonb, null::double precision
          from {schema}.finish_completed(worker, done_ids, done_queues, done_attempts) as r(id);
    end if;
    return query select * from {schema}.claim_jobs(worker, queue_names, max_jobs);
end
$$;
"""

DOWNGRADE = r"""
drop function {schema}.claim_jobs(uuid, text[], integer, bigint[], text[], integer[]);
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
