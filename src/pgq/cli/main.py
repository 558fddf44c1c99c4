"""The ``pgq`` command's parser, and its commands other than the operator's (:mod:`pgq.cli.ops`).

Every command reads the ``PGQ_*`` environment (``PGQ_DATABASE_URL``,
``PGQ_SCHEMA``, ``PGQ_DATA_DIR``, ...) and accepts ``--database-url`` and
``--schema`` to override it. Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pgq.app import App
from pgq.cli import ops
from pgq.cli.args import (
    add_actions,
    add_group,
    common_options,
    non_negative_float,
    open_app,
    port_number,
    positive_float,
    positive_int,
    print_listing,
    queue_list,
)
from pgq.cli.ops import job_id_arg
from pgq.db.urls import redact
from pgq.encryption import key_id
from pgq.errors import ConfigurationError, PgqError
from pgq.job import STATUSES
from pgq.output import job_detail, jobs_table, progress, schedules_table, to_json, when
from pgq.redaction import Redactor, redact_job, redact_schedule
from pgq.settings import load_settings

ENVIRONMENT_HELP = """\
environment:
  PGQ_DATABASE_URL  PostgreSQL URL; unset: an embedded PostgreSQL in PGQ_DATA_DIR
  PGQ_SCHEMA        schema of pgq's tables (default pgq)
  PGQ_DATA_DIR      folder of the embedded PostgreSQL (default ./.pgq)
  PGQ_MAX_PAYLOAD_BYTES  largest args JSON (default 1048576)
  see docs/configuration.md for every PGQ_ variable
