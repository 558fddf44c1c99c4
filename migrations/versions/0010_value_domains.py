"""The rules on a live job's single values become domains: checked where a value
is written, not at every update of the row.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

PostgreSQL checks every CHECK constraint of a table at every UPDATE, whichever
columns it sets, and before the first row of each statement it rebuilds the
expressions of all of them from their stored text. ``jobs`` had twelve, so every
claim (which sets status, attempts, worker_id and started_at), every heartbeat
and progress write paid for reading and planning all twelve again: about 11,000
characters of expression trees, 40-80 us of server time per statement (timed on
PostgreSQL 15, one statement after another, each its own transaction: an UPDATE
of one row 116-133 us with them, 73-81 us without). A one-job insert paid
the same (92-122 us against 48-60 us).

A domain's rule is checked when a value is converted to the domain: by an
INSERT, a COPY, or an UPDATE that sets that column. Its expression is planned
once per session and kept (the type cache), so a statement pays only for the
columns it writes. The same rules, under the same names (a violation is still a
``check_violation`` whose constraint name is ``jobs_queue_name_rule`` and so on,
which ``pgq.enqueue()`` and pgq's Python errors read), on these columns:

- ``queue_name`` (queue): ``jobs_queue_name``, ``jobs_queue_name_rule``;
- ``task_name`` (task): ``jobs_task_name``;
- ``job_key`` (key): ``jobs_key_length``; ``group_name`` (group_key):
  ``jobs_group_key_length``;
- ``job_args`` (args): ``jobs_args_object``; ``job_errors`` (errors):
  ``jobs_errors_array``;
- ``live_status`` (status): ``jobs_status_check``; ``job_progress`` (progress):
  ``jobs_progress_check``;
- ``attempt_count`` (attempts) and ``attempt_limit`` (max_attempts):
  ``jobs_attempts_check``;
- ``parent_failure`` (on_parent_failure): ``jobs_on_parent_failure_check``.

``jobs_max_attempts_limit`` compares two columns and stays a table CHECK.
``job_history`` keeps its one check: its rows are inserted once.

Readers see the base types (PostgreSQL describes a domain's column by its base
type), so nothing changes for clients. The columns change type without a rewrite:
the domains are created empty, the columns converted (binary-compatible, indexes
kept), and the rules added after, which checks the existing rows with one scan.
The view ``all_jobs`` depends on the columns; it is replaced by a placeholder of
the same shape for the change and restored, so grants on it are kept.
``claim_jobs()`` declares its result columns with base types, and a function's
RETURN QUERY must match them exactly: it casts. ``explain_crashes()`` reads a job
into one record from ``jobs`` or from ``job_history``: a plan kept by the session
for the first would refuse the other's types, so it reads ``jobs`` with casts.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from pgq.migrate_support import earlier_sql, render

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

HERE = Path(__file__).resolve().parent

# (column, domain, base type, [(constraint, check on value)])
DOMAINS = [
    (
        "queue",
        "queue_name",
        "text",
        [
            ("jobs_queue_name", "length(value) between 1 and 128"),
            # Listed, not ranged: a range or [[:alnum:]] would follow the database's collation.
            (
                "jobs_queue_name_rule",
                "value !~ '[^ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-]'",
            ),
        ],
    ),
    ("task", "task_name", "text", [("jobs_task_name", "length(value) between 1 and 255")]),
    ("key", "job_key", "text", [("jobs_key_length", "length(value) between 1 and 255")]),
    ("group_key", "group_name", "text", [("jobs_group_key_length", "length(value) between 1 and 255")]),
    ("args", "job_args", "jsonb", [("jobs_args_object", "jsonb_typeof(value) = 'object'")]),
    ("errors", "job_errors", "jsonb", [("jobs_errors_array", "jsonb_typeof(value) = 'array'")]),
    ("status", "live_status", "text", [("jobs_status_check", "value in ('pending', 'running', 'blocked')")]),
    ("progress", "job_progress", "double precision", [("jobs_progress_check", "value >= 0 and value <= 1")]),
    ("attempts", "attempt_count", "integer", [("jobs_attempts_check", "value >= 0")]),
    ("max_attempts", "attempt_limit", "integer", [("jobs_attempts_check", "value >= 1")]),
    ("on_parent_failure", "parent_failure", "text", [("jobs_on_parent_failure_check", "value in ('cancel', 'run')")]),
]

# The table checks these replace, as migrations 0001, 0004 and 0007 made them.
TABLE_CHECKS = [
    ("jobs_status_check", "status in ('pending', 'running', 'blocked')"),
    ("jobs_args_object", "jsonb_typeof(args) = 'object'"),
    ("jobs_errors_array", "jsonb_typeof(errors) = 'array'"),
    ("jobs_attempts_check", "attempts >= 0 and max_attempts >= 1"),
    ("jobs_progress_check", "progress is null or (progress >= 0 and progress <= 1)"),
    ("jobs_queue_name", "length(queue) between 1 and 128"),
    ("jobs_task_name", "length(task) between 1 and 255"),
    ("jobs_on_parent_failure_check", "on_parent_failure in ('cancel', 'run')"),
    ("jobs_queue_name_rule", "queue !~ '[^ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-]'"),
    ("jobs_key_length", "length(key) between 1 and 255"),
    ("jobs_group_key_length", "length(group_key) between 1 and 255"),
]

# all_jobs with the columns it has, each null of its type: nothing of jobs left in it.
PLACEHOLDER_VIEW = """
do $$
begin
    execute (
        select 'create or replace view {schema}.all_jobs as select '
               || string_agg(format('null::%s as %I', format_type(a.atttypid, a.atttypmod), a.attname),
                             ', ' order by a.attnum)
          from pg_attribute a
         where a.attrelid = '{schema}.all_jobs'::regclass and a.attnum > 0 and not a.attisdropped);
