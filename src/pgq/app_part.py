"""The base of :class:`pgq.App`'s parts: its operations, schedules, bulk actions and job
edits, each an object the app holds and a public method of the app calls.

A part reads the app's database, schema, settings and tasks through the app, at call
time: an app may be configured after it is made, and its parts see the change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, Unpack

if TYPE_CHECKING:
    from pgq.db.database import Database
    from pgq.job import EnqueueOptions, Job
    from pgq.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


class AppLike(Protocol):
    """What the parts need from :class:`pgq.App`."""

    settings: Settings

    @property
    def schema(self) -> str: ...

    @property
    def db(self) -> Database: ...

    @property
    def tasks(self) -> Mapping[str, Any]: ...

    def get_job(self, job_id: int) -> Job | None: ...

    def enqueue(self, task: Any, args: dict[str, Any] | None = None, **options: Unpack[EnqueueOptions]) -> int: ...


class AppPart:
    """A part reaches the app's database, schema, settings and tasks as ``self.app.x``."""

    def __init__(self, app: AppLike) -> None:
        self.app = app


def part_method(part: str, method: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
    """A method of the app that calls ``method`` on the app's attribute ``part``, with
    the part's signature and docstring (``cancel = part_method("_operations",
    OperationControls.cancel)``)."""

    @functools.wraps(method)
    def call(app: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(getattr(app, part), *args, **kwargs)

    return call