"""


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="pgq",
        description="pgq: a job queue that lives entirely in PostgreSQL.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pgq {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    migrate = commands.add_parser(
        "migrate",
        parents=[common],
        help="create or upgrade pgq's schema",
        description="Upgrade pgq's schema to the newest revision (safe to run from several processes).",
    )
    migrate.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    migrate.add_argument("--revision", default="head", help="target revision (default head)")
    migrate.add_argument(
        "--downgrade", metavar="REVISION", help="downgrade to REVISION instead ('base' drops every pgq table)"
    )
    migrate.set_defaults(handler=cmd_migrate)

    enqueue = commands.add_parser(
        "enqueue",
        parents=[common],
        help="enqueue one job",
        description="Enqueue one job of TASK with JSON keyword arguments.",
    )
    enqueue.add_argument("task", help="name of the task, e.g. send_email")
    enqueue.add_argument("--args", default="{}", help="JSON object, e.g. '{\"user_id\": 7}'")
    enqueue.add_argument("--queue")
    enqueue.add_argument("--priority", type=int)
    enqueue.add_argument("--delay", type=float, help="seconds from now")
    enqueue.add_argument("--run-at", help="ISO 8601 time with a zone, e.g. 2026-12-01T09:00:00+00:00")
    enqueue.add_argument("--key", help="idempotency key")
    enqueue.add_argument("--group", help="flow-control group, e.g. tenant:42 (see pgq queues set)")
    enqueue.add_argument("--max-attempts", type=int)
    enqueue.add_argument("--depends-on", metavar="IDS", help="comma-separated ids of jobs to wait for, e.g. 12,13")
    enqueue.add_argument(
        "--on-parent-failure", choices=["cancel", "run"], help="what a failed parent does to it (default cancel)"
    )
    enqueue.add_argument("--unique-for", type=float, metavar="SECONDS", help="with --key: keep the key this long")
    enqueue.add_argument("--debounce", type=float, metavar="SECONDS", help="with --key: push the pending job back")
    enqueue.add_argument(
        "--tag", action="append", dest="tags", metavar="TAG", help="a label to find the job by; repeat for more"
    )
    enqueue.add_argument("--meta", metavar="JSON", help='a JSON object of your own, e.g. \'{"source": "cli"}\'')
    enqueue.set_defaults(handler=cmd_enqueue)

    job_commands = add_group(commands, "jobs", "list, inspect, retry, cancel, promote and delete jobs")
    listing = job_commands.add_parser("list", parents=[common], help="list jobs, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--queue")
    listing.add_argument("--task")
    listing.add_argument("--key")
    listing.add_argument("--tag", help="only jobs with this tag")
    listing.add_argument(
        "--args", metavar="JSON", help="only jobs whose args contain this JSON object, e.g. '{\"user_id\": 7}'"
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--before-id", type=int, help="show jobs older than this id (next page)")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    listing.set_defaults(handler=cmd_jobs_list)
    show = _add_one_job_command(job_commands, common, "show", cmd_jobs_show, help="one job with its errors")
    show.add_argument("--json", action="store_true", help="the job as JSON")
    waiting = _add_one_job_command(
        job_commands,
        common,
        "wait",
        cmd_jobs_wait,
        help="wait for a job to end and show it",
        description="Wait until the job ends, then show it. Exit status: 0 completed, 1 failed or cancelled, "
        "3 still live when the timeout passed.",
    )
    waiting.add_argument("--timeout", type=non_negative_float, help="give up after this many seconds (default: never)")
    waiting.add_argument("--json", action="store_true", help="the job as JSON")
    update = _add_one_job_command(
        job_commands,
        common,
        "update",
        cmd_jobs_update,
        help="change a waiting job",
        description="Change a pending, delayed or blocked job in place (app.update_job): only the options given "
        "change. A running or finished job is refused: cancel it and enqueue another.",
    )
    update.add_argument("--args", metavar="JSON", help="new args, a JSON object (replaces them whole)")
    update.add_argument("--priority", type=int, help="higher runs first")
    update.add_argument("--run-at", help="ISO 8601 time with a zone, e.g. 2026-12-01T09:00:00+00:00")
    update.add_argument("--delay", type=float, help="run this many seconds from now (0: now)")
    update.add_argument("--max-attempts", type=int, help="not below the attempts already made")
    update.add_argument("--tag", action="append", dest="tags", metavar="TAG", help="its tags become these; repeat")
    update.add_argument("--no-tags", action="store_true", help="remove its tags")
    update.add_argument("--meta", metavar="JSON", help="new meta, a JSON object")
    update.add_argument("--no-meta", action="store_true", help="remove its meta")
    update.add_argument("--json", action="store_true", help="the job as JSON")

    ops.add_job_actions(job_commands, common)

    worker = commands.add_parser(
        "worker",
        parents=[common],
        help="run jobs",
        description="Claim and run jobs of APP's tasks until SIGTERM/SIGINT (a second signal stops at once).",
        epilog=ENVIRONMENT_HELP + WORKER_ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("app", metavar="APP", help="module:attribute of your pgq.App, e.g. myapp.tasks:app")
    worker.add_argument("--queues", type=queue_list, help="comma-separated queues (default PGQ_QUEUES or 'default')")
    worker.add_argument("--concurrency", type=positive_int, help="jobs run at once per process (default 10)")
    worker.add_argument("--processes", type=positive_int, default=1, help="worker processes (default 1)")
    worker.add_argument(
        "--shutdown-timeout",
        type=non_negative_float,
        metavar="SECONDS",
        help="time running jobs get to finish on SIGTERM (default 30)",
    )
    worker.add_argument("--poll-interval", type=positive_float, metavar="SECONDS", help="default 2")
    worker.add_argument("--name", help="worker name shown in pgq.workers (default host:pid)")
    worker.add_argument("--log-format", choices=("text", "json"), help="default text")
    worker.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    worker.add_argument("--no-scheduler", action="store_true", help="do not run cron schedules in this worker")
    worker.add_argument(
        "--no-sweeper", action="store_true", help="never act as the sweeper (rescue, retention, metrics)"
    )
    worker.add_argument(
        "--metrics-port",
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics of this worker (all addresses unless HOST; needs pgq-jobs[web])",
    )
    worker.set_defaults(handler=cmd_worker)

    ops.add_commands(commands, common)

    schedule_commands = add_group(commands, "schedules", "cron schedules")
    add = schedule_commands.add_parser(
        "add",
        parents=[common],
        help="create or replace a schedule",
        description="Create or replace a run-time schedule. CRON has five fields, or six with seconds first.",
    )
    add.add_argument("name", help="the schedule's name, unique")
    add.add_argument("--cron", required=True, help="e.g. '*/5 * * * *' or '*/10 * * * * *'")
    add.add_argument("--task", required=True)
    add.add_argument("--args", default="{}", help="JSON object of keyword arguments")
    add.add_argument("--timezone", default="UTC", help="IANA name, default UTC")
    add.add_argument("--queue")
    add.add_argument("--priority", type=int)
    add.add_argument("--max-attempts", type=positive_int)
    add.add_argument(
        "--catch-up",
        choices=("once", "all", "none"),
        default="once",
        help="after downtime: one job (once), one per missed tick (all), or none",
    )
    add.add_argument("--disabled", action="store_true", help="create it disabled")
    add.set_defaults(handler=cmd_schedules_add)
    listing = schedule_commands.add_parser("list", parents=[common], help="every schedule")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_schedules_list)
    add_actions(
        schedule_commands,
        common,
        (
            ("remove", "delete a schedule (one declared in code returns at the next worker start)"),
            ("enable", "enable a schedule from its next tick"),
            ("disable", "disable a schedule"),
            ("trigger", "enqueue the schedule's job now"),
        ),
        cmd_schedule_action,
        target="name",
        target_help="the schedule's name (pgq schedules list)",
    )

    prune = commands.add_parser(
        "prune",
        parents=[common],
        help="delete finished jobs past retention now",
        description="Delete finished jobs older than PGQ_RETENTION (per status: PGQ_RETENTION_COMPLETED, "
        "PGQ_RETENTION_FAILED, PGQ_RETENTION_CANCELLED), worker rows stopped over a day ago and old metrics.",
    )
    prune.set_defaults(handler=cmd_prune)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="enqueue a few example jobs and list them",
        description="Migrate the database (embedded by default), enqueue example jobs and list them.",
    )
    demo.set_defaults(handler=cmd_demo)

    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="measure pgq on this database",
        description="Run pgq's benchmark scenarios in a throwaway schema (pgq_bench, dropped afterwards).",
    )
    bench.add_argument("--jobs", type=positive_int, default=100_000, help="jobs per drain scenario (default 100000)")
    bench.add_argument("--concurrency", type=positive_int, default=10, help="worker concurrency (default 10)")
    bench.add_argument("--processes", type=positive_int, default=2, help="worker processes for the multi-process drain")
    bench.add_argument("--json", metavar="FILE", help="write every figure, with server settings and machine, to FILE")
    bench.add_argument(
        "--quick",
        action="store_true",
        help="5,000 jobs, 3 s of load and 20,000 ageing rows: a rough figure in a minute or two",
    )
    bench.set_defaults(handler=cmd_bench)

    db = commands.add_parser("db", parents=[common], help="print the database URL pgq uses")
    db.add_argument("--show-password", action="store_true")
    db.set_defaults(handler=cmd_db)
    _add_dashboard_command(commands, common)
    _add_embedded_command(commands)
    key_commands = add_group(commands, "keys", "encryption keys of encrypt=True tasks")
    rotate = key_commands.add_parser(
        "rotate",
        parents=[common],
        help="re-encrypt live jobs' args with the first key of PGQ_ENCRYPTION_KEYS",
        description="Re-encrypt, with the first key of PGQ_ENCRYPTION_KEYS, the args of live jobs and schedules "
        "encrypted with another key of the list. Finished jobs keep theirs: keep the old keys while history "
        "holds them. See docs/enqueueing.md#encrypted-args.",
    )
    rotate.set_defaults(handler=cmd_keys_rotate)
    return parser


def _add_one_job_command(
    job_commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    **parser_args: Any,
) -> argparse.ArgumentParser:
    """``pgq jobs NAME ID``; returns the command, to add its own options to. Each ends with
    --json, added by the caller so that it stays last in the command's help."""
    one = job_commands.add_parser(name, parents=[common], **parser_args)
    one.add_argument("id", metavar="ID", help="the job's id")
    one.set_defaults(handler=handler)
    return one


