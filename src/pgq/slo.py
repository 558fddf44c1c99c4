"""Service-level objectives: a queue's thresholds, and which of them its figures break.

Five objectives, each on a figure :meth:`pgq.App.stats` measures:

| objective | figure | breached when |
| --- | --- | --- |
| ``wait_p95`` | queue latency p95 (due to start), recent completed jobs | above the threshold |
| ``run_p95`` | processing time p95 (start to finish), the same jobs | above |
| ``utilization`` | busy slot-seconds over the slot-seconds of the live workers serving the queue, last minute | below |
| ``error_rate`` | failed / (completed + failed) over the stats window | above |
| ``completion_rate`` | completed / (completed + failed + cancelled) over the window | below |

A queue's own thresholds (``queues.slo``, set with ``app.set_queue(name, slo_...=)``
or ``pgq queues set NAME --slo-...``) win over the ``PGQ_SLO_*`` settings; an
objective with no threshold anywhere is not checked. A figure that cannot be
measured (no completed job, no live worker) breaks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pgq.errors import ConfigurationError
from pgq.flow import UNSET
from pgq.settings import Settings


@dataclass(frozen=True)
class Objective:
    #: The name of the objective, and of its key in ``queues.slo`` (``ms`` or ``pct`` added).
    name: str
    key: str
    #: What the figure is, for messages and tables.
    label: str
    #: True: a figure above the threshold breaks it; False: below.
    upper: bool
    #: The ``QueueStats`` field that holds the figure.
    figure: str


OBJECTIVES = (
    Objective("wait_p95", "wait_p95_ms", "queue latency p95 (ms)", True, "wait_ms_p95"),
    Objective("run_p95", "run_p95_ms", "processing time p95 (ms)", True, "run_ms_p95"),
    Objective("utilization", "utilization_pct", "worker utilisation (%)", False, "utilization_pct"),
    Objective("error_rate", "error_rate_pct", "error rate (%)", True, "error_rate_pct"),
    Objective("completion_rate", "completion_rate_pct", "completion rate (%)", False, "completion_rate_pct"),
)
BY_NAME = {objective.name: objective for objective in OBJECTIVES}


def _seconds_ms(value: Any, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < float("inf"):
        raise ConfigurationError(f"{what} must be a positive number of seconds or a timedelta, got {value!r}")
    return float(seconds) * 1000.0


def _percent(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ConfigurationError(f"{what} must be a percentage from 0 to 100, got {value!r}")
    return float(value)


def changes(**given: Any) -> tuple[dict[str, float], list[str]]:
    """The keys of ``queues.slo`` to set, and those to remove (given as None), from
    ``set_queue``'s ``slo_*`` arguments (``UNSET``: left as they are). Seconds for the
    two p95 objectives, percentages for the three others."""
    to_set: dict[str, float] = {}
    to_remove: list[str] = []
    for name, value in given.items():
        objective = BY_NAME[name]
        if value is UNSET:
            continue
        if value is None:
            to_remove.append(objective.key)
        elif objective.key.endswith("_ms"):
            to_set[objective.key] = _seconds_ms(value, f"slo_{name}")
        else:
            to_set[objective.key] = _percent(value, f"slo_{name}")
    return to_set, to_remove


def thresholds(stored: dict[str, Any] | None, settings: Settings) -> dict[str, float]:
    """The thresholds that hold for a queue, by key of ``queues.slo``: its own, else the settings'."""
    defaults = {
        "wait_p95_ms": None if settings.slo_wait_p95 is None else settings.slo_wait_p95 * 1000.0,
        "run_p95_ms": None if settings.slo_run_p95 is None else settings.slo_run_p95 * 1000.0,
        "utilization_pct": settings.slo_utilization,
        "error_rate_pct": settings.slo_error_rate,
        "completion_rate_pct": settings.slo_completion_rate,
    }
    own = stored or {}
    found = {}
    for objective in OBJECTIVES:
        value = own.get(objective.key, defaults[objective.key])
        if value is not None:
            found[objective.key] = float(value)
    return found


def breaches(figures: dict[str, float | None], limits: dict[str, float]) -> list[str]:
    """The objectives whose figure is on the wrong side of its threshold."""
    broken = []
    for objective in OBJECTIVES:
        limit = limits.get(objective.key)
        figure = figures.get(objective.figure)
        if limit is None or figure is None:
            continue
        if (figure > limit) if objective.upper else (figure < limit):
            broken.append(objective.name)
    return broken


def share(part: int, whole: int) -> float | None:
    """``part`` as a percentage of ``whole``; None when there is nothing to count."""
    return None if whole <= 0 else 100.0 * part / whole
