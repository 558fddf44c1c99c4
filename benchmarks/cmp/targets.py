"""Issue 14's targets as ratios of one run's rows, each with its target and met / not met."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from cmp.common import Result, p50, pct


@dataclass
class Check:
    label: str
    value: float | None
    target: str
    met: bool | None  # None: not measured in this run
    detail: str = ""

    def line(self) -> str:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[self.met]
        shown = "" if self.value is None else f"{self.value:.2f}"
        return f"| {self.label} | {shown} | {self.target} | {verdict} | {self.detail} |"


class Rows:
    """The run's results by row key; a key measured in several rounds has several results."""

    def __init__(self, results: dict[str, list[Result]]) -> None:
        self.results = results

    def rates(self, key: str) -> list[float]:
        return [r.jobs_per_s for r in self.results.get(key, []) if r.jobs_per_s]

    def rate(self, key: str) -> float | None:
        rates = self.rates(key)
        return statistics.median(rates) if rates else None

    def spread(self, key: str) -> float | None:
        """(max - min) / median over the rounds: how far apart one contender's runs land."""
        rates = self.rates(key)
        return (max(rates) - min(rates)) / statistics.median(rates) if len(rates) >= 2 else None

    def lags(self, key: str) -> list[float]:
        return [lag for r in self.results.get(key, []) for lag in r.lags_ms]

    def extra(self, key: str, name: str) -> float | None:
        for r in self.results.get(key, []):
            if name in r.extra:
                return r.extra[name]
        return None


def _ratio(label: str, mine: float | None, theirs: float | None, floor: float, detail: str = "") -> Check:
    if not mine or not theirs:
        return Check(label, None, f"≥ {floor:g}", None, detail)
    value = mine / theirs
    return Check(label, value, f"≥ {floor:g}", value >= floor, detail or f"{mine:,.0f} / {theirs:,.0f} jobs/s")


def _at_most(label: str, value: float | None, ceiling: float, unit: str, detail: str = "") -> Check:
    if value is None:
        return Check(label, None, f"≤ {ceiling:g}{unit}", None, detail)
    return Check(label, value, f"≤ {ceiling:g}{unit}", value <= ceiling, detail)


def checks(rows: Rows) -> list[Check]:
    rate = rows.rate
    found: list[Check] = [
        _ratio("drain, 10 slots: pgq / tight loop", rate("pgq_10"), rate("tight_10"), 0.8),
        _ratio("drain, 100 slots: pgq / tight loop", rate("pgq_100"), rate("tight_100"), 0.8),
        _ratio("drain: pgq at its defaults / PgQueuer batch 100", rate("pgq_100"), rate("pgqueuer_100"), 1.5),
        _ratio("drain, 2 processes: pgq / tight loop", rate("pgq_2p"), rate("tight_2p"), 0.8),
    ]
    for pgq_key, tight_key, what in (
        ("pgq_10", "tight_10", "10 slots"),
        ("pgq_100", "tight_100", "100 slots"),
        ("pgq_2p", "tight_2p", "2 processes"),
    ):
        mine, theirs = rows.spread(pgq_key), rows.spread(tight_key)
        label = f"stable, {what}: pgq's spread - the tight loop's"
        if mine is None or theirs is None:
            found.append(Check(label, None, "≤ 0", None, "needs --rounds 2 or more"))
        else:
            detail = f"(max - min) / median: pgq {mine:.0%}, tight loop {theirs:.0%}"
            found.append(Check(label, mine - theirs, "≤ 0", mine <= theirs, detail))
    idle = rows.lags("pgq_latency")
    found += [
        _at_most("idle latency p50 (ms)", p50(idle) if idle else None, 1.0, " ms", "commit → handler start"),
        _at_most("idle latency p99 (ms)", pct(idle, 0.99) if idle else None, 2.0, " ms", "commit → handler start"),
    ]
    load = rows.lags("pgq_latency_load")
    found.append(
        _at_most("latency under load at half the drain rate, p99 (ms)", pct(load, 0.99) if load else None, 10.0, " ms")
    )
    found += [
        _ratio("enqueue_many / PgQueuer batch enqueue", rate("pgq_many"), rate("pgqueuer_many"), 2),
        _ratio("enqueue_many / raw binary COPY", rate("pgq_many"), rate("copy"), 0.5),
        _ratio("enqueue, one job per call / plain insert + commit", rate("pgq_one"), rate("insert"), 0.8),
        _ratio("enqueue, 8 threads / 1 thread", rate("pgq_8"), rate("pgq_one"), 3),
        _ratio("flow: global limit 5 / unlimited at concurrency 5", rate("pgq_limit5"), rate("pgq_5"), 0.5),
        _ratio(
            "flow: 1,000 fair groups / unlimited, both at the default concurrency",
            rate("pgq_groups"),
            rate("pgq_100"),
            0.8,
        ),
        _ratio("ageing: after 1,000,000 jobs / fresh", rate("ageing_churned"), rate("ageing_fresh"), 0.9),
        _ratio("ageing: 10,000,000 rows in job_history / fresh", rate("ageing_history"), rate("ageing_fresh"), 0.9),
    ]
    first, last = rows.extra("ageing_rss", "rss_first_mb"), rows.extra("ageing_rss", "rss_last_mb")
    growth = (last / first - 1) * 100 if first and last else None
    detail = f"{first:.0f} → {last:.0f} MB" if first and last else "needs --ageing"
    found.append(_at_most("ageing: worker RSS growth over 1,000,000 jobs (%)", growth, 10.0, " %", detail))
    return found


