"""examples/media_pipeline inline, with pgq.testing (no worker process): fast checks next to the end-to-end
tests of test_media_pipeline.py. They show how to test such code: point the module's ``app`` at the test's
database with ``use_database``, check what a request enqueued with ``assert_enqueued``, run the jobs in
the test's process with ``drain``, and one handler with ``run_job``."""

from __future__ import annotations

from pgq.testing import assert_enqueued, drain, use_database


def test_media_batch_callback_runs_once(database_url: str) -> None:
    from examples.media_pipeline import tasks

    with use_database(tasks.app, database_url) as app:
        with tasks.connect() as conn, conn.transaction():
            conn.execute(tasks.TABLES)
            batch = tasks.submit_batch(conn, ["a.png", "b.png", "c.png", "d.gif"], "http://127.0.0.1:9/hook")
        images = [job.id for job in app.list_jobs(task="process_image", limit=10)]
        callback = app.list_jobs(task="batch_finished")[0]
        assert callback.status == "blocked" and sorted(callback.depends_on or []) == sorted(images)
        assert app.cancel(min(images)) == "cancelled"  # a cancelled image counts as not done, like the gif
        outcomes = drain(app, "images")
        statuses = sorted((o.job.task, o.status) for o in outcomes)
        assert statuses == [
            ("batch_finished", "completed"),
            ("process_image", "completed"),
            ("process_image", "completed"),
            ("process_image", "failed"),
        ]
        assert outcomes[-1].job.task == "batch_finished"
        webhook = assert_enqueued(app, "deliver_webhook", queue="webhooks", count=1)[0]
        assert webhook.args["data"] == {"batch_id": batch, "done": 2, "failed": 2, "failed_images": [1, 4]}