end
$$;
"""

VIEW_0004 = ("create or replace view {schema}.all_jobs as", "from {schema}.job_history;")
CLAIM_0006 = ("create function {schema}.claim_jobs(", "$$;")
EXPLAIN_CRASHES_0008 = ("create function {schema}.explain_crashes(", "$$;")


def _upgrade_sql() -> str:
    parts = [PLACEHOLDER_VIEW]
    parts.append(
        "alter table {schema}.jobs\n" + ",\n".join(f"    drop constraint {name}" for name, _ in TABLE_CHECKS) + ";"
    )
    parts += [f"create domain {{schema}}.{domain} as {base};" for _, domain, base, _ in DOMAINS]
    parts.append(
        "alter table {schema}.jobs\n"
        + ",\n".join(f"    alter column {column} type {{schema}}.{domain}" for column, domain, _, _ in DOMAINS)
        + ";"
    )
    for _, domain, _, rules in DOMAINS:
        parts += [f"alter domain {{schema}}.{domain} add constraint {name} check ({rule});" for name, rule in rules]
    parts.append(earlier_sql(HERE / "0004_dependencies.py", *VIEW_0004))
    claim = earlier_sql(HERE / "0006_finish_function.py", *CLAIM_0006)
    returned = (
        "returning j.id, j.queue, j.task, j.args, j.priority, j.attempts, j.max_attempts, j.run_at, j.created_at,\n"
        "                  j.started_at, j.key, j.group_key, j.timeout, j.backoff, j.depends_on, j.on_parent_failure,\n"
        "                  nullif(j.errors, cast('[]' as jsonb)) as errors"
    )
    cast = (
        "-- The columns' base types: RETURN QUERY takes no domain where text is declared.\n"
        "        returning j.id, cast(j.queue as text), cast(j.task as text), cast(j.args as jsonb), j.priority,\n"
        "                  cast(j.attempts as integer), cast(j.max_attempts as integer), j.run_at, j.created_at,\n"
        "                  j.started_at, cast(j.key as text), cast(j.group_key as text), j.timeout, j.backoff,\n"
        "                  j.depends_on, cast(j.on_parent_failure as text),\n"
        "                  nullif(cast(j.errors as jsonb), cast('[]' as jsonb)) as errors"
    )
    assert returned in claim, "claim_jobs() of 0006 changed shape"
    parts.append(claim.replace(returned, cast))
    explain = earlier_sql(HERE / "0008_explain_crashes.py", *EXPLAIN_CRASHES_0008)
    live = "select status, errors into j from {schema}.jobs where id = job_id;"
    assert live in explain, "explain_crashes() of 0008 changed shape"
    parts.append(
        explain.replace(
            live, "select cast(status as text), cast(errors as jsonb) into j from {schema}.jobs where id = job_id;"
        )
    )
    return "\n".join(parts)


def _downgrade_sql() -> str:
    parts = [PLACEHOLDER_VIEW]
    parts.append(
        "alter table {schema}.jobs\n"
        + ",\n".join(f"    alter column {column} type {base}" for column, _, base, _ in DOMAINS)
        + ";"
    )
    parts += [f"drop domain {{schema}}.{domain};" for _, domain, _, _ in DOMAINS]
    parts.append(
        "alter table {schema}.jobs\n"
        + ",\n".join(f"    add constraint {name} check ({rule})" for name, rule in TABLE_CHECKS)
        + ";"
    )
    parts.append(earlier_sql(HERE / "0004_dependencies.py", *VIEW_0004))
    parts.append(earlier_sql(HERE / "0006_finish_function.py", *CLAIM_0006))
    parts.append(earlier_sql(HERE / "0008_explain_crashes.py", *EXPLAIN_CRASHES_0008))
    return "\n".join(parts)


def upgrade() -> None:
    op.execute(render(_upgrade_sql()))


def downgrade() -> None:
    op.execute(render(_downgrade_sql()))
