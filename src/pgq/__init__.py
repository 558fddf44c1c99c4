"""pgq: a job queue that lives entirely in PostgreSQL.

import pgq

app = pgq.App()

@app.task(queue="emails")
def send_welcome(user_id: int) -> None: ...

send_welcome.enqueue(user_id=7)
"""

from pgq.app import App
from pgq.context import JobContext
from pgq.errors import (
    ArgsNotSerializable,
    ConfigurationError,
    DatabaseUnavailable,
    InvalidJob,
    InvalidState,
    JobNotFound,
    NotMigrated,
    PayloadTooLarge,
    PermanentError,
    PgqError,
    QueueFull,
    Retry,
    Snooze,
    UnknownTask,
)
from pgq.events import Event
from pgq.job import EnqueueOptions, Job, JobSpec
from pgq.migrate import migrate
from pgq.operations import QueueInfo, QueueStats, WorkerInfo
from pgq.settings import Settings
from pgq.task import Task
from pgq.workflow import Chain, Group, chain, group

__version__ = "0.1.0"

__all__ = [
    "App",
    "ArgsNotSerializable",
    "Chain",
    "ConfigurationError",
    "DatabaseUnavailable",
    "EnqueueOptions",
    "Event",
    "Group",
    "InvalidJob",
    "InvalidState",
    "Job",
    "JobContext",
    "JobNotFound",
    "JobSpec",
    "NotMigrated",
    "PayloadTooLarge",
    "PermanentError",
    "PgqError",
    "QueueFull",
    "QueueInfo",
    "QueueStats",
    "Retry",
    "Settings",
    "Snooze",
    "Task",
    "UnknownTask",
    "WorkerInfo",
    "__version__",
    "chain",
    "group",
    "migrate",
]
