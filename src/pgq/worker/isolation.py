"""Suspects: jobs whose process died under them, run alone in a child process.

When a worker process dies, every job it held died with it, and nothing tells
the job that killed it from the others. The sweeper gives each of them its
attempt back (``WorkerDied``). Jobs rescued together are often claimed together
again, so a poison job's bystanders may die with it twice: at its second crash
(:data:`pgq.job.SUSPECT_AT`) a job comes back a suspect, its attempt given back
again.
A worker runs a suspect's handler in a child process (``python -m
pgq.worker.child``: no state shared with the worker, no inherited database
connections) that runs one job at a time, at most :data:`AT_ONCE` such
children per worker. An innocent job completes there like anywhere else, and
its child takes the next suspect: a Python start-up (about 0.3 s of CPU) is paid
per child, not per job, so the hundred jobs of a worker killed by a deploy
re-run at nearly their usual pace. The poison kills only its child, where it
ran alone: the worker sees the child die without an answer and charges that
attempt to the job (``Crashed``), which ends ``failed`` with "crashed its
worker N times" once its attempts are spent. See docs/guarantees.md.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pickle
import signal
import struct
import subprocess
import sys
import traceback
import weakref
from dataclasses import dataclass
from typing import Any

from pgq.context import JobContext
from pgq.errors import PermanentError, Retry, Snooze
from pgq.job import SUSPECT_AT, Job
from pgq.task import Task

#: Children (and so suspects running at once) per worker process.
AT_ONCE = 4
#: Longest traceback carried back from a child.
MAX_TRACEBACK = 16_000
#: Each message between the worker and a child: its length, then a pickle.
FRAME = struct.Struct("!Q")


def suspect(job: Job, task: Task[Any, Any]) -> bool:
    """Whether ``job`` runs in a child process: its process died under it twice, and a
    fresh process can find its handler by importing its module (not a function defined
    inside another, nor in a script run as ``__main__``: those run in the worker)."""
    fn = task.fn
    importable = "<locals>" not in fn.__qualname__ and fn.__module__ not in ("__main__", "__mp_main__")
    return importable and job.crashes >= SUSPECT_AT


# eq=False: it stays hashable and equal only to itself, as every exception is.
@dataclass(eq=False)
class ChildRaised(Exception):
    """The handler raised in its child process: what the worker needs to classify it."""

    kind: str
    message: str
    trace: str
    permanent: bool
    retry_delay: float | None
    snooze_delay: float | None = None

    def __post_init__(self) -> None:
        # args, what pickle rebuilds an exception from, would hold only the arguments passed by position.
        super().__init__(self.kind, self.message, self.trace, self.permanent, self.retry_delay, self.snooze_delay)

    def __str__(self) -> str:
        return self.message


class Crashed(Exception):
    """The child running a suspect died without an answer: this job is the poison."""


@dataclass(eq=False)
class _Child:
    """One ``python -m pgq.worker.child``: jobs go in on its stdin, answers come back on
    a pipe of its own (the handler may print). Its death is the answer pipe's end."""

    process: asyncio.subprocess.Process
    answers: asyncio.StreamReader
    pipe: Any

    @classmethod
    async def start(cls) -> _Child:
        loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()
        answers = asyncio.StreamReader()
        try:
            pipe, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(answers), os.fdopen(read_end, "rb", buffering=0)
            )
        except BaseException:
            os.close(read_end)
            os.close(write_end)
            raise
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pgq.worker.child", str(write_end), stdin=subprocess.PIPE, pass_fds=(write_end,)
            )
        except BaseException:
            pipe.close()
            raise
        finally:
            os.close(write_end)  # the child holds the only write end now
        return cls(process, answers, pipe)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def send(self, request: bytes) -> bool:
        """Hand the child a job; False if it was dead already (the job never reached it)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(FRAME.pack(len(request)) + request)
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    async def answer(self) -> bytes | None:
        """The answer to the job it was handed; None if it died first."""
        try:
            (size,) = FRAME.unpack(await self.answers.readexactly(FRAME.size))
            return await self.answers.readexactly(size)
        except asyncio.IncompleteReadError:
            return None

    async def kill(self) -> int | None:
        if self.process.returncode is None:
            # Not Process.kill(): Popen polls before it signals, and a child that has just
            # died (not yet reported by asyncio's child watcher) would be reaped there, and
            # the watcher would then report its code as 255 (a CI run saw "exited with code
            # 255" for a child that exited with 7). The pid stays this child's until the
            # watcher reaps it, so a signal to it cannot reach another process.
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        code = await asyncio.shield(self.process.wait())
        self.pipe.close()
        return code

    async def close(self) -> None:
        """Let it end by itself (its stdin closes), or kill it after a second."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            async with asyncio.timeout(1.0):
                await self.process.wait()
        except TimeoutError:
            pass
        await self.kill()


