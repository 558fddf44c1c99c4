"""``pgq demo``: the quick start's first run, on the embedded PostgreSQL by default."""

from __future__ import annotations

from pgq.app import App
from pgq.job import JobSpec
from pgq.output import jobs_table


def run_demo(app: App) -> int:
    where = f"embedded PostgreSQL in {app.settings.data_dir}" if app.uses_embedded else "PGQ_DATABASE_URL"
    print(f"database: {where}")
    app.migrate()
    print(f"schema {app.schema!r} migrated")
    ids = app.enqueue_many(
        [
            JobSpec("send_welcome", {"user_id": 1, "email": "ada@example.com"}, queue="emails"),
            JobSpec("send_welcome", {"user_id": 2, "email": "alan@example.com"}, queue="emails"),
            JobSpec("resize_image", {"url": "https://example.com/cat.png"}, queue="images", priority=5),
            JobSpec("weekly_report", {"week": 48}, delay=60),
        ]
    )
    print(f"enqueued jobs {', '.join(map(str, ids))}")
    print()
    print(jobs_table(app.list_jobs(limit=10)))
    print()
    print("next: `pgq jobs show ID`, or query them in SQL: select * from pgq.all_jobs")
    return 0
