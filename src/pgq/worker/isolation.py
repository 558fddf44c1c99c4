"""Suspects: jobs whose process died under them, run alone in a child process.

When a worker process dies, every job it held died with it, and nothing tells
the job that killed it from the others. The sweeper gives each of them its
attempt back the first time (``WorkerDied``) and they come back as suspects.
A worker runs a suspect's handler in a fresh Python process of its own
(``python -m pgq.worker.child``: no state shared with the worker, no
inherited database connections), at most :data:`AT_ONCE` at a time. An innocent job
completes there like anywhere else. The poison kills only its child: the
worker sees the child die without an answer and charges that attempt to the
job (``Crashed``), which ends ``failed`` with "crashed its worker N times"
once its attempts are spent. See docs/guarantees.md.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pickle
import signal
import subprocess
import sys
import traceback
from typing import Any

from pgq.context import JobContext
from pgq.errors import PermanentError, Retry
from pgq.job import Job
from pgq.task import Task

#: Suspects one worker process runs at once, each in its own child.
AT_ONCE = 2
#: Longest traceback carried back from a child.
MAX_TRACEBACK = 16_000

_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def suspect(job: Job, task: Task[Any, Any]) -> bool:
    """Whether ``job`` runs in a child process: its process died under it before, and a
    fresh process can find its handler by importing its module (not a function defined
    inside another, nor in a script run as ``__main__``: those run in the worker)."""
    fn = task.fn
    return job.crashes > 0 and "<locals>" not in fn.__qualname__ and fn.__module__ not in ("__main__", "__mp_main__")


class ChildRaised(Exception):
    """The handler raised in its child process: what the worker needs to classify it."""

    def __init__(self, kind: str, message: str, trace: str, permanent: bool, retry_delay: float | None) -> None:
        super().__init__(kind, message, trace, permanent, retry_delay)
        self.kind = kind
        self.message = message
        self.trace = trace
        self.permanent = permanent
        self.retry_delay = retry_delay

    def __str__(self) -> str:
        return self.message


class Crashed(Exception):
    """The child running a suspect died without an answer: this job is the poison."""


async def run_isolated(task: Task[Any, Any], job: Job, ctx: JobContext | None = None) -> Any:
    """Run ``job``'s handler in a fresh Python process and return its result. Raises
    :class:`ChildRaised` when the handler raised, :class:`Crashed` when the child died.
    Cancelled (a timeout, a cancel, the shutdown), it kills the child.

    The child is ``python -m pgq.worker.child``: it gets the worker's ``sys.path``,
    the job and what ``ctx`` knows of its parents on stdin, and answers on a pipe of its
    own (the handler may print). Progress it reports and a later cancellation do not
    cross over: the child's context is its own."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(AT_ONCE)
    parents = (ctx.parent_statuses, ctx.parent_results) if ctx is not None else ({}, {})
    request = pickle.dumps((sys.path, task.fn.__module__, task.name, job, parents))
    async with slots:
        read_end, write_end = os.pipe()
        answers = asyncio.StreamReader()
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(answers), os.fdopen(read_end, "rb", buffering=0)
            )
        except BaseException:
            os.close(read_end)
            os.close(write_end)
            raise
        try:
            try:
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "pgq.worker.child",
                    str(write_end),
                    stdin=subprocess.PIPE,
                    pass_fds=(write_end,),
                )
            finally:
                os.close(write_end)  # the child holds the only write end now: its death is our EOF
            try:
                assert child.stdin is not None
                try:
                    child.stdin.write(request)
                    await child.stdin.drain()
                    child.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # it died before reading its job: no answer comes, and that says so
                data = await answers.read()
                code = await child.wait()
            except BaseException:
                if child.returncode is None:
                    child.kill()
                    await asyncio.shield(child.wait())
                raise
        finally:
            transport.close()
    if not data:
        raise Crashed(f"ran alone in a child process, which {_death(code)}")
    try:
        status, value = pickle.loads(data)
    except Exception as exc:  # cut short: it died while writing its answer
        raise Crashed(f"ran alone in a child process, which {_death(code)} in the middle of its answer") from exc
    if status == "ok":
        return value
    raise ChildRaised(*value)


def _death(code: int | None) -> str:
    if code is None:
        return "vanished"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code} before answering"


def _find(module_name: str, task_name: str) -> Task[Any, Any]:
    from pgq.app import App

    module = importlib.import_module(module_name)
    for value in vars(module).values():
        if isinstance(value, App) and task_name in value.tasks:
            return value.tasks[task_name]
        if isinstance(value, Task) and value.name == task_name:
            return value
    raise LookupError(f"task {task_name!r} is not registered by any pgq.App in module {module_name}")


def child_main(answer_fd: int) -> None:
    """The child: import the handler's module, run it once, send back what came of it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the worker's to handle
    path, module_name, task_name, job, (statuses, results) = pickle.load(sys.stdin.buffer)
    sys.path[:] = path
    answer: tuple[str, Any]
    try:
        task = _find(module_name, task_name)
        ctx = JobContext(job) if task.pass_context else None
        if ctx is not None:
            ctx.parent_statuses, ctx.parent_results = statuses, results
        args = job.args
        if task.is_async:

            async def call() -> Any:
                return await (task.fn(ctx, **args) if ctx is not None else task.fn(**args))

            result = asyncio.run(call())
        else:
            result = task.fn(ctx, **args) if ctx is not None else task.fn(**args)
        answer = ("ok", result)
    except BaseException as exc:  # a handler's SystemExit is a failed attempt, as in the worker
        answer = ("raised", _raised(exc))
    try:
        data = pickle.dumps(answer)
    except Exception as exc:  # a result pickle cannot carry
        data = pickle.dumps(("raised", _raised(exc)))
    with os.fdopen(answer_fd, "wb") as out:
        out.write(data)


def _raised(exc: BaseException) -> tuple[str, str, str, bool, float | None]:
    """What the worker needs of ``exc`` to classify it, in plain values: the arguments
    of the :class:`ChildRaised` it raises in the worker."""
    return (
        type(exc).__qualname__,
        str(exc),
        "".join(traceback.format_exception(exc))[-MAX_TRACEBACK:],
        isinstance(exc, PermanentError),
        exc.delay if isinstance(exc, Retry) else None,
    )
