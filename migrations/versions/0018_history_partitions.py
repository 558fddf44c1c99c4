"""History by partition: job_history becomes a table partitioned by finished_at.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

- ``job_history`` is partitioned by range of ``finished_at``. The sweeper makes the
  partitions ahead of time (``PGQ_HISTORY_PARTITION``: hourly, daily or weekly) and
  retention drops a partition whole once every row in it has expired
  (``maintain_history_partitions()``, docs/operations.md#history-partitions).
- The history from before the upgrade stays where it was: the old table, renamed
  ``job_history_legacy``, becomes the partition of everything finished before the
  first partition's start (the first UTC midnight at least six hours away).
- ``job_history_default`` takes a row no partition covers (the sweeper was down
  past the last partition); retention deletes its rows one by one.
- ``history_partitions``: each partition's range, and once it is closed (an hour after
  its end) the smallest and largest ids in it, so that a lookup by id reads the few
  partitions that can hold it (``find_in_history()``, ``history_between()``) instead of
  every one.
- Each partition has its own primary key ``(id, queue)``; the parent has none, as a
  partitioned table's key would have to include ``finished_at``.

Online: the old table is first given a CHECK ``finished_at < start`` that is
validated outside the migration's transaction (VALIDATE CONSTRAINT takes no lock
that inserts wait for, and the check holds for rows finished until that start), so
that attaching it as a partition reads nothing. The switch itself is catalog work:
finishes wait for it a few milliseconds.

The downgrade copies every row back into one plain table (not online: it reads the
whole history once).
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, in_own_transactions, render, schema_name

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent

#: Outside the migration's transaction: the bound the old history's rows keep, checked
#: by a scan that inserts do not wait for. New rows keep arriving until the switch; the
#: start is hours away so that they all satisfy it.
BOUND = [
    r"""
do $$
declare
    start timestamptz := date_trunc('day', now() + interval '6 hours', 'UTC') + interval '1 day';
begin
    if to_regclass('{schema}.history_partitions') is null and not exists (
        select from pg_constraint
         where conrelid = '{schema}.job_history'::regclass and conname = 'job_history_before_partitions'
    ) then
        execute format('alter table {schema}.job_history add constraint job_history_before_partitions'
                       ' check (finished_at < %L) not valid', start);
    end if;
end
$$;
""",
    r"""
do $$
begin
    if to_regclass('{schema}.history_partitions') is null then
        alter table {schema}.job_history validate constraint job_history_before_partitions;
    end if;
end
$$;
""",
]

SWAP = r"""
alter table {schema}.job_history rename to job_history_legacy;
alter index {schema}.job_history_pkey rename to job_history_legacy_pkey;
alter index {schema}.job_history_finished_idx rename to job_history_legacy_finished_idx;
alter index {schema}.job_history_queue_status_idx rename to job_history_legacy_queue_status_idx;
alter index {schema}.job_history_key_idx rename to job_history_legacy_key_idx;
alter index {schema}.job_history_tags_idx rename to job_history_legacy_tags_idx;
drop trigger job_history_wakes_waiters on {schema}.job_history_legacy;

create table {schema}.job_history (like {schema}.job_history_legacy including defaults)
    partition by range (finished_at);
alter table {schema}.job_history
    add constraint job_history_status_check check (status in ('completed', 'failed', 'cancelled'));

-- Whoever was granted the old table is granted the new one.
do $$
declare
    grant_row record;
begin
    for grant_row in
        select a.privilege_type, a.is_grantable,
               case when a.grantee = 0 then 'public' else a.grantee::regrole::text end as grantee
          from pg_class c, aclexplode(c.relacl) a
         where c.oid = '{schema}.job_history_legacy'::regclass and a.grantee <> c.relowner
    loop
        execute format('grant %s on {schema}.job_history to %s%s', grant_row.privilege_type, grant_row.grantee,
                       case when grant_row.is_grantable then ' with grant option' else '' end);
    end loop;
end
$$;

create table {schema}.history_partitions (
    name   text        primary key,
    -- null: the history from before partitions, everything before its end.
    starts timestamptz,
    ends   timestamptz not null,
    -- The smallest and largest ids in the partition, set an hour after its end, when
    -- no row lands in it any more (only a transaction begun before its end could);
    -- null until then.
    min_id bigint,
    max_id bigint
);

do $$
declare
    start timestamptz := (
        select (regexp_match(pg_get_constraintdef(oid), '''([^'']+)'''))[1]::timestamptz
          from pg_constraint
         where conrelid = '{schema}.job_history_legacy'::regclass and conname = 'job_history_before_partitions'
    );
