"""``pgq demo``: the quick start's whole loop in one command.

It migrates the database (the embedded PostgreSQL unless PGQ_DATABASE_URL is
set), enqueues a handful of jobs, runs a worker until they are all finished,
and shows them: completed, one retried after a failure, one delayed, one
failed for good.
"""

from __future__ import annotations

import asyncio
import time

from pgq.app import App
from pgq.context import JobContext
from pgq.errors import PermanentError
from pgq.job import JobSpec
from pgq.output import jobs_table

DEMO_QUEUES = ["emails", "images", "default"]


def register_demo_tasks(app: App) -> None:
    attempts: dict[int, int] = {}

    @app.task(queue="emails", max_attempts=3, backoff=0.5)
    def send_welcome(user_id: int, email: str) -> str:
        attempts[user_id] = attempts.get(user_id, 0) + 1
        if user_id == 2 and attempts[user_id] == 1:
            raise ConnectionError("SMTP server said 421, try again later")
        if "@" not in email:
            raise PermanentError(f"invalid address {email!r}")
        return f"sent to {email}"

    @app.task(queue="images", pass_context=True)
    async def resize_image(ctx: JobContext, url: str) -> dict[str, str]:
        for step in range(1, 5):
            ctx.set_progress(step / 4, f"tile {step} of 4")
            await asyncio.sleep(0.05)
        return {"thumbnail": url.replace(".png", "-small.png")}

    @app.task
    def weekly_report(week: int) -> dict[str, int]:
        return {"week": week, "signups": 42}


def run_demo(app: App, timeout: float = 60.0) -> int:
    where = f"embedded PostgreSQL in {app.settings.data_dir}" if app.uses_embedded else "PGQ_DATABASE_URL"
    print(f"database: {where}")
    app.migrate()
    print(f"schema {app.schema!r} migrated")
    register_demo_tasks(app)
    ids = app.enqueue_many(
        [
            JobSpec("send_welcome", {"user_id": 1, "email": "ada@example.com"}),
            JobSpec("send_welcome", {"user_id": 2, "email": "alan@example.com"}),
            JobSpec("send_welcome", {"user_id": 3, "email": "not-an-address"}),
            JobSpec("resize_image", {"url": "https://example.com/cat.png"}, priority=5),
            JobSpec("weekly_report", {"week": 48}, delay=1.5),
        ]
    )
    print(f"enqueued jobs {', '.join(map(str, ids))}; running a worker until they finish")
    print()
    asyncio.run(_work_until_done(app, ids, timeout))
    print()
    print(jobs_table([job for job in (app.get_job(i) for i in ids) if job is not None]))
    print()
    print("next: `pgq jobs show ID` for one job's attempts and errors, or SQL:")
    print(f"  select id, task, status, attempts, result from {app.schema}.job_history order by id;")
    return 0


async def _work_until_done(app: App, ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with app.worker(queues=DEMO_QUEUES, concurrency=4, poll_interval=0.5):
        while time.monotonic() < deadline:
            jobs = await asyncio.to_thread(lambda: [app.get_job(i) for i in ids])
            if all(job is not None and job.is_finished for job in jobs):
                return
            await asyncio.sleep(0.2)