def context(rows: Rows) -> list[str]:
    """Ratios without a target: where pgq stands against the ceilings and the other peers."""
    rate = rows.rate
    lines = []
    pairs: list[tuple[str, str, str]] = [
        ("pgq at its defaults / plain SQL, 1 job per transaction", "pgq_100", "plain_1_1"),
        ("pgq, 100 slots / plain SQL batched, 1 connection", "pgq_100", "plain_100_1"),
        ("pgq, 2 processes / plain SQL batched, 16 connections", "pgq_2p", "plain_100_16"),
        ("pgq at its defaults / PgQueuer at its defaults (batch 10)", "pgq_100", "pgqueuer_10"),
        ("pgq at its defaults / Procrastinate at its defaults", "pgq_100", "procrastinate_1"),
        ("pgq enqueue_many / Procrastinate batch defer", "pgq_many", "procrastinate_many"),
        ("pgq at its defaults / Celery", "pgq_100", "celery"),
        ("pgq at its defaults / RQ", "pgq_100", "rq"),
        ("pgq at its defaults / BullMQ", "pgq_100", "bullmq"),
    ]
    for label, mine, theirs in pairs:
        a, b = rate(mine), rate(theirs)
        if a and b:
            lines.append(f"  {label}: {a / b:.2f} ({a:,.0f} / {b:,.0f} jobs/s)")
    for key, who in (
        ("tight_latency", "the tight loop (LISTEN/NOTIFY)"),
        ("pgq_latency", "pgq"),
        ("pgqueuer_latency", "PgQueuer"),
        ("celery_latency", "Celery"),
        ("rq_latency", "RQ"),
        ("bullmq_latency", "BullMQ"),
    ):
        lags = rows.lags(key)
        if lags:
            lines.append(f"  idle latency p50 / p99, {who}: {p50(lags):.2f} / {pct(lags, 0.99):.2f} ms")
    for key, who in (("tight_latency_load", "the tight loop"), ("pgq_latency_load", "pgq")):
        lags = rows.lags(key)
        if lags:
            lines.append(f"  latency under load p50 / p99, {who}: {p50(lags):.2f} / {pct(lags, 0.99):.2f} ms")
    return lines
