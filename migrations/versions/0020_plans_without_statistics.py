"""Plans that a table without statistics cannot spoil: the grouped claim's walk, and the finishes.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07

A worker plans the statements of pgq's functions once per session, often right after a
queue was filled and before autovacuum analysed it. Three plans went wrong then, found by
draining 10,000-30,000 no-op jobs on a fresh database (PostgreSQL 15 and 18):

- ``claim_group_walk()`` (0019) locked the jobs its walk chose with the queue and
  ``status = 'pending'`` among the conditions, which ``jobs_claim_idx`` fits too: the
  lock read every pending job of the queue and filtered on the ids. The walk took 9.8 ms
  a claim (the loop of 0006: 4.0), and a drain of 30,000 jobs in 1,000 groups ran at
  4,800-6,700 jobs/s against 8,700-9,900 before 0019. Now the lock names only the key
  (the primary key, which no partial index can stand in for) and checks the status of
  the locked row after it: the same rows, since a row locked ``FOR UPDATE`` is its latest
  version, and a row whose status changed stays locked only to the end of the claim.
- On PostgreSQL 18 the walk's probe itself read ``jobs_claim_idx`` and sorted it, once per
  group (110 ms for 20 groups of 400 jobs). The walk, and the later passes of
  ``claim_grouped()``, now run with ``enable_sort`` and ``enable_seqscan`` off: the only
  plan left for "the next group's best job" is ``jobs_group_idx``, in its own order.
- ``finish_completed()`` and ``finish_jobs()`` made a custom plan for each call whose
  batch was smaller than the generic plan's guess, and planning the statement that moves
  rows into the partitioned history costs 1.5-2 ms: a worker at concurrency 5 drained at
  1,600-2,000 jobs/s. They now keep one plan (``plan_cache_mode = force_generic_plan``,
  as ``claim_jobs()`` has), the one whose joins their ``SET`` clauses already fix.

``tests/test_plans.py`` reads each plan inside the functions on a table without statistics.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, render

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- As in 0019, with the chosen jobs locked by primary key.
create or replace function {schema}.claim_group_walk(
    queue_name text, after_g text, upto_g text, ts timestamptz, full_groups text[], n integer
) returns table (id bigint, g text)
language plpgsql volatile
-- The probe must follow jobs_group_idx: without statistics PostgreSQL 18 read the queue's
-- whole claim index and sorted it, once per group.
set enable_sort = off
set enable_seqscan = off
as $$
begin
    return query
    -- The walk starts from a row of its own (after_g, no job), which it then leaves out.
    with recursive walk(g, id) as (
        select after_g, cast(null as bigint)
        union all
        (select x.g, x.id
           from walk w
          cross join lateral (
                select cast(j.group_key as text) as g, j.id from {schema}.jobs j
                 where j.queue = queue_name and j.status = 'pending' and j.group_key is not null
                   and j.group_key > w.g and j.run_at <= ts
                 order by j.group_key, j.priority desc, j.run_at, j.id
                 limit 1) x
          where upto_g is null or w.g < upto_g)
    ),
    chosen as materialized (
        select w.g, w.id from walk w
         where w.id is not null and (upto_g is null or w.g <= upto_g) and w.g <> all(full_groups)
         limit n
    ),
    -- By the primary key alone: with the status among the conditions, a plan made
    -- without statistics read jobs_claim_idx (all the queue's pending jobs) instead.
    locked as (
        select j.id, cast(j.group_key as text) as g, cast(j.status as text) as status
          from {schema}.jobs j
         where j.id = any(array(select c.id from chosen c)) and j.queue = queue_name
           for update of j skip locked
    )
    select l.id, l.g from locked l where l.status = 'pending';
end
$$;

-- The later passes of a grouped claim probe the same index in the same order.
alter function {schema}.claim_grouped(uuid, text, {schema}.queues, integer) set enable_sort = off;
alter function {schema}.claim_grouped(uuid, text, {schema}.queues, integer) set enable_seqscan = off;

-- One plan for every call: see the module's docstring.
alter function {schema}.finish_completed(uuid, bigint[], text[], integer[])
    set plan_cache_mode = force_generic_plan;
alter function {schema}.finish_jobs(uuid, bigint[], text[], integer[], text[], jsonb[], jsonb[], double precision[])
    set plan_cache_mode = force_generic_plan;
"""

HERE = Path(__file__).parent


def upgrade() -> None:
    op.execute(render(UPGRADE))


DOWNGRADE = r"""
alter function {schema}.claim_grouped(uuid, text, {schema}.queues, integer) reset all;
alter function {schema}.finish_completed(uuid, bigint[], text[], integer[]) reset plan_cache_mode;
alter function {schema}.finish_jobs(uuid, bigint[], text[], integer[], text[], jsonb[], jsonb[], double precision[])
    reset plan_cache_mode;
"""


def downgrade() -> None:
    earlier = earlier_sql(HERE / "0019_grouped_walk.py", "create function {schema}.claim_group_walk(", "$$;")
    op.execute(render(earlier + "\n" + DOWNGRADE))
