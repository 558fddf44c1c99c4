"""The operator's commands of ``pgq``: act on jobs, pause queues, list workers, stats.

``pgq jobs retry|cancel|promote|delete``, ``pgq queues list|pause|resume``,
``pgq workers list`` and ``pgq stats``, each a thin layer over a method of
:class:`pgq.operations.OperationControls`. Registered by :func:`pgq.cli.build_parser`.

Errors are one line on stderr (``pgq: error: ...``) and exit code 2. Given
several ids, a command acts on every valid one, prints one error line per
failure and exits 2 if there was any.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from pgq.app import App
from pgq.bulk import BulkResult, JobFilter, run_bulk
from pgq.cli.args import add_actions, add_group, add_listing, open_app, positive_float
from pgq.errors import ConfigurationError, DatabaseUnavailable, InvalidState, JobNotFound
from pgq.operations import STATS_WINDOW, QueueStats
from pgq.output import (
    explain_reasons,
    progress,
    queues_table,
    replica_text,
    stats_table,
    to_json,
    workers_table,
)

CLEAR_SCREEN = "\x1b[H\x1b[2J"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def window(text: str) -> float:
    """A window: seconds, or a number with s, m, h or d (``90``, ``15m``, ``24h``, ``7d``)."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 3600, 15m, 24h or 7d, got {text!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


FILTER_HELP = (
    "Instead of ids, a filter acts on every job it matches (not just a page), in batches: "
    "--status, --queue, --task, --key, --tag, --args; --all for every job. --dry-run only counts them."
)


