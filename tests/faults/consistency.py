"""What every fault scenario checks at its end, from the tables alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LEGAL_LIVE = {"pending", "running", "blocked"}
LEGAL_FINISHED = {"completed", "failed", "cancelled"}


@dataclass
class Counts:
    jobs: int
    completed: int
    failed: int
    lost: int
    duplicated: int
    overlapping: int
    #: jobs run more often than their attempts say: a re-run that left no trace
    unexplained: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def check_tables(conn: Any, dbname: str) -> None:
    """The invariants of the job tables; raises AssertionError naming the one broken."""
    both = conn.execute("select count(*) as n from pgq.jobs j join pgq.job_history h on h.id = j.id").fetchone()["n"]
    assert both == 0, f"{both} jobs are both live and finished"
    live = {r["status"] for r in conn.execute("select distinct status from pgq.jobs")}
    finished = {r["status"] for r in conn.execute("select distinct status from pgq.job_history")}
    assert live <= LEGAL_LIVE and finished <= LEGAL_FINISHED, (live, finished)
    on_dead = conn.execute(
        """select count(*) as n from pgq.jobs j left join pgq.workers w on w.id = j.worker_id
           where j.status = 'running' and (w.id is null or w.status in ('dead', 'stopped'))"""
    ).fetchone()["n"]
    assert on_dead == 0, f"{on_dead} jobs are running on dead or stopped workers"
    over = conn.execute(
        """select count(*) as n from (select attempts, max_attempts from pgq.jobs
                                      union all select attempts, max_attempts from pgq.job_history) a
           where attempts > max_attempts"""
    ).fetchone()["n"]
    assert over == 0, f"{over} jobs have more attempts than max_attempts"
    idle = conn.execute(
        """select count(*) as n from pg_stat_activity
           where datname = %s and application_name like 'pgq %%' and state like 'idle in transaction%%'
             and now() - state_change > interval '5 seconds'""",
        [dbname],
    ).fetchone()["n"]
    assert idle == 0, f"{idle} pgq sessions are idle in a transaction"
    usage = conn.execute("select pg_notification_queue_usage() as u").fetchone()["u"]
    assert usage == 0, f"the notification queue is not drained ({usage:.2%} used)"


def count_runs(conn: Any, job_ids: list[int]) -> Counts:
    """Lost, duplicated and overlapping runs of ``job_ids``, from the handlers' `runs` rows."""
    rows = conn.execute(
        """select status, count(*) as n from pgq.all_jobs where id = any(%s) group by status""", [job_ids]
    ).fetchall()
    by_status = {r["status"]: r["n"] for r in rows}
    finished = by_status.get("completed", 0) + by_status.get("failed", 0) + by_status.get("cancelled", 0)
    duplicated = conn.execute(
        """select coalesce(sum(n - 1), 0) as n from (select count(*) as n from runs
           where job_id = any(%s) group by job_id having count(*) > 1) d""",
        [job_ids],
    ).fetchone()["n"]
    overlapping = conn.execute(
        """select count(distinct a.job_id) as n from runs a join runs b
             on a.job_id = b.job_id and a.ctid < b.ctid
           where a.job_id = any(%s)
             and a.started_at < coalesce(b.finished_at, 'infinity')
             and b.started_at < coalesce(a.finished_at, 'infinity')
             and a.finished_at is not null and b.finished_at is not null""",
        [job_ids],
    ).fetchone()["n"]
    unexplained = conn.execute(
        """select count(*) as n
             from (select job_id, count(*) as runs from runs where job_id = any(%s) group by job_id) r
             join pgq.all_jobs j on j.id = r.job_id
            where r.runs > j.attempts + jsonb_array_length(
                      jsonb_path_query_array(coalesce(j.errors, '[]'), '$[*] ? (@.charged == false)'))""",
        [job_ids],
    ).fetchone()["n"]
    return Counts(
        jobs=len(job_ids),
        unexplained=int(unexplained),
        completed=by_status.get("completed", 0),
        failed=by_status.get("failed", 0),
        lost=len(job_ids) - finished,
        duplicated=int(duplicated),
        overlapping=int(overlapping),
    )
