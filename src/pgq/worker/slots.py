"""The jobs a worker holds, and how many of its slots they take.

A job takes a slot from its claim until its handler is done (its outcome may
still wait for the completer). A batch takes one slot for all its jobs.
"""

from __future__ import annotations

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

    def free(self) -> int:
        return self.concurrency - self.used

    def hold(self, running: RunningJob) -> None:
        self.jobs[running.job.id] = running
        if running.batch is None:
            self.used += 1

    def release(self, running: RunningJob) -> None:
        if self.jobs.get(running.job.id) is running:
            del self.jobs[running.job.id]
            if running.batch is None:
                self.used -= 1
                self.freed.set()

    def open_batch(self, batch: Batch) -> None:
        self.batches.add(batch)
        self.used += 1

    def close_batch(self, batch: Batch) -> None:
        if batch in self.batches:
            self.batches.discard(batch)
            self.used -= 1
            self.freed.set()