def add_job_actions(
    job_commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """``pgq jobs retry|cancel|promote|delete|priority``."""
    retry = job_commands.add_parser(
        "retry",
        parents=[common],
        help="put failed or cancelled jobs back in their queue, to run now",
        description="Retry jobs by id (failed or cancelled ones), or every failed job with --failed, or every "
        "failed or cancelled job a filter matches. Same ids; a job that used all its attempts gets one more. "
        + FILTER_HELP,
    )
    retry.add_argument("ids", nargs="*", metavar="ID", help="ids of failed or cancelled jobs")
    retry.add_argument("--failed", action="store_true", help="every failed job (the dead-letter set): --status failed")
    _filter_options(retry, confirm=False)
    retry.set_defaults(handler=cmd_job_action, action="retry")
    for action, help_text, description in (
        (
            "cancel",
            "cancel pending or running jobs",
            "A pending (or delayed, or blocked) job ends cancelled at once; a running job's worker is told to stop "
            "it. " + FILTER_HELP + " With a filter it asks first (--yes: it does not).",
        ),
        (
            "promote",
            "run delayed jobs now",
            "A delayed job (pending, run time in the future) becomes due now and the workers are woken.",
        ),
        (
            "delete",
            "delete finished jobs from history",
            "Delete finished jobs (completed, failed, cancelled) for good. Cancel a live job first. "
            + FILTER_HELP
            + " With a filter it asks first (--yes: it does not).",
        ),
    ):
        one = job_commands.add_parser(action, parents=[common], help=help_text, description=description)
        if action == "promote":
            one.add_argument("ids", nargs="+", metavar="ID", help="job ids")
            one.add_argument("--json", action="store_true", help="one JSON array: each id and what happened")
        else:
            one.add_argument("ids", nargs="*", metavar="ID", help="job ids")
            _filter_options(one, confirm=True)
        one.set_defaults(handler=cmd_job_action, action=action)
    priority = job_commands.add_parser(
        "priority",
        parents=[common],
        help="set the priority of waiting jobs",
        description="Set the priority (higher runs first) of the pending, delayed or blocked jobs a filter "
        "matches; running and finished jobs keep theirs. " + FILTER_HELP,
    )
    priority.add_argument("priority", type=int, metavar="PRIORITY", help="the new priority, e.g. 10 or -5")
    _filter_options(priority, confirm=False)
    priority.set_defaults(handler=cmd_job_action, action="priority", ids=[])


def _filter_options(parser: argparse.ArgumentParser, *, confirm: bool) -> None:
    from pgq.job import STATUSES

    group = parser.add_argument_group("filter (instead of ids)")
    group.add_argument("--status", choices=STATUSES, help="only jobs in this state")
    group.add_argument("--queue", help="only jobs of this queue")
    group.add_argument("--task", help="only jobs of this task")
    group.add_argument("--key", help="only jobs with this key")
    group.add_argument("--tag", help="only jobs with this tag")
    group.add_argument("--args", metavar="JSON", help="only jobs whose args contain this JSON object")
    group.add_argument("--all", action="store_true", help="every job (needed when no other filter is given)")
    group.add_argument("--dry-run", action="store_true", help="change nothing: count the jobs it would take")
    if confirm:
        group.add_argument("--yes", action="store_true", help="do not ask before acting on the jobs found")
    parser.add_argument("--json", action="store_true", help="the outcome as JSON")


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """``pgq queues``, ``pgq workers`` and ``pgq stats``."""
    queue_commands = add_group(commands, "queues", "list, pause and resume queues")
    add_listing(queue_commands, common, "every queue with its live counts", App.list_queues, "no queues", queues_table)
    setting = queue_commands.add_parser(
        "set",
        parents=[common],
        help="set a queue's limits (concurrency, rate, per-group limits, max pending)",
        description="Set limits of a queue, enforced inside the claim across every worker; only the options "
        "given change, 'none' removes a limit. Workers apply a change at once. See docs/flow-control.md.",
    )
    setting.add_argument("queue", help="the queue's name")
    setting.add_argument("--concurrency", metavar="N|none", help="at most N jobs of the queue run at once")
    setting.add_argument(
        "--rate", metavar="RATE|none", help="at most N starts per period, evenly spaced: 10/s, 100/min"
    )
    setting.add_argument("--group-concurrency", metavar="N|none", help="at most N jobs of one group run at once")
    setting.add_argument("--group-rate", metavar="RATE|none", help="the rate limit of each group: 5/min")
    setting.add_argument("--max-pending", metavar="N|none", help="reject enqueues beyond N pending jobs")
    setting.add_argument(
        "--group-max-pending", metavar="N|none", help="reject enqueues beyond N pending jobs in one group"
    )
    setting.add_argument(
        "--on-full",
        metavar="reject|drop_oldest",
        help="what an enqueue beyond --max-pending or --group-max-pending does",
    )
    for flag, unit, help_text in SLO_FLAGS:
        setting.add_argument(flag, metavar=f"{unit}|none", help=help_text)
    setting.add_argument("--json", action="store_true", help="print the queue as JSON")
    setting.set_defaults(handler=cmd_queues_set)
    add_actions(
        queue_commands,
        common,
        (
            ("pause", "stop workers claiming the queue's jobs (running ones go on; enqueueing still works)"),
            ("resume", "let workers claim the queue's jobs again"),
        ),
        cmd_queue_action,
        target="queue",
        target_help="the queue's name",
    )

    explain = commands.add_parser(
        "explain",
        parents=[common],
        help="why isn't this job running?",
        description="Name what holds a pending job back: its run time, a paused queue, a full concurrency "
        "limit (and the jobs filling it), a rate limit's next start, no live worker for its queue or its "
        "task, no attempts left; and whether its process died under it. Same text as app.explain(id) and "
        "the SQL function pgq.explain(id).",
    )
    explain.add_argument("job_id", metavar="JOB_ID", help="the job's id")
    explain.add_argument("--json", action="store_true", help="the id, the text and its reasons, as JSON")
    explain.set_defaults(handler=cmd_explain)

    worker_commands = add_group(commands, "workers", "list workers")
    add_listing(
        worker_commands,
        common,
        "every worker (stopped and dead ones are kept a day)",
        App.list_workers,
        "no workers",
        workers_table,
    )

    stats = commands.add_parser(
        "stats",
        parents=[common],
        help="per-queue counts, rates and timings",
        description="Per queue: waiting, delayed and active jobs now; completed, failed and cancelled over "
        "the window; completions per minute over the last 5 minutes; run and wait times (p50/p95) of recent "
        "completed jobs. See docs/operations.md.",
    )
    stats.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    stats.add_argument("--watch", action="store_true", help="refresh the table until Ctrl-C")
    stats.add_argument("--interval", type=positive_float, metavar="SECONDS", help="with --watch (default 2)")
    stats.add_argument(
        "--window",
        type=window,
        default=STATS_WINDOW,
        help="window of the finished counts: seconds or 15m, 24h, 7d (default 24h)",
    )
    stats.set_defaults(handler=cmd_stats)


# -------------------------------------------------------------------- jobs


def job_id_arg(text: str) -> int:
    """One job id from the command line; :class:`ConfigurationError` when it is not a whole number."""
    ids, errors = _job_ids([text])
    if errors:
        raise ConfigurationError(errors[0])
    return ids[0]


def _job_ids(texts: list[str]) -> tuple[list[int], list[str]]:
    """The ids that are whole numbers, and one error line for each that is not."""
    ids: list[int] = []
    errors: list[str] = []
    for text in texts:
        if re.fullmatch(r"\s*[0-9]+\s*", text):
            ids.append(int(text))
        else:
            errors.append(f"{text!r} is not a job id (a whole number)")
    return ids, errors


#: What a per-id action did to a job, in words.
OUTCOME_TEXT = {
    "retried": "job {id} retried",
    "cancelled": "job {id} cancelled",
    "cancelling": "job {id} cancelling: its worker was told to stop it",
    "promoted": "job {id} promoted",
    "deleted": "job {id} deleted",
}


def _act(texts: list[str], act: Callable[[int], str], as_json: bool) -> int:
    """Run ``act`` on each id (it returns a key of OUTCOME_TEXT); print what it did,
    and one error line per failure on stderr; with ``as_json``, one JSON array of
    ``{"id", "outcome"}`` and ``{"id", "error"}`` on stdout."""
    report: list[dict[str, Any]] = []
    for text in texts:
        job_id: int | str = text
        try:
            job_id = job_id_arg(text)
            outcome = act(job_id)
        except (JobNotFound, InvalidState, ConfigurationError) as exc:
            print(f"pgq: error: {exc}", file=sys.stderr)
            report.append({"id": job_id, "error": str(exc)})
            continue
        report.append({"id": job_id, "outcome": outcome})
        if not as_json:
            print(OUTCOME_TEXT[outcome].format(id=job_id))
    if as_json:
        print(to_json(report))
    sys.stdout.flush()
    return 2 if any("error" in entry for entry in report) else 0


def _job_filter(options: argparse.Namespace) -> JobFilter | None:
    """The filter the options give, or None when they give none (then ids are needed)."""
    status = options.status
    if getattr(options, "failed", False):
        if status not in (None, "failed"):
            raise ConfigurationError(f"--failed is --status failed; it cannot go with --status {status}")
        status = "failed"
    args = None
    if options.args is not None:
        with contextlib.suppress(ValueError, RecursionError):
            args = json.loads(options.args)
        if not isinstance(args, dict):
            raise ConfigurationError(f"--args must be a JSON object such as '{{\"user_id\": 7}}', got {options.args!r}")
    given = {"status": status, "queue": options.queue, "task": options.task, "key": options.key, "tag": options.tag}
    if all(value is None for value in given.values()) and args is None:
        return JobFilter() if options.all else None
    return JobFilter(**given, args=args)


def cmd_job_action(options: argparse.Namespace) -> int:
    action = options.action
    job_filter = None if action == "promote" else _job_filter(options)
    if job_filter is not None:
        if options.ids:
            raise ConfigurationError("give job ids or a filter, not both")
        return _bulk(options, action, job_filter)
    if not options.ids:
        raise ConfigurationError(
            "give job ids, or a filter for every job it matches (--status, --queue, --task, --key, --tag, --args"
            f"{', --failed' if action == 'retry' else ''}), or --all"
        )
    if action != "promote" and options.dry_run:
        raise ConfigurationError("--dry-run goes with a filter; with ids, pgq jobs show ID shows each job")
    with open_app(options) as app:

        def done(method: Callable[[int], None], outcome: str) -> Callable[[int], str]:
            def act(job_id: int) -> str:
                method(job_id)
                return outcome

            return act

        actions: dict[str, Callable[[int], str]] = {
            "retry": done(app.retry, "retried"),
            "cancel": app.cancel,
            "promote": done(app.promote, "promoted"),
            "delete": done(app.delete, "deleted"),
        }
        return _act(options.ids, actions[action], options.json)


def _bulk(options: argparse.Namespace, action: str, job_filter: JobFilter) -> int:
    """An action on every job ``job_filter`` matches; cancel and delete ask first (unless --yes)."""
    priority = options.priority if action == "priority" else None
    with open_app(options) as app:

        def run(dry_run: bool) -> BulkResult:
            return run_bulk(app, action, job_filter, priority=priority, all=options.all, dry_run=dry_run)

        if options.dry_run:
            result = run(True)
        else:
            if getattr(options, "yes", True) is False:
                preview = run(True)
                if preview.count and not _confirmed(action, preview.count, job_filter):
                    print("nothing done", file=sys.stderr)
                    return 1
            with progress(f"{action}: the jobs that match {job_filter.describe()}"):
                result = run(False)
    print(to_json(result) if options.json else result.message(job_filter))
    return 0


def _confirmed(action: str, count: int, job_filter: JobFilter) -> bool:
    question = f"{action} {count} job{'' if count == 1 else 's'} ({job_filter.describe()})"
    if not sys.stdin.isatty():
        raise ConfigurationError(
            f"{question}: pass --yes to go on (stdin is not a terminal, so there is no one to ask)"
        )
    return input(f"{question}? [y/N] ").strip().lower() in ("y", "yes")


# ------------------------------------------------------------------ queues


def cmd_queues_set(options: argparse.Namespace) -> int:
    from pgq.flow import parse_count, parse_on_full, parse_rate

    changes: dict[str, Any] = {}
    for option, parse in (
        ("concurrency", lambda v: parse_count(v, "--concurrency")),
        ("rate", lambda v: parse_rate(v, "--rate")),
        ("group_concurrency", lambda v: parse_count(v, "--group-concurrency")),
        ("group_rate", lambda v: parse_rate(v, "--group-rate")),
        ("max_pending", lambda v: parse_count(v, "--max-pending", minimum=0)),
        ("group_max_pending", lambda v: parse_count(v, "--group-max-pending", minimum=0)),
        ("on_full", lambda v: parse_on_full(v)),
    ):
        value = getattr(options, option)
        if value is not None:
            changes[option] = parse(value)  # checked here, before anything connects
    for flag, unit, _ in SLO_FLAGS:
        option = flag[2:].replace("-", "_")
        value = getattr(options, option)
        if value is not None:
            changes[option] = _slo_value(value, flag, unit)
    if not changes:
        raise ConfigurationError(
            "nothing to set: give at least one of --concurrency, --rate, --group-concurrency, --group-rate, "
            "--max-pending, --group-max-pending, --on-full, --slo-... (e.g. pgq queues set emails --rate 10/s)"
        )
    with open_app(options) as app:
        info = app.set_queue(options.queue, **changes)
    if options.json:
        print(to_json(info))
        return 0
    limits = [
        f"{label} {value}"
        for label, value in (
            ("concurrency", info.concurrency),
            ("rate", info.rate),
            ("group concurrency", info.group_concurrency),
            ("group rate", info.group_rate),
            ("max pending", info.max_pending),
            ("group max pending", info.group_max_pending),
        )
        if value is not None
    ]
    if info.max_pending is not None or info.group_max_pending is not None:
        limits.append(f"on full {info.on_full}")
    print(f"queue {info.name}: " + (", ".join(limits) if limits else "no limits"))
    if info.slo:
        print("objectives: " + ", ".join(f"{key} {value:g}" for key, value in sorted(info.slo.items())))
    return 0


#: ``pgq queues set``'s flags of the service-level objectives (pgq.slo): flag, unit, help.
SLO_FLAGS = (
    ("--slo-wait-p95", "SECONDS", "breach when the queue latency p95 (due to start) is above it"),
    ("--slo-run-p95", "SECONDS", "breach when the processing time p95 is above it"),
    ("--slo-utilization", "PERCENT", "breach when the workers' utilisation for the queue is below it"),
    ("--slo-error-rate", "PERCENT", "breach when failed / finished is above it"),
    ("--slo-completion-rate", "PERCENT", "breach when completed / finished is below it"),
)


def _slo_value(text: str, flag: str, unit: str) -> float | None:
    """A flag's number (``none`` removes the objective), checked before anything connects."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"{flag} takes a number of {unit.lower()} or none, got {text!r}") from None
    if unit == "PERCENT" and not 0 <= value <= 100:
        raise ConfigurationError(f"{flag} is a percentage from 0 to 100, got {text!r}")
    if unit == "SECONDS" and not 0 < value < float("inf"):
        raise ConfigurationError(f"{flag} must be a positive number of seconds, got {text!r}")
    return value


def cmd_explain(options: argparse.Namespace) -> int:
    job_id = job_id_arg(options.job_id)
    with open_app(options) as app:
        text = app.explain(job_id)
    if text.endswith(": no such job"):
        raise JobNotFound(f"no job with id {job_id} (live or in the retained history)")
    print(to_json({"id": job_id, "text": text, "reasons": explain_reasons(text)}) if options.json else text)
    return 0


def cmd_queue_action(options: argparse.Namespace) -> int:
    with open_app(options) as app:
        if options.action == "pause":
            app.pause_queue(options.queue)
            print(f"queue {options.queue} paused")
        else:
            app.resume_queue(options.queue)
            print(f"queue {options.queue} resumed")
    return 0


# ------------------------------------------------------------------- stats


def cmd_stats(options: argparse.Namespace) -> int:
    if options.json and options.watch:
        raise ConfigurationError("--json and --watch do not go together: --json prints once, for scripts")
    if options.interval is not None and not options.watch:
        raise ConfigurationError("--interval goes with --watch")
    with open_app(options) as app:
        if options.watch:
            return _watch(app, options.window, options.interval or 2.0)
        stats = app.reader.stats(window=options.window)
        view = None if options.json else _stats_view(app, stats)
    if options.json:
        print(to_json(stats))
    else:
        print(view)
    return 0


def _stats_view(app: App, stats: Sequence[QueueStats]) -> str:
    """The table, and where it was read: the replica of PGQ_READ_URL says how far behind it is."""
    body = stats_table(stats) if stats else "no queues"
    if not app.settings.read_url:
        return body
    return f"{body}\n\n{replica_text(app.replica_lag())}"


def _watch(app: App, window_seconds: float, interval: float) -> int:
    """Redraw the stats every ``interval`` seconds until Ctrl-C. A database that
    goes away after the first frame is shown and retried, not fatal."""
    first = True
    try:
        while True:
            try:
                stats = app.reader.stats(window=window_seconds)
                body = _stats_view(app, stats)
                at = stats[0].at.strftime("%Y-%m-%d %H:%M:%S %Z") if stats else time.strftime("%Y-%m-%d %H:%M:%S")
            except (DatabaseUnavailable, psycopg.OperationalError, PoolTimeout) as exc:
                if first:
                    raise
                body = f"database unavailable, retrying every {interval:g} s: {str(exc).splitlines()[0]}"
                at = time.strftime("%Y-%m-%d %H:%M:%S")
            first = False
            header = (
                f"pgq stats  schema {app.schema}  {at}  "
                f"(finished over the last {span(window_seconds)}; every {interval:g} s, Ctrl-C to stop)"
            )
            sys.stdout.write(f"{CLEAR_SCREEN}{header}\n\n{body}\n")
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # stdout may be a closed pipe by now
            sys.stdout.write("\n")
        return 0


def span(seconds: float) -> str:
    """A window as given: 24h, 15m, 7d, 90s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
