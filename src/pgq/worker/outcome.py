"""What became of one attempt, as the completer writes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgq.events import Event
from pgq.job import Job

#: Kinds the finish statement knows: the first three move the job to history.
KINDS = ("completed", "failed", "cancelled", "retry", "return", "snooze")

#: The hook and log event of each kind.
EVENTS = {
    "completed": "job_completed",
    "failed": "job_failed",
    "cancelled": "job_cancelled",
    "retry": "job_retrying",
    "return": "job_returned",
    "snooze": "job_snoozed",
}


@dataclass(slots=True)
class Outcome:
    job: Job
    kind: str
    result_json: str | None = None
    error: dict[str, Any] | None = None
    delay: float | None = None
    duration: float = 0.0
    #: Already written, in a transactional handler's own transaction: only to report.
    written: bool = False

    @property
    def event(self) -> str:
        """The hook/log event name of this outcome."""
        return EVENTS[self.kind]

    def as_event(self) -> Event:
        """What the hooks of this outcome's event are given."""
        return Event(
            self.event,
            self.job,
            result=self.result_json,
            error=self.error,
            retry_in=self.delay,
            duration=self.duration,
        )