begin
    execute format('alter table {schema}.job_history attach partition {schema}.job_history_legacy'
                   ' for values from (minvalue) to (%L)', start);
    insert into {schema}.history_partitions (name, starts, ends) values ('job_history_legacy', null, start);
end
$$;

-- Each takes the old table's matching index as its partition instead of building one.
create index job_history_finished_idx on {schema}.job_history (finished_at);
create index job_history_queue_status_idx on {schema}.job_history (queue, status, finished_at);
create index job_history_key_idx on {schema}.job_history (queue, key, finished_at) where key is not null;
create index job_history_tags_idx on {schema}.job_history using gin (tags) where tags is not null;

create table {schema}.job_history_default partition of {schema}.job_history default;
alter table {schema}.job_history_default add primary key (id, queue);

create trigger job_history_wakes_waiters after insert on {schema}.job_history
    for each statement execute function {schema}.wake_waiters();

-- Finished jobs with ids from low to high, read from the partitions that can hold
-- them: those still open, those closed whose ids overlap the range, the default
-- one. A plain "where id between" on job_history would plan, lock and probe
-- every partition. The ids a partition records are a hint: a transaction begun
-- before its end may write into it after it closed (an hour later), which only
-- a transaction open that long does; find_in_history() looks everywhere then.
create function {schema}.history_between(low bigint, high bigint) returns setof {schema}.job_history
language plpgsql stable as $$
declare
    part record;
begin
    for part in
        select name from {schema}.history_partitions
         where (max_id is null and (starts is null or starts <= now()))
            or (min_id <= high and max_id >= low)
    loop
        return query execute format('select * from {schema}.%I where id between $1 and $2', part.name)
            using low, high;
    end loop;
    return query select * from {schema}.job_history_default where id between low and high;
end
$$;