def _add_dashboard_command(commands: Any, common: argparse.ArgumentParser) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        parents=[common],
        help="serve the web dashboard and REST API",
        description="Serve the web dashboard, its REST API (/api) and Prometheus metrics (/metrics). "
        "Needs the web extra: pip install 'pgq-jobs[web]'.",
        epilog="PGQ_DASHBOARD_TOKEN guards it (required on any address but 127.0.0.1);\n"
        "PGQ_REDACT_KEYS names the arg keys it masks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dashboard.add_argument("--port", type=port_number, default=8080, help="1-65535, default 8080")
    dashboard.add_argument("--read-only", action="store_true", help="hide and refuse every action")
    dashboard.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="with --read-only: serve on a non-local address without a token",
    )
    dashboard.set_defaults(handler=cmd_dashboard)


def _serve_worker_metrics(app: App, options: argparse.Namespace) -> None:
    if options.processes > 1:
        raise ConfigurationError(
            "--metrics-port serves one process: start one `pgq worker --metrics-port` per process, "
            "each on its own port, instead of --processes"
        )
    try:
        from pgq.worker.prometheus import serve_worker_metrics
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"--metrics-port needs {exc.name}: pip install 'pgq-jobs[metrics]'") from None
    from pgq.worker.worker import default_concurrency

    slots = options.concurrency or app.settings.concurrency or default_concurrency(app.tasks)
    serve_worker_metrics(app, options.metrics_port, slots)


