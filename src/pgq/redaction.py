"""Masking secrets in job args wherever they are shown or returned (``PGQ_REDACT_KEYS``).

Shared by the dashboard, its REST API and the CLI, so none of them shows what
another hides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pgq.display import clip
from pgq.encryption import SHOWN, is_envelope

if TYPE_CHECKING:
    from pgq.job import Job
    from pgq.schedules import Schedule

REDACTED = "[redacted]"


def normalize_key(key: str) -> str:
    """``API-Key``, ``api_key`` and ``apiKey`` are one key for redaction."""
    return key.lower().replace("_", "").replace("-", "")


class Redactor:
    """Masks the values of secret-looking keys at any depth. A key is secret when
    its normalised name contains a configured one: ``token`` also covers
    ``access_token`` and ``password`` covers ``db_password``. A false positive
    hides a value from view; a false negative shows a secret, so the match is wide."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = tuple(sorted({normalize_key(k) for k in keys if k.strip()}))

    def is_secret(self, key: str) -> bool:
        name = normalize_key(key)
        return any(secret in name for secret in self.keys)

    def __call__(self, value: Any) -> Any:
        if not self.keys:
            return value
        if isinstance(value, dict):
            return {k: REDACTED if isinstance(k, str) and self.is_secret(k) else self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value


def redact_job(job: Job, redact: Redactor) -> Job:
    """The job as every surface shows it (pages, API, CLI): ``args``, ``result`` and ``meta``
    with the values of secret keys masked (an encrypted task's args and result as
    ``<encrypted>``), and those and ``errors`` cut at
    :data:`pgq.display.DISPLAY_DEPTH` levels. Error messages are free text: not redacted."""
    return dataclasses.replace(
        job,
        args=_shown(job.args, redact),
        result=_shown(job.result, redact),
        errors=clip(job.errors),
        meta=None if job.meta is None else redact(clip(job.meta)),
    )


def redact_schedule(schedule: Schedule, redact: Redactor) -> Schedule:
    """A schedule as every surface shows it: its job's args masked and bounded, as a job's."""
    return dataclasses.replace(schedule, args=_shown(schedule.args, redact))


def _shown(value: Any, redact: Redactor) -> Any:
    """A stored value as shown: ``<encrypted>`` for an encrypted task's envelope."""
    return SHOWN if is_envelope(value) else redact(clip(value))
