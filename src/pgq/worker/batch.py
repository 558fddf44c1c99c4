"""A batch: the jobs of one batch task and queue that a worker runs in one handler call."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from pgq.task import Task
from pgq.worker.executor import RunningJob

#: Seconds between top-ups of a waiting batch when no notification comes.
BATCH_POLL = 0.25
#: A notification wakes a waiting batch after this many seconds, so that a burst
#: of enqueues costs one top-up claim, not one per statement.
TOP_UP_GAP = 0.02


@dataclass(eq=False)
class Batch:
    """Jobs of ``task`` in ``queue`` held by one worker, which together take one slot."""

    task: Task[Any, Any]
    queue: str
    members: list[RunningJob] = field(default_factory=list)
    #: When the first job arrived (monotonic): the wait is counted from there.
    opened: float = field(default_factory=time.monotonic)
    #: Set by a jobs notification, a stop, or a member's cancellation.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: The task that collects the batch and calls the handler.
    future: asyncio.Task[None] | None = None
    #: True once the handler is called: jobs arriving later start another batch.
    running: bool = False
    #: True once the handler call was cancelled (every member had to stop).
    interrupted: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.task.name, self.queue)

    @property
    def size(self) -> int:
        assert self.task.batch_size is not None
        return self.task.batch_size

    @property
    def full(self) -> bool:
        return len(self.members) >= self.size

    def claim_order(self) -> list[RunningJob]:
        """The members in the order a claim takes jobs: priority, then run_at, then id."""
        return sorted(self.members, key=lambda r: (-r.job.priority, r.job.run_at, r.job.id))