def _add_embedded_command(commands: Any) -> None:
    actions = add_group(
        commands,
        "embedded",
        "see or stop the embedded PostgreSQL",
        description="The embedded PostgreSQL that pgq starts when PGQ_DATABASE_URL is not set: it lives in "
        "PGQ_DATA_DIR/pg and stops when the last process using it exits. See docs/getting-started.md.",
    )
    for action, help_text in (
        ("status", "is it running, its pid and URL, and the processes using it"),
        ("stop", "stop it (refused while processes use it, unless --force)"),
    ):
        one = actions.add_parser(action, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        one.add_argument("--data-dir", help="its folder (default PGQ_DATA_DIR, else ./.pgq)")
        if action == "status":
            one.add_argument("--json", action="store_true", help="the status as JSON")
        else:
            one.add_argument("--force", action="store_true", help="stop it even while processes use it")
        one.set_defaults(handler=cmd_embedded, action=action)


def cmd_keys_rotate(options: argparse.Namespace) -> int:
    with open_app(options) as app:
        counts = app.rotate_keys()
        current = key_id(app.encryption_keys[0])
    print(f"re-encrypted with key {current}: {counts['jobs']} live jobs, {counts['schedules']} schedules")
    if counts["unreadable"]:
        print(
            f"pgq: {counts['unreadable']} envelopes open with no key of PGQ_ENCRYPTION_KEYS: left as they are",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_embedded(options: argparse.Namespace) -> int:
    from pgq.db.embedded_life import embedded_status, stop_embedded
    from pgq.output import embedded_text

    settings = load_settings(data_dir=options.data_dir)
    if options.action == "stop":
        before = embedded_status(settings.data_dir)
        after = stop_embedded(settings.data_dir, force=options.force)
        verb = "stopped" if before.running else "is not running"
        print(f"the embedded PostgreSQL in {after.pgdata} {verb}")
        return 0
    status = embedded_status(settings.data_dir)
    if options.json:
        print(to_json(status))
    else:
        print(embedded_text(status, uses_url=settings.database_url is not None))
    return 0


def cmd_dashboard(options: argparse.Namespace) -> int:
    try:
        from pgq.web.server import serve
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"pgq dashboard needs {exc.name}: pip install 'pgq-jobs[web]'") from None
    return serve(
        open_app(options),
        host=options.host,
        port=options.port,
        read_only=options.read_only,
        insecure_no_auth=options.insecure_no_auth,
    )


WORKER_ENVIRONMENT_HELP = """\
  PGQ_QUEUES, PGQ_CONCURRENCY, PGQ_POLL_INTERVAL, PGQ_HEARTBEAT_INTERVAL, PGQ_SHUTDOWN_TIMEOUT,
  PGQ_LOG_FORMAT: defaults of the flags above
"""


def _version() -> str:
    from pgq import __version__

    return __version__


def cmd_migrate(options: argparse.Namespace) -> int:
    from pgq.migrate import downgrade, migrate, migration_sql

    if options.sql:
        schema = options.schema or load_settings().schema_name
        sys.stdout.write(migration_sql(schema=schema, revision=options.revision))
        return 0
    app = open_app(options)
    if options.downgrade:
        with progress(f"downgrading schema {app.schema} to {options.downgrade}"):
            downgrade(app.url, schema=app.schema, revision=options.downgrade)
        print(f"pgq schema {app.schema!r} downgraded to {options.downgrade}")
    else:
        # A revision that rewrites a large jobs table takes a while: say that it runs.
        with progress(f"migrating schema {app.schema} to {options.revision}"):
            migrate(app.url, schema=app.schema, revision=options.revision)
        print(f"pgq schema {app.schema!r} is at {options.revision}")
    return 0


def cmd_enqueue(options: argparse.Namespace) -> int:
    args = _json_object(options.args, "--args")
    run_at = _run_at(options.run_at) if options.run_at else None
    with open_app(options) as app:
        job_id = app.enqueue(
            options.task,
            args,
            queue=options.queue,
            priority=options.priority,
            run_at=run_at,
            delay=options.delay,
            key=options.key,
            max_attempts=options.max_attempts,
            group=options.group,
            depends_on=_job_ids(options.depends_on, "--depends-on"),
            on_parent_failure=options.on_parent_failure,
            unique_for=options.unique_for,
            debounce=options.debounce,
            tags=options.tags,
            meta=None if options.meta is None else _json_object(options.meta, "--meta"),
        )
    print(job_id)
    return 0


def _job_ids(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigurationError(f"{flag} takes comma-separated job ids, e.g. 12,13; got {text!r}") from None


def cmd_jobs_list(options: argparse.Namespace) -> int:
    with open_app(options) as app:
        jobs = app.list_jobs(
            status=options.status,
            queue=options.queue,
            task=options.task,
            key=options.key,
            tag=options.tag,
            args=None if options.args is None else _json_object(options.args, "--args"),
            limit=options.limit,
            before_id=options.before_id,
        )
        redact = Redactor(app.settings.redact_keys)
    print_listing([redact_job(job, redact) for job in jobs], options.json, "no jobs", jobs_table)
    return 0


def cmd_jobs_show(options: argparse.Namespace) -> int:

    job_id = job_id_arg(options.id)
    with open_app(options) as app:
        job = app.get_job(job_id)
        logs = app.job_logs(job_id) if job is not None and not options.json else []
        redact = Redactor(app.settings.redact_keys)
    if job is None:
        raise PgqError(f"no job with id {job_id} (live or in history)")
    job = redact_job(job, redact)  # the dashboard's and the API's redaction, for args and result
    print(to_json(job) if options.json else job_detail(job, logs))
    return 0


def cmd_jobs_update(options: argparse.Namespace) -> int:

    job_id = job_id_arg(options.id)
    if options.tags and options.no_tags:
        raise ConfigurationError("give --tag or --no-tags, not both")
    if options.meta is not None and options.no_meta:
        raise ConfigurationError("give --meta or --no-meta, not both")
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("priority", options.priority),
            ("delay", options.delay),
            ("max_attempts", options.max_attempts),
            ("tags", options.tags),
        )
        if value is not None
    }
    if options.args is not None:
        changes["args"] = _json_object(options.args, "--args")
    if options.run_at is not None:
        changes["run_at"] = _run_at(options.run_at)
    if options.meta is not None:
        changes["meta"] = _json_object(options.meta, "--meta")
    if options.no_tags:
        changes["tags"] = None
    if options.no_meta:
        changes["meta"] = None
    with open_app(options) as app:
        job = app.update_job(job_id, **changes)
        redact = Redactor(app.settings.redact_keys)
    job = redact_job(job, redact)
    print(to_json(job) if options.json else job_detail(job))
    return 0


