"""``app.tasks``: an app's tasks by name, where a task's former names (``aliases=``)
find it too, so that jobs enqueued before a rename still run.

Only the current names are keys (iteration, ``len``, ``values()``); a lookup
(``[]``, ``get``, ``in``) takes a former name as well.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from pgq.errors import ConfigurationError
from pgq.task import Task

T = TypeVar("T")


class TaskRegistry(dict[str, Task[Any, Any]]):
    def __init__(self) -> None:
        super().__init__()
        #: Former name -> current name.
        self.aliases: dict[str, str] = {}

    def _current(self, name: Any) -> Any:
        return self.aliases.get(name, name) if isinstance(name, str) else name

    def __getitem__(self, name: str) -> Task[Any, Any]:
        return super().__getitem__(self._current(name))

    def __contains__(self, name: object) -> bool:
        return super().__contains__(self._current(name))

    @overload
    def get(self, name: str, default: None = None, /) -> Task[Any, Any] | None: ...

    @overload
    def get(self, name: str, default: Task[Any, Any], /) -> Task[Any, Any]: ...

    @overload
    def get(self, name: str, default: T, /) -> Task[Any, Any] | T: ...

    def get(self, name: str, default: Any = None, /) -> Any:
        # A current name first, without the alias lookup: a worker asks twice per job.
        task = dict.get(self, name)
        if task is not None:
            return task
        return super().get(self._current(name), default)

    def names(self) -> list[str]:
        """Every name a worker of this app runs jobs of: current and former, sorted."""
        return sorted([*self, *self.aliases])

    def add(self, task: Task[Any, Any], aliases: tuple[str, ...]) -> None:
        """Register ``task`` under its name and ``aliases``; a name taken by another task is refused."""
        for alias in aliases:
            if alias == task.name:
                raise ConfigurationError(f"task {task.name!r} lists its own name in aliases=")
            owner = self.aliases.get(alias)
            if owner is not None and owner != task.name:
                raise ConfigurationError(f"alias {alias!r} of task {task.name!r} is already an alias of {owner!r}")
            if super().__contains__(alias):
                raise ConfigurationError(f"alias {alias!r} of task {task.name!r} is the name of another task")
        owner = self.aliases.get(task.name)
        if owner is not None and owner != task.name:
            raise ConfigurationError(
                f"task name {task.name!r} is already an alias of task {owner!r}; a former name cannot be reused"
            )
        self[task.name] = task
        for alias in aliases:
            self.aliases[alias] = task.name


def check_aliases(task_name: str, aliases: Any) -> tuple[str, ...]:
    """``aliases=`` of ``@app.task``: a list of task names, or ConfigurationError."""
    if isinstance(aliases, str) or not isinstance(aliases, (list, tuple, set, frozenset)):
        raise ConfigurationError(
            f"aliases of task {task_name!r} must be a list of former names, e.g. aliases=['old_name'], got {aliases!r}"
        )
    for alias in aliases:
        if not isinstance(alias, str) or not alias.strip() or len(alias) > 255:
            raise ConfigurationError(
                f"alias {alias!r} of task {task_name!r} is not a task name "
                "(a non-empty string of at most 255 characters)"
            )
    return tuple(dict.fromkeys(aliases))
