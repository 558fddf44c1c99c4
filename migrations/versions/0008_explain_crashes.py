"""explain() says when a job's process died under it (poison attribution).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

A job whose process died under it has ``WorkerDied`` (the sweeper) or ``Crashed``
(a child process that died running it alone) entries in its ``errors``; from the
second (``pgq.job.SUSPECT_AT``), workers run it alone in a child process
(docs/guarantees.md, "Poison jobs"). ``explain(id)`` ends with one more line for such a job, the same words as
``Job.crash_note()`` in Python (``pgq jobs show``, the dashboard's job page).

0005's ``explain`` returns from several places (a finished job, a running one, a
blocked one, the reasons of a pending one), so it is kept whole under the name
``explain_hold`` and ``explain`` appends the crash line to what it says. A later
revision that changes what holds a job back replaces ``explain_hold``.
"""

from __future__ import annotations

from alembic import op

from pgq.migrate_support import render

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = r"""
alter function {schema}.explain(bigint) rename to explain_hold;

-- How many times the process running a job died under it, and what that means:
-- null for a job that never crashed. Python's Job.crash_note() says the same.
-- Not a "- " line: the crashes do not hold the job back (the dashboard lists
-- those lines as reasons).
create function {schema}.explain_crashes(job_id bigint) returns text
language plpgsql stable as $$
declare
    j       record;
    crashes bigint;
    times   text;
begin
    select status, errors into j from {schema}.jobs where id = job_id;
    if not found then
        select status, errors into j from {schema}.job_history where id = job_id;
        if not found then
            return null;
        end if;
    end if;
    select count(*) into crashes
      from jsonb_array_elements(case when jsonb_typeof(j.errors) = 'array' then j.errors else '[]' end) e
     where e ->> 'type' in ('WorkerDied', 'Crashed');
    if crashes = 0 then
        return null;
    end if;
    times := case when crashes = 1 then 'once' else crashes || ' times' end;
    if j.status = 'failed' and j.errors -> -1 ->> 'type' = 'Crashed' then
        return format('job %s crashed %s, the last alone in a child process: a poison job', job_id, times);
    end if;
    if crashes < 2 then  -- pgq.job.SUSPECT_AT
        return format('job %s: its process died under it %s', job_id, times)
               || case when j.status in ('completed', 'failed', 'cancelled') then '' else '; it runs as usual' end;
    end if;
    if j.status in ('completed', 'failed', 'cancelled') then
        return format('job %s: its process died under it %s; then it ran alone in a child process', job_id, times);
    end if;
    return format('job %s: its process died under it %s; it runs alone in a child process until it ends',
                  job_id, times);
end
$$;

create function {schema}.explain(job_id bigint) returns text
language sql stable as $$
    select {schema}.explain_hold(job_id) || coalesce(E'\n' || {schema}.explain_crashes(job_id), '')
$$;
"""

DOWNGRADE = r"""
drop function {schema}.explain(bigint);
drop function {schema}.explain_crashes(bigint);
alter function {schema}.explain_hold(bigint) rename to explain;
"""


def upgrade() -> None:
    op.execute(render(UPGRADE))


def downgrade() -> None:
    op.execute(render(DOWNGRADE))