class _Children:
    """The children of one event loop (one worker process)."""

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(AT_ONCE)
        self.idle: list[_Child] = []


_children: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Children] = weakref.WeakKeyDictionary()


async def run_isolated(task: Task[Any, Any], job: Job, ctx: JobContext | None = None) -> Any:
    """Run ``job``'s handler in a child process and return its result. Raises
    :class:`ChildRaised` when the handler raised, :class:`Crashed` when the child died.
    Cancelled (a timeout, a cancel, the shutdown), it kills the child.

    The child gets the worker's ``sys.path``, the job and what ``ctx`` knows of its
    parents. Progress it reports and a later cancellation do not cross over: the
    child's context is its own."""
    loop = asyncio.get_running_loop()
    children = _children.get(loop)
    if children is None:
        children = _children[loop] = _Children()
    parents = (ctx.parent_statuses, ctx.parent_results) if ctx is not None else ({}, {})
    request = pickle.dumps((sys.path, task.fn.__module__, task.name, job, parents))
    async with children.slots:
        child: _Child | None = children.idle.pop() if children.idle else None
        try:
            if child is not None and (not child.alive or not await child.send(request)):
                await child.kill()  # died while idle: not this job's doing
                child = None
            if child is None:
                child = await _Child.start()
                if not await child.send(request):
                    raise RuntimeError(
                        f"a child process for suspects {_death(await child.kill())} before it took its job; "
                        "check that `python -m pgq.worker.child` runs in the worker's environment"
                    )
            data = await child.answer()
        except BaseException:
            if child is not None:
                await child.kill()
            raise
        if data is None:
            raise Crashed(f"ran alone in a child process, which {_death(await child.kill())}")
        children.idle.append(child)
    status, value = pickle.loads(data)
    if status == "ok":
        return value
    raise ChildRaised(*value)


async def close_children() -> None:
    """End this event loop's idle children (a worker stopping)."""
    children = _children.pop(asyncio.get_running_loop(), None)
    if children is not None:
        await asyncio.gather(*(child.close() for child in children.idle), return_exceptions=True)
        children.idle.clear()


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
    """The child: run the jobs the worker sends, one at a time, until its stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the worker's to handle
    requests = sys.stdin.buffer
    with os.fdopen(answer_fd, "wb") as out:
        while True:
            header = requests.read(FRAME.size)
            if len(header) < FRAME.size:
                return  # the worker is done with this child
            (size,) = FRAME.unpack(header)
            answer = _run(pickle.loads(requests.read(size)))
            try:
                data = pickle.dumps(answer)
            except Exception as exc:  # a result pickle cannot carry
                data = pickle.dumps(("raised", _raised(exc)))
            out.write(FRAME.pack(len(data)) + data)
            out.flush()


def _run(request: tuple[Any, ...]) -> tuple[str, Any]:
    """One job in the child: its handler's result, or what it raised, ready to pickle."""
    path, module_name, task_name, job, (statuses, results) = request
    sys.path[:] = path
    try:
        task = _find(module_name, task_name)
        ctx = JobContext(job) if task.pass_context else None
        if ctx is not None:
            ctx.parent_statuses, ctx.parent_results = statuses, results
        args = task.handler_args(job.args)
        if task.is_async:

            async def call() -> Any:
                return await (task.fn(ctx, **args) if ctx is not None else task.fn(**args))

            result = asyncio.run(call())
        else:
            result = task.fn(ctx, **args) if ctx is not None else task.fn(**args)
    except BaseException as exc:  # a handler's SystemExit is a failed attempt, as in the worker
        return ("raised", _raised(exc))
    return ("ok", result)


def _raised(exc: BaseException) -> tuple[str, str, str, bool, float | None, float | None]:
    """What the worker needs of ``exc`` to classify it, in plain values: the arguments
    of the :class:`ChildRaised` it raises in the worker."""
    return (
        type(exc).__qualname__,
        str(exc),
        "".join(traceback.format_exception(exc))[-MAX_TRACEBACK:],
        isinstance(exc, PermanentError),
        exc.delay if isinstance(exc, Retry) else None,
        exc.delay if isinstance(exc, Snooze) else None,
    )
