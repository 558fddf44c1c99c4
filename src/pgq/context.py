"""The context a handler receives with ``@app.task(pass_context=True)``."""

from __future__ import annotations

import logging
import traceback
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pgq.errors import ConfigurationError
from pgq.job import Job

#: Lines of ctx.log kept per run of a handler (the newest), and their bytes at most.
MAX_LOG_LINES = 200
MAX_LOG_BYTES = 64 * 1024


class JobLog:
    """The lines a run of a handler logged through ``ctx.log``, bounded: the newest
    :data:`MAX_LOG_LINES` whose messages hold at most :data:`MAX_LOG_BYTES` in all."""

    def __init__(self) -> None:
        self.lines: deque[tuple[datetime, str, str]] = deque()
        self.size = 0
        self.dropped = 0

    def add(self, level: int, message: str) -> None:
        encoded = len(message.encode("utf-8", "replace"))
        if encoded > MAX_LOG_BYTES:
            message = message.encode("utf-8", "replace")[: MAX_LOG_BYTES - 100].decode("utf-8", "ignore")
            message += " [cut: the line was longer than 64 KiB]"
            encoded = len(message.encode("utf-8", "replace"))
        self.lines.append((datetime.now(UTC), logging.getLevelName(level), message))
        self.size += encoded
        while len(self.lines) > MAX_LOG_LINES or self.size > MAX_LOG_BYTES:
            _, _, old = self.lines.popleft()
            self.size -= len(old.encode("utf-8", "replace"))
            self.dropped += 1

    def rows(self) -> list[tuple[datetime, str, str]]:
        """The lines to store, with a first one saying how many were dropped, if any."""
        rows = list(self.lines)
        if self.dropped and rows:
            note = f"{self.dropped} earlier lines not kept (at most {MAX_LOG_LINES} lines or 64 KiB per run)"
            rows.insert(0, (rows[0][0], "INFO", note))
        return rows


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``ctx.log``: a logger whose records carry the job id, and whose lines are kept
    with the job's attempt (shown on its page and by ``pgq jobs show``)."""

    def __init__(self, logger: logging.Logger, extra: dict[str, Any], kept: JobLog) -> None:
        super().__init__(logger, extra)
        self.kept = kept

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(level, msg, *args, **kwargs)
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        exc_info = kwargs.get("exc_info")
        if exc_info:
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            elif not isinstance(exc_info, tuple):
                import sys

                exc_info = sys.exc_info()
            if exc_info[0] is not None:
                text += "\n" + "".join(traceback.format_exception(*exc_info)).rstrip()
        self.kept.add(level, text)


class JobContext:
    """What a running handler may know and do about its job.

    ``job`` is the claimed row (id, task, queue, attempts, args);
    ``attempt`` counts from 1; ``cancelled`` turns true when the job is
    cancelled or the worker shuts down, so a sync handler can poll it;
    ``log`` is a logger whose records carry the job id, and whose lines are
    kept with the attempt (the last 200, or 64 KiB; see docs/worker.md);
    ``parent_statuses`` says how each parent (``job.depends_on``) ended and
    ``parent_results`` maps each completed parent's id to its result;
    ``connection`` is a transactional task's transaction.
    """

    def __init__(self, job: Job, logger: logging.Logger | None = None) -> None:
        self.job = job
        self.cancelled = False
        self.progress: float | None = job.progress
        self.progress_message: str | None = job.progress_message
        base = logger or logging.getLogger("pgq.job")
        #: This run's lines of ``log``, written with the job when the handler returns.
        self.log_lines = JobLog()
        self.log = JobLogger(base, {"job_id": job.id, "task": job.task}, self.log_lines)
        #: How each of the job's parents (``job.depends_on``) ended, by parent id:
        #: ``"completed"``, ``"failed"``, ``"cancelled"``, or ``"missing"`` once pruned
        #: from history; empty for a job without parents.
        self.parent_statuses: dict[int, str] = {}
        #: The results of the parents that completed, by parent id.
        self.parent_results: dict[int, Any] = {}
        #: A transactional task's transaction (``@app.task(transactional=True)``): a psycopg
        #: ``Connection`` (``AsyncConnection`` for an async handler) in an open transaction,
        #: which completes the job when the handler returns; None for other tasks.
        self.connection: Any = None
        #: Makes ``session`` (set by the runner of a transactional handler), and the one made.
        self.new_session: Callable[[], Any] | None = None
        self.opened_session: Any = None

    @property
    def session(self) -> Any:
        """A transactional task's SQLAlchemy ``Session`` (``AsyncSession`` for an async
        handler) in the job's transaction: its ``commit()`` keeps its work for the job's
        commit, its ``rollback()`` undoes only its own work, and pgq commits it when the
        handler returns. Made on first use. See docs/worker.md#transactional-handlers."""
        if self.opened_session is None:
            if self.new_session is None:
                raise ConfigurationError(
                    "ctx.session exists in transactional tasks only: @app.task(transactional=True)"
                )
            self.opened_session = self.new_session()
        return self.opened_session

    @property
    def attempt(self) -> int:
        return self.job.attempts

    @property
    def args(self) -> dict[str, Any]:
        return self.job.args

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress between 0 and 1; the worker writes it to the job, throttled."""
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"progress must be between 0 and 1, got {fraction!r}")
        self.progress = float(fraction)
        self.progress_message = message