def cmd_jobs_wait(options: argparse.Namespace) -> int:

    job_id = job_id_arg(options.id)
    with open_app(options) as app:
        try:
            job = app.wait(job_id, timeout=options.timeout)
        except TimeoutError as exc:
            print(f"pgq: {exc}", file=sys.stderr)
            return 3
        redact = Redactor(app.settings.redact_keys)
    job = redact_job(job, redact)
    print(to_json(job) if options.json else job_detail(job))
    return 0 if job.status == "completed" else 1


def cmd_worker(options: argparse.Namespace) -> int:
    from pgq import logs
    from pgq.loader import load_app

    app = load_app(options.app)
    app.configure(database_url=options.database_url, schema=options.schema, log_format=options.log_format)
    logs.configure(app.settings.log_format, getattr(logging, options.log_level))
    if options.metrics_port:
        _serve_worker_metrics(app, options)
    if options.processes > 1:
        from pgq.worker.supervisor import supervise

        return supervise(_child_args(options), options.processes)
    worker = app.run_worker(
        queues=options.queues,
        concurrency=options.concurrency,
        name=options.name,
        poll_interval=options.poll_interval,
        shutdown_timeout=options.shutdown_timeout,
        scheduler=not options.no_scheduler,
        sweeper=not options.no_sweeper,
    )
    stuck = worker.executor.stuck_threads()
    if stuck:
        # Python would wait for those threads at exit, maybe forever: their jobs
        # were left to the sweeper, so leave without them.
        logging.getLogger("pgq.worker").warning("exiting with %d handler threads still running", stuck)
        logging.shutdown()
        os._exit(0)
    return 0


