"""The jobs a worker holds, and how many of its slots they take.

A job takes a slot from its claim until its handler is done (its outcome may
still wait for the completer). A batch takes one slot for all its jobs. The
slot-seconds they hold are counted by queue: the worker's utilisation
(:class:`Utilization`, written by its heartbeat) is read off them.
"""

from __future__ import annotations

from collections import deque
from time import monotonic
from typing import TYPE_CHECKING

from pgq.worker.executor import RunningJob
from pgq.worker.wakeup import Wakeup

if TYPE_CHECKING:
    from pgq.worker.batch import Batch


class Slots:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        #: Every job held, by id (a batch's jobs too).
        self.jobs: dict[int, RunningJob] = {}
        self.batches: set[Batch] = set()
        self.used = 0
        #: Set whenever a slot is given back.
        self.freed = Wakeup()
        #: Slot-seconds of the holds that ended, by queue.
        self._busy: dict[str, float] = {}
        #: When each slot still held was taken: by job id, and by batch.
        self._since: dict[int, float] = {}
        self._batch_since: dict[Batch, float] = {}

    def free(self) -> int:
        return self.concurrency - self.used

    def hold(self, running: RunningJob) -> None:
        self.jobs[running.job.id] = running
        if running.batch is None:
            self.used += 1
            self._since[running.job.id] = monotonic()

    def release(self, running: RunningJob) -> None:
        if self.jobs.get(running.job.id) is running:
            del self.jobs[running.job.id]
            if running.batch is None:
                self.used -= 1
                self._count(running.job.queue, self._since.pop(running.job.id, None))
                self.freed.set()

    def open_batch(self, batch: Batch) -> None:
        self.batches.add(batch)
        self.used += 1
        self._batch_since[batch] = monotonic()

    def close_batch(self, batch: Batch) -> None:
        if batch in self.batches:
            self.batches.discard(batch)
            self.used -= 1
            self._count(batch.queue, self._batch_since.pop(batch, None))
            self.freed.set()

    def _count(self, queue: str, since: float | None) -> None:
        if since is not None:
            self._busy[queue] = self._busy.get(queue, 0.0) + (monotonic() - since)

    def busy_seconds(self, now: float) -> dict[str, float]:
        """Slot-seconds held so far, by queue, the slots still held counted up to ``now``."""
        busy = dict(self._busy)
        for job_id, since in self._since.items():
            queue = self.jobs[job_id].job.queue
            busy[queue] = busy.get(queue, 0.0) + (now - since)
        for batch, since in self._batch_since.items():
            busy[batch.queue] = busy.get(batch.queue, 0.0) + (now - since)
        return busy


class Utilization:
    """The share of a worker's slots its jobs held over the last minute (or since it started).

    Sampled at each heartbeat: the busy slot-seconds of each queue between the oldest
    sample kept (a minute ago) and now, over the slot-seconds the worker had."""

    #: Seconds the figure looks back.
    WINDOW = 60.0

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
        self._samples: deque[tuple[float, dict[str, float]]] = deque([(monotonic(), {})])

    def sample(self) -> tuple[float, dict[str, float]] | None:
        """The utilisation (0 to 1) and each queue's busy slots on average; None before
        any time passed."""
        now = monotonic()
        busy = self.slots.busy_seconds(now)
        samples = self._samples
        samples.append((now, busy))
        while len(samples) > 2 and now - samples[1][0] >= self.WINDOW:
            samples.popleft()
        start, before = samples[0]
        span = now - start
        if span <= 0 or self.slots.concurrency <= 0:
            return None
        per_queue = {
            queue: round((seconds - before.get(queue, 0.0)) / span, 3)
            for queue, seconds in busy.items()
            if seconds > before.get(queue, 0.0)
        }
        return min(sum(per_queue.values()) / self.slots.concurrency, 1.0), per_queue