-- A finished job by id (app.get_job, the dashboard's job page, pgq jobs show).
create function {schema}.find_in_history(job_id bigint) returns setof {schema}.job_history
language plpgsql stable as $$
begin
    return query select * from {schema}.history_between(job_id, job_id);
    if not found then
        return query select * from {schema}.job_history where id = job_id;
    end if;
end
$$;

-- Partitions start at `at` instead of where the upgrade put their start (hours
-- ahead): for a new install that wants them now, and for tests and benchmarks
-- that lay out days of partitions in the past. Only before any partition was
-- made, and only if nothing in the history finished at or after `at`.
create function {schema}.begin_history_partitions(at timestamptz) returns void
language plpgsql as $$
begin
    if exists (select from {schema}.history_partitions where starts is not null) then
        raise exception 'pgq: history partitions exist already; they start at %',
            (select min(starts) from {schema}.history_partitions) using errcode = '55000';
    end if;
    -- Later would send rows to the old table past the bound its check holds it to.
    if at > (select ends from {schema}.history_partitions where name = 'job_history_legacy') then
        raise exception 'pgq: history partitions can begin earlier than %, not later',
            (select ends from {schema}.history_partitions where name = 'job_history_legacy') using errcode = '22023';
    end if;
    alter table {schema}.job_history detach partition {schema}.job_history_legacy;
    execute format('alter table {schema}.job_history attach partition {schema}.job_history_legacy'
                   ' for values from (minvalue) to (%L)', at);
    update {schema}.history_partitions set ends = at where name = 'job_history_legacy';
end
$$;

-- One pass of partition upkeep, as the sweeper and app.prune() run it:
-- * record the largest id of each partition that closed an hour ago or more;
-- * make partitions of `period` (hour, day or week; UTC) until `ahead` from now;
-- * drop each partition whose every row finished more than `keep` ago.
-- Each change waits at most `wait` for its lock and is left for the next pass
-- otherwise, so that finishes never queue behind it for long.
-- Returns what it did, the partitions whose rows retention deletes one by one
-- (the default partition, and the history from before partitions while it lasts),
-- and why it could not make or drop a partition if its role may not (refused):
-- rows then go to the default partition and are deleted one by one.
create function {schema}.maintain_history_partitions(period text, ahead interval, keep interval,
                                                     wait interval default '1 second')
returns table (created integer, dropped integer, row_pruned text[], refused text)
language plpgsql as $$
declare
    step interval;
    start timestamptz;
    stop timestamptz;
    latest timestamptz;
    part record;
    part_name text;
begin
    if period not in ('hour', 'day', 'week') then
        raise exception 'pgq: history partition period must be hour, day or week, not %', period
            using errcode = '22023';
    end if;
    step := ('1 ' || period)::interval;
    created := 0;
    dropped := 0;
    -- One upkeep at a time (the sweeper and a `pgq prune`): the second waits, then
    -- finds the partitions the first made.
    perform pg_advisory_xact_lock(hashtext('pgq history partitions {schema}'));
    perform set_config('lock_timeout', (extract(epoch from wait) * 1000)::bigint::text, true);

    for part in
        select name from {schema}.history_partitions
         where max_id is null and ends < now() - interval '1 hour'
    loop
        execute format('update {schema}.history_partitions h set min_id = coalesce(s.low, 0), max_id = coalesce(s.high, 0)'
                       '  from (select min(id) as low, max(id) as high from {schema}.%I) s where h.name = %L',
                       part.name, part.name);
    end loop;

    start := coalesce((select max(ends) from {schema}.history_partitions), date_trunc(period, now(), 'UTC'));
    -- Past the last partition (the sweeper was down), rows went to the default
    -- partition; a partition over them cannot be made, so they stay there (and are
    -- deleted one by one) and partitions start again after the latest.
    latest := (select max(finished_at) from {schema}.job_history_default where finished_at >= start);
    if latest is not null then
        start := date_trunc(period, latest, 'UTC') + step;
    end if;
    while start < now() + ahead loop
        stop := date_trunc(period, start, 'UTC') + step;
        part_name := 'job_history_p' || to_char(start at time zone 'UTC', 'YYYYMMDD"_"HH24MI');
        begin
            execute format('create table {schema}.%I (like {schema}.job_history including defaults including constraints)',
                           part_name);
            execute format('alter table {schema}.%I add primary key (id, queue)', part_name);
            execute format('alter table {schema}.job_history attach partition {schema}.%I for values from (%L) to (%L)',
                           part_name, start, stop);
        exception
            when lock_not_available then
                raise notice 'pgq: partition % not made this pass: its lock was busy', part_name;
                exit;
            when insufficient_privilege then
                refused := concat_ws('; ', refused, format('%s: %s', part_name, sqlerrm));
                exit;
        end;
        insert into {schema}.history_partitions (name, starts, ends) values (part_name, start, stop);
        created := created + 1;
        start := stop;
    end loop;

    for part in
        select name from {schema}.history_partitions where ends <= now() - keep order by ends
    loop
        begin
            execute format('drop table {schema}.%I', part.name);
        exception
            when lock_not_available then
                raise notice 'pgq: partition % not dropped this pass: its lock was busy', part.name;
                exit;
            when insufficient_privilege then
                refused := concat_ws('; ', refused, format('%s: %s', part.name, sqlerrm));
                exit;
        end;
        delete from {schema}.history_partitions where name = part.name;
        dropped := dropped + 1;
    end loop;

    row_pruned := array['job_history_default']
        || array(select name from {schema}.history_partitions where starts is null);
    return next;
end
$$;
"""

DOWNGRADE = r"""
create table {schema}.job_history_plain (like {schema}.job_history including defaults including constraints);
insert into {schema}.job_history_plain select * from {schema}.job_history;
drop view {schema}.all_jobs;
drop function {schema}.history_row({schema}.jobs, text, jsonb, jsonb);
drop function {schema}.maintain_history_partitions(text, interval, interval, interval);
drop function {schema}.find_in_history(bigint);
drop function {schema}.history_between(bigint, bigint);
drop function {schema}.begin_history_partitions(timestamptz);
drop table {schema}.job_history;
drop table {schema}.history_partitions;
alter table {schema}.job_history_plain rename to job_history;
alter table {schema}.job_history add primary key (id, queue);
create index job_history_finished_idx on {schema}.job_history (finished_at);
create index job_history_queue_status_idx on {schema}.job_history (queue, status, finished_at);
create index job_history_key_idx on {schema}.job_history (queue, key, finished_at) where key is not null;
create index job_history_tags_idx on {schema}.job_history using gin (tags) where tags is not null;
create trigger job_history_wakes_waiters after insert on {schema}.job_history
    for each statement execute function {schema}.wake_waiters();
"""

#: Bound to the table by its type (the function) or its oid (the view): made again for the new one.
EARLIER = [
    ("0014_tags_meta.py", "create view {schema}.all_jobs as", "from {schema}.job_history;"),
    ("0014_tags_meta.py", "create or replace function {schema}.history_row(", "\n$$;"),
]


def _earlier() -> str:
    return "\n".join(earlier_sql(HERE / script, start, end) for script, start, end in EARLIER)


def upgrade() -> None:
    in_own_transactions([render(statement) for statement in BOUND])
    # A script's migration lock ended with the commit above (online, the session holds it).
    op.execute(f"select pg_advisory_xact_lock(hashtext('pgq migrate {schema_name()}'))")
    op.execute(
        render(
            "drop view {schema}.all_jobs;\ndrop function {schema}.history_row({schema}.jobs, text, jsonb, jsonb);\n"
            + SWAP
            + _earlier()
        )
    )


def downgrade() -> None:
    op.execute(render(DOWNGRADE + _earlier()))