def _child_args(options: argparse.Namespace) -> list[str]:
    args = ["worker", options.app, "--processes", "1", "--log-level", options.log_level]
    for flag, value in (
        ("--queues", ",".join(options.queues) if options.queues else None),
        ("--concurrency", options.concurrency),
        ("--shutdown-timeout", options.shutdown_timeout),
        ("--poll-interval", options.poll_interval),
        ("--log-format", options.log_format),
        ("--database-url", options.database_url),
        ("--schema", options.schema),
    ):
        if value is not None:
            args += [flag, str(value)]
    args += [
        flag for flag, on in (("--no-scheduler", options.no_scheduler), ("--no-sweeper", options.no_sweeper)) if on
    ]
    return args


def _run_at(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"--run-at {text!r} is not an ISO 8601 time; e.g. 2026-12-01T09:00:00+00:00") from None


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{flag} is not valid JSON ({exc}); e.g. {flag} '{{\"user_id\": 7}}'") from None
    except RecursionError:
        raise ConfigurationError(
            f"{flag} nests deeper than JSON parsing allows; job args nest at most 100 levels deep"
        ) from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{flag} must be a JSON object of keyword arguments, got {text}")
    return value


def cmd_schedules_add(options: argparse.Namespace) -> int:
    args = _json_object(options.args, "--args")
    with open_app(options) as app:
        schedule = app.add_schedule(
            options.name,
            options.cron,
            options.task,
            args,
            timezone=options.timezone,
            queue=options.queue,
            priority=options.priority,
            max_attempts=options.max_attempts,
            catch_up=options.catch_up,
            enabled=not options.disabled,
        )
    print(f"schedule {schedule.name}: {schedule.cron} ({schedule.timezone}), next run {when(schedule.next_run_at)}")
    return 0


def cmd_schedules_list(options: argparse.Namespace) -> int:
    with open_app(options) as app:
        redact = Redactor(app.settings.redact_keys)
        schedules = [redact_schedule(s, redact) for s in app.list_schedules()]
    print_listing(schedules, options.json, "no schedules", schedules_table)
    return 0


def cmd_schedule_action(options: argparse.Namespace) -> int:
    with open_app(options) as app:
        if options.action == "remove":
            app.remove_schedule(options.name)
            print(f"schedule {options.name} removed")
        elif options.action == "trigger":
            print(app.trigger_schedule(options.name))
        else:
            schedule = app.enable_schedule(options.name, enabled=options.action == "enable")
            state = "enabled" if schedule.enabled else "disabled"
            print(f"schedule {schedule.name} {state}; next run {when(schedule.next_run_at)}")
    return 0


def cmd_prune(options: argparse.Namespace) -> int:
    with open_app(options) as app, progress("deleting finished jobs past retention") as bar:
        counts = app.prune(lambda deleted: bar.advance(bar.task_ids[0], float(deleted)))
    print(", ".join(f"{name}: {count}" for name, count in counts.items()))
    return 0


def cmd_demo(options: argparse.Namespace) -> int:
    from pgq.demo import run_demo

    with open_app(options) as app:
        return run_demo(app)


def cmd_bench(options: argparse.Namespace) -> int:
    from pgq.bench import BenchOptions, run_bench
    from pgq.bench.runner import SECTIONS, format_table

    if options.schema:
        raise ConfigurationError("pgq bench always runs in its own schema pgq_bench; drop --schema")
    bench_options = BenchOptions(
        database_url=options.database_url,
        jobs=options.jobs,
        concurrency=options.concurrency,
        processes=options.processes,
        json_file=options.json,
    )
    if options.quick:
        bench_options.jobs = min(options.jobs, 5_000)
        bench_options.load_seconds = 3.0
        bench_options.ageing_rows = 20_000
    with progress("pgq bench", total=len(SECTIONS)) as bar:
        task = bar.task_ids[0]

        def report_line(line: str) -> None:
            if line.endswith(" ..."):  # a scenario starts
                bar.update(task, description=line[:-4])
                bar.advance(task)
            bar.console.print(line)

        if sys.stderr.isatty():
            bench_options.progress = report_line
        report = run_bench(bench_options)
    print(format_table(report))
    return 0


def cmd_db(options: argparse.Namespace) -> int:
    app = open_app(options)
    print(app.url if options.show_password else redact(app.url))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    options = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = options.handler
    try:
        return handler(options)
    except PgqError as exc:
        print(f"pgq: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`pgq jobs list --json | head`): what it wanted it has. Python
        # would report the pipe again while flushing stdout at exit: point stdout elsewhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
