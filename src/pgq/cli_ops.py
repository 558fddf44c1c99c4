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
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from pgq.app import App
from pgq.cli import _app, positive_float
from pgq.errors import ConfigurationError, DatabaseUnavailable, InvalidState, JobNotFound
from pgq.operations import STATS_WINDOW, QueueStats
from pgq.output import progress, queues_table, stats_table, to_json, workers_table

CLEAR_SCREEN = "\x1b[H\x1b[2J"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def window(text: str) -> float:
    """A window: seconds, or a number with s, m, h or d (``90``, ``15m``, ``24h``, ``7d``)."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 3600, 15m, 24h or 7d, got {text!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


def add_job_actions(
    job_commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """``pgq jobs retry|cancel|promote|delete``."""
    retry = job_commands.add_parser(
        "retry",
        parents=[common],
        help="put failed or cancelled jobs back in their queue, to run now",
        description="Retry jobs by id (failed or cancelled ones), or every failed job with --failed "
        "(of one queue or task with --queue/--task). Same ids; a job that used all its attempts gets one more.",
    )
    retry.add_argument("ids", nargs="*", metavar="ID", help="ids of failed or cancelled jobs")
    retry.add_argument("--failed", action="store_true", help="every failed job (the dead-letter set)")
    retry.add_argument("--queue", help="with --failed: only this queue's")
    retry.add_argument("--task", help="with --failed: only this task's")
    retry.set_defaults(handler=cmd_jobs_retry)
    for action, help_text, description in (
        (
            "cancel",
            "cancel pending or running jobs",
            "A pending (or delayed) job ends cancelled at once; a running job's worker is told to stop it.",
        ),
        (
            "promote",
            "run delayed jobs now",
            "A delayed job (pending, run time in the future) becomes due now and the workers are woken.",
        ),
        (
            "delete",
            "delete finished jobs from history",
            "Delete finished jobs (completed, failed, cancelled) for good. Cancel a live job first.",
        ),
    ):
        one = job_commands.add_parser(action, parents=[common], help=help_text, description=description)
        one.add_argument("ids", nargs="+", metavar="ID", help="job ids")
        one.set_defaults(handler=cmd_job_action, action=action)


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """``pgq queues``, ``pgq workers`` and ``pgq stats``."""
    queues = commands.add_parser("queues", help="list, pause and resume queues")
    queue_commands = queues.add_subparsers(dest="queues_command", metavar="ACTION", required=True)
    listing = queue_commands.add_parser("list", parents=[common], help="every queue with its live counts")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    listing.set_defaults(handler=cmd_queues_list)
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
    setting.add_argument("--json", action="store_true", help="print the queue as JSON")
    setting.set_defaults(handler=cmd_queues_set)
    for action, help_text in (
        ("pause", "stop workers claiming the queue's jobs (running ones go on; enqueueing still works)"),
        ("resume", "let workers claim the queue's jobs again"),
    ):
        one = queue_commands.add_parser(action, parents=[common], help=help_text)
        one.add_argument("queue", help="the queue's name")
        one.set_defaults(handler=cmd_queue_action, action=action)

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
    explain.set_defaults(handler=cmd_explain)

    workers = commands.add_parser("workers", help="list workers")
    worker_commands = workers.add_subparsers(dest="workers_command", metavar="ACTION", required=True)
    listing = worker_commands.add_parser(
        "list", parents=[common], help="every worker (stopped and dead ones are kept a day)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    listing.set_defaults(handler=cmd_workers_list)

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


def _act(texts: list[str], act: Callable[[int], str]) -> int:
    """Run ``act`` on each id; print what it did, or one error line per failure."""
    ids, errors = _job_ids(texts)
    for message in errors:
        print(f"pgq: error: {message}", file=sys.stderr)
    for job_id in ids:
        try:
            print(act(job_id))
        except (JobNotFound, InvalidState, ConfigurationError) as exc:
            errors.append(str(exc))
            print(f"pgq: error: {exc}", file=sys.stderr)
    sys.stdout.flush()
    return 2 if errors else 0


def cmd_jobs_retry(options: argparse.Namespace) -> int:
    if options.failed and options.ids:
        raise ConfigurationError("give job ids or --failed, not both")
    if not options.failed:
        if not options.ids:
            raise ConfigurationError("give job ids or --failed (every failed job)")
        if options.queue or options.task:
            raise ConfigurationError("--queue and --task go with --failed")
    with _app(options) as app:
        if options.failed:
            with progress("retrying failed jobs"):
                count = app.retry_failed(queue=options.queue, task=options.task)
            print(f"{count} failed job{'' if count == 1 else 's'} retried")
            return 0

        def retry(job_id: int) -> str:
            app.retry(job_id)
            return f"job {job_id} retried"

        return _act(options.ids, retry)


def cmd_job_action(options: argparse.Namespace) -> int:
    with _app(options) as app:
        actions: dict[str, Callable[[int], str]] = {
            "cancel": lambda job_id: _cancel(app, job_id),
            "promote": lambda job_id: _done(app.promote, job_id, "promoted"),
            "delete": lambda job_id: _done(app.delete, job_id, "deleted"),
        }
        return _act(options.ids, actions[options.action])


def _cancel(app: App, job_id: int) -> str:
    if app.cancel(job_id) == "cancelled":
        return f"job {job_id} cancelled"
    return f"job {job_id} cancelling: its worker was told to stop it"


def _done(action: Callable[[int], None], job_id: int, what: str) -> str:
    action(job_id)
    return f"job {job_id} {what}"


# ------------------------------------------------------------------ queues


def cmd_queues_list(options: argparse.Namespace) -> int:
    with _app(options) as app:
        queues = app.list_queues()
    if options.json:
        print(to_json(queues))
    elif not queues:
        print("no queues")
    else:
        print(queues_table(queues))
    return 0


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
    if not changes:
        raise ConfigurationError(
            "nothing to set: give at least one of --concurrency, --rate, --group-concurrency, --group-rate, "
            "--max-pending, --group-max-pending, --on-full (e.g. pgq queues set emails --rate 10/s)"
        )
    with _app(options) as app:
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
    return 0


def cmd_explain(options: argparse.Namespace) -> int:
    job_id = job_id_arg(options.job_id)
    with _app(options) as app:
        text = app.explain(job_id)
    if text.endswith(": no such job"):
        raise JobNotFound(f"no job with id {job_id} (live or in the retained history)")
    print(text)
    return 0


def cmd_queue_action(options: argparse.Namespace) -> int:
    with _app(options) as app:
        if options.action == "pause":
            app.pause_queue(options.queue)
            print(f"queue {options.queue} paused")
        else:
            app.resume_queue(options.queue)
            print(f"queue {options.queue} resumed")
    return 0


def cmd_workers_list(options: argparse.Namespace) -> int:
    with _app(options) as app:
        workers = app.list_workers()
    if options.json:
        print(to_json(workers))
    elif not workers:
        print("no workers")
    else:
        print(workers_table(workers))
    return 0


# ------------------------------------------------------------------- stats


def cmd_stats(options: argparse.Namespace) -> int:
    if options.json and options.watch:
        raise ConfigurationError("--json and --watch do not go together: --json prints once, for scripts")
    if options.interval is not None and not options.watch:
        raise ConfigurationError("--interval goes with --watch")
    with _app(options) as app:
        if options.watch:
            return _watch(app, options.window, options.interval or 2.0)
        stats = app.stats(window=options.window)
    if options.json:
        print(to_json(stats))
    else:
        print(_stats_view(stats))
    return 0


def _stats_view(stats: Sequence[QueueStats]) -> str:
    return stats_table(stats) if stats else "no queues"


def _watch(app: App, window_seconds: float, interval: float) -> int:
    """Redraw the stats every ``interval`` seconds until Ctrl-C. A database that
    goes away after the first frame is shown and retried, not fatal."""
    first = True
    try:
        while True:
            try:
                stats = app.stats(window=window_seconds)
                body = _stats_view(stats)
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
