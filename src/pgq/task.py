"""Tasks: Python functions registered with ``@app.task``."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import orjson
import pydantic
import typing_extensions

from pgq.durations import to_seconds
from pgq.encryption import is_envelope, open_envelope, seal
from pgq.errors import ConfigurationError, InvalidJob
from pgq.job import JobSpec
from pgq.payload import encode_args

if TYPE_CHECKING:
    from pgq.app import App
    from pgq.fast_lane import LaneOptions

P = ParamSpec("P")
R = TypeVar("R")

Backoff = float | Callable[[int], float]

#: The largest ``batch_size``: a batch is held in memory and its outcomes written together.
MAX_BATCH_SIZE = 10_000
#: ``batch_wait`` when a task gives ``batch_size`` alone.
DEFAULT_BATCH_WAIT = 1.0
#: A task's max_snoozes unless it says otherwise.
DEFAULT_MAX_SNOOZES = 100


class Task(Generic[P, R]):
    """A registered handler and its defaults.

    Calling the task calls the function directly (handy in tests);
    ``task.enqueue(**args)`` puts a job on the queue, and
    ``task.options(queue=..., delay=..., key=..., connection=...)`` sets
    per-job options first.
    """

    def __init__(
        self,
        app: App,
        fn: Callable[P, R],
        *,
        name: str,
        queue: str | None,
        priority: int | None,
        max_attempts: int | None,
        backoff: Backoff | None,
        timeout: float | timedelta | None,
        pass_context: bool,
        batch_size: int | None = None,
        batch_wait: float | timedelta | None = None,
        validate: bool = True,
        max_snoozes: int | None = DEFAULT_MAX_SNOOZES,
        encrypt: bool = False,
        transactional: bool = False,
    ) -> None:
        self.app = app
        #: How a ``durable=False`` task's jobs run in this process (pgq.fast_lane); None: durable.
        self.lane: LaneOptions | None = None
        #: The handler runs in a transaction on ctx.connection, which also completes the job.
        self.transactional = bool(transactional)
        if transactional:
            if batch_size is not None:
                raise ConfigurationError(
                    f"task {name!r}: transactional=True is not supported for batch tasks: a batch's jobs are "
                    "finished together, each with its own fence, so one transaction cannot commit them exactly "
                    "once each; make it a task of one job a call, or write in the batch handler and make the "
                    "writes idempotent"
                )
            pass_context = True  # the transaction is ctx.connection
        #: Args and results stored encrypted (pgq.encryption).
        self.encrypt = bool(encrypt)
        if encrypt and batch_size is not None:
            raise ConfigurationError(f"task {name!r}: encrypt=True is not supported for batch tasks")
        self.fn = fn
        self.name = name
        self.queue = queue
        self.priority = priority
        self.max_attempts = max_attempts
        self.backoff = backoff
        #: Times a job may snooze (raise pgq.Snooze); None: no limit.
        self.max_snoozes = max_snoozes
        self.timeout = _seconds(timeout, "timeout") if timeout is not None else None
        self.pass_context = pass_context
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        if pass_context and not self.signature.parameters:
            raise ConfigurationError(
                f"task {name!r} has {'transactional' if transactional else 'pass_context'}=True but takes no "
                "arguments; its first parameter receives the pgq.JobContext"
                + (" (ctx.connection is the transaction)" if transactional else "")
            )
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        #: Jobs a batch handler gets at most per call; None for a task that takes one job a call.
        self.batch_size: int | None = None
        #: Seconds a batch waits for more jobs after its first one, before the handler is called.
        self.batch_wait = 0.0
        if batch_size is not None or batch_wait is not None:
            self._init_batch(batch_size, batch_wait)
        parameters = list(self.signature.parameters.values())[1 if pass_context else 0 :]
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        self._accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        self._accepted = frozenset(p.name for p in parameters if p.kind in keyword)
        self._required = frozenset(
            p.name for p in parameters if p.kind in keyword and p.default is inspect.Parameter.empty
        )
        # Positional-only or *args parameters: leave every check to signature.bind.
        if any(p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL) for p in parameters):
            self._required = frozenset({"\0never"})
        checked = [p for p in parameters if p.kind in keyword] if self.batch_size is None else []
        hints = _hints(fn) if checked else None
        #: Checks the types of a job's args at enqueue (None: not checked).
        self._types = _args_types(fn, hints, checked) if validate else None
        #: Turns the parameters annotated with pydantic models or dataclasses from stored JSON
        #: into instances for the handler, and instances into JSON at enqueue (None: no such
        #: parameter).
        self.models = _model_args(fn, hints, checked)

    def _init_batch(self, batch_size: int | None, batch_wait: float | timedelta | None) -> None:
        name = self.name
        if batch_size is None:
            raise ConfigurationError(
                f"task {name!r} has batch_wait but no batch_size; add batch_size=N (2 to {MAX_BATCH_SIZE}) "
                "to make it a batch task, or drop batch_wait"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 2 <= batch_size <= MAX_BATCH_SIZE:
            raise ConfigurationError(
                f"batch_size of task {name!r} must be an integer from 2 to {MAX_BATCH_SIZE}, got {batch_size!r}"
                + ("; leave batch_size out for a task that takes one job a call" if batch_size in (0, 1) else "")
            )
        wait = DEFAULT_BATCH_WAIT if batch_wait is None else batch_wait
        seconds = _as_seconds(wait, f"batch_wait of task {name!r}")
        if not 0 <= seconds < float("inf"):
            raise ConfigurationError(
                f"batch_wait of task {name!r} must be a finite number of seconds >= 0, got {wait!r} "
                "(0 runs a batch with whatever is ready at once)"
            )
        if self.timeout is not None and seconds >= self.timeout:
            raise ConfigurationError(
                f"batch_wait of task {name!r} ({seconds:g} s) must be shorter than its timeout ({self.timeout:g} s): "
                "a batch's timeout counts from its first job's claim, so the wait uses part of it"
            )
        if self.pass_context:
            raise ConfigurationError(
                f"task {name!r}: pass_context cannot be combined with batch_size; a batch handler is called "
                "as fn(jobs) with a list of pgq.Job (each has id, attempts and args)"
            )
        try:
            self.signature.bind([])
        except TypeError:
            raise ConfigurationError(
                f"task {name!r} has batch_size, so it is called as fn(jobs) with one list of pgq.Job, "
                f"but {self.__name__}{self.signature} cannot take that; write def {self.__name__}(jobs: list[pgq.Job])"
            ) from None
        self.batch_size = batch_size
        self.batch_wait = seconds

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<pgq.Task {self.name}>"

    def fits(self, args: dict[str, Any]) -> bool:
        """True when ``fn(**args)`` can be called, decided with two set operations
        (a full ``signature.bind`` costs ~5 us a job on the worker's hot path); False
        also when only :meth:`check_args` can tell (positional-only parameters)."""
        given = args.keys()
        return self._required <= given and (self._accepts_any or given <= self._accepted)

    def check_args(self, args: dict[str, Any], encoded: bytes | None = None) -> None:
        """Raise :class:`InvalidJob` if ``fn(**args)`` could not be called, or, given the
        args as the JSON that will be stored (``encoded``), if a value does not fit its
        parameter's annotation as the handler will receive it (see :func:`_args_types`).

        A batch task's handler takes a list of jobs, not their args: any args pass."""
        if self.batch_size is not None:
            return
        if not self.fits(args):
            try:
                if self.pass_context:
                    self.signature.bind(None, **args)
                else:
                    self.signature.bind(**args)
            except TypeError as exc:
                raise InvalidJob(
                    f"args do not match task {self.name}{self.signature}: {exc}; got {sorted(args)}"
                ) from None
        if encoded is not None and self._types is not None:
            try:
                self._types.validate_json(encoded, strict=True)
            except pydantic.ValidationError as exc:
                raise InvalidJob(self._type_errors(exc)) from None

    def encode(self, args: dict[str, Any] | None, max_bytes: int, *, sealed: bool = True) -> bytes:
        """``args`` as the JSON a job of this task stores (model parameters as their JSON,
        :meth:`stored_args`), checked against the handler (:meth:`check_args`)."""
        if self.encrypt and args is not None and is_envelope(args):
            args = open_envelope(args, self.app.encryption_keys)  # a schedule's stored args
        if self.models is not None and type(args) is dict:
            args = self.stored_args(args)
        encoded = encode_args(args, max_bytes, self.name)
        self.check_args(args or {}, encoded)
        if self.encrypt and sealed:
            return seal(encoded, self.app.encryption_keys, self.name)
        return encoded

    def stored_schedule_args(self, args: dict[str, Any], max_bytes: int) -> dict[str, Any]:
        """A schedule's args as its row keeps them: encrypted for an encrypted task."""
        encoded = self.encode(args, max_bytes)  # checks them, in either case
        return orjson.loads(encoded) if self.encrypt else args

    def stored_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` with the values of model parameters as JSON values (a model or dataclass
        instance, or a dict of its fields, as the dict its JSON is); others unchanged."""
        if self.models is None:
            return args
        try:
            converted = self.models.dump_python(self.models.validate_python(args), mode="json")
        except pydantic.ValidationError as exc:
            raise InvalidJob(self._type_errors(exc)) from None
        return {**args, **converted}

    def handler_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` as the handler takes them: the model parameters' JSON made into instances.
        Raises :class:`InvalidJob` if a stored value does not fit its model (a job written by SQL)."""
        if self.models is None:
            return args
        try:
            return {**args, **self.models.validate_python(args)}
        except pydantic.ValidationError as exc:
            raise InvalidJob(self._type_errors(exc, stored=True)) from None

    def _type_errors(self, exc: pydantic.ValidationError, stored: bool = False) -> str:
        problems = []
        for error in exc.errors(include_url=False)[:5]:
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"{where}: {error['msg'].lower()} (got {error['input']!r:.60})")
        if stored:
            return (
                f"the stored args do not fit task {self.name}{self.signature}: {'; '.join(problems)}. "
                "They were written without pgq's check (SQL) or before the model changed: enqueue the job "
                "again with args that fit"
            )
        return (
            f"args do not fit task {self.name}{self.signature}: {'; '.join(problems)}. Pass values of the "
            "annotated types (as JSON gives them to the handler: a datetime or UUID as its string), or turn "
            "the check off with @app.task(validate=False)"
        )

    def spec(self, **args: Any) -> JobSpec:
        """A :class:`JobSpec` of this task with ``args``, for ``enqueue_many`` and workflows."""
        return JobSpec(task=self.name, args=args)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Enqueue one job of this task with keyword arguments; returns its id."""
        if args:
            raise InvalidJob(
                f"{self.name}.enqueue takes keyword arguments only (they are stored as JSON), "
                f"got {len(args)} positional"
            )
        return self.app.enqueue(self, dict(kwargs))

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """The async twin of :meth:`enqueue`."""
        if args:
            raise InvalidJob(f"{self.name}.enqueue_async takes keyword arguments only")
        return await self.app.enqueue_async(self, dict(kwargs))

    def options(self, **options: Any) -> BoundTask[P, R]:
        """Per-job options (queue, priority, run_at, delay, key, max_attempts, tags, meta, connection)."""
        return BoundTask(self, options)


class BoundTask(Generic[P, R]):
    """A task with per-job options set: ``task.options(delay=60).enqueue(user_id=7)``."""

    def __init__(self, task: Task[P, R], options: dict[str, Any]) -> None:
        self.task = task
        self.opts = options

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> int:
        if args:
            raise InvalidJob(f"{self.task.name}.options(...).enqueue takes keyword arguments only")
        return self.task.app.enqueue(self.task, dict(kwargs), **self.opts)

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> int:
        if args:
            raise InvalidJob(f"{self.task.name}.options(...).enqueue_async takes keyword arguments only")
        return await self.task.app.enqueue_async(self.task, dict(kwargs), **self.opts)

    def spec(self, **args: Any) -> JobSpec:
        """A :class:`JobSpec` of this task with ``args`` and these options, for
        ``enqueue_many`` and workflows: ``callback.options(on_parent_failure="run").spec(batch=7)``."""
        spec_fields = {f.name for f in dataclasses.fields(JobSpec)} - {"task", "args"}
        unknown = sorted(set(self.opts) - spec_fields)
        if unknown:
            raise InvalidJob(
                f"{', '.join(unknown)} cannot go on a JobSpec (they apply to a whole enqueue call: "
                f"pass them to enqueue_many or enqueue_workflow); a JobSpec takes {', '.join(sorted(spec_fields))}"
            )
        return JobSpec(task=self.task.name, args=args, **self.opts)


def _hints(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """The handler's resolved annotations, or None if they cannot be resolved."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return None


def _args_types(
    fn: Callable[..., Any], hints: dict[str, Any] | None, parameters: Sequence[inspect.Parameter]
) -> pydantic.TypeAdapter[Any] | None:
    """A validator of a job's args as stored (JSON) against the annotations of the
    handler's keyword parameters, or None when none can be checked.

    Strict, as the handler receives them: ``"5"`` is not an int, ``1`` not a bool, and a
    datetime, date or UUID is its JSON string. Names, missing and unknown arguments are
    :meth:`Task.check_args`'s: every key is optional here, and others are ignored. A
    parameter without an annotation, annotated ``Any``, or with a type pydantic cannot
    check (a plain class) is not checked; nor are a handler's annotations that cannot
    be resolved (a name defined after it): those are its author's to fix, not a reason
    to refuse its jobs."""
    return _adapter(fn, "args", hints, parameters, _checkable)


def _model_args(
    fn: Callable[..., Any], hints: dict[str, Any] | None, parameters: Sequence[inspect.Parameter]
) -> pydantic.TypeAdapter[Any] | None:
    """A validator over the parameters whose annotation holds a pydantic model or a
    dataclass (``Order``, ``Order | None``, ``list[Order]``, ...), or None if none does:
    only those are converted, so a handler whose parameters are plain JSON types costs
    nothing more per job."""
    return _adapter(fn, "models", hints, parameters, _holds_model)


def _adapter(
    fn: Callable[..., Any],
    kind: str,
    hints: dict[str, Any] | None,
    parameters: Sequence[inspect.Parameter],
    keep: Callable[[Any], bool],
) -> pydantic.TypeAdapter[Any] | None:
    """A validator of a dict whose keys are those of ``parameters`` whose annotation
    ``keep`` accepts, each optional, typed by that annotation; None if there are none."""
    if hints is None:
        return None
    fields = {
        parameter.name: typing_extensions.NotRequired[hints[parameter.name]]
        for parameter in parameters
        if parameter.name in hints and keep(hints[parameter.name])
    }
    if not fields:
        return None
    shape = typing_extensions.TypedDict(  # type: ignore[misc]
        f"{getattr(fn, '__name__', 'task')}_{kind}", fields
    )
    return pydantic.TypeAdapter(shape)


def _checkable(hint: Any) -> bool:
    if hint is Any:
        return False
    try:
        pydantic.TypeAdapter(hint)
    except Exception:
        return False
    return True


def _holds_model(hint: Any) -> bool:
    if isinstance(hint, type) and (issubclass(hint, pydantic.BaseModel) or dataclasses.is_dataclass(hint)):
        return True
    return any(_holds_model(arg) for arg in typing.get_args(hint))


def _as_seconds(value: float | timedelta, what: str) -> float:
    """``value`` (seconds or a timedelta) in seconds; a :class:`ConfigurationError` naming ``what`` if it is neither."""
    seconds = to_seconds(value)
    if seconds is None:
        raise ConfigurationError(f"{what} must be seconds (a number) or a timedelta, got {value!r}")
    return seconds


def _seconds(value: float | timedelta, name: str) -> float:
    seconds = _as_seconds(value, name)
    if seconds <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value!r}")
    return seconds
