"""The examples' handlers and flows run inline with pgq.testing (no worker process): fast checks
next to the end-to-end tests of test_examples_*.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

import pgq
from pgq.testing import assert_enqueued, drain, refute_enqueued, run_job, use_database


@pytest.fixture
def cms(database_url: str) -> Iterator[pgq.App]:
    from examples.cms_jobs.api import engine
    from examples.cms_jobs.jobs import app

    with use_database(app, database_url):
        engine.dispose()  # the API's engine connects with app.url: drop connections to an earlier test's database
        yield app
    engine.dispose()


def test_cms_article_and_jobs_commit_together(cms: pgq.App) -> None:
    from examples.cms_jobs.api import TOKEN, api

    with TestClient(api, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        body = {"title": "Hi", "slug": "hi", "author_email": "ed@example.com", "images": ["x.png"]}
        article = client.post("/articles", json=body).json()
        assert client.post("/articles", json={**body, "slug": "other", "tags": ["nope"]}).status_code == 409
        assert_enqueued(cms, "send-email", {"article_id": article["id"]}, queue="cms", priority=10)
        assert_enqueued(cms, "process-image", {"image_url": "x.png"}, count=1)
        assert_enqueued(cms, count=3)  # nothing from the failed write
        outcomes = drain(cms)
        assert [o.status for o in outcomes] == ["completed"] * 3
        refute_enqueued(cms)
        assert client.get(f"/jobs/{article['jobs'][0]}").json()["status"] == "completed"


def test_signup_errors_transient_and_permanent(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.signup import mailer, tasks

    monkeypatch.setattr(mailer, "_tries", Counter())  # the fake provider's memory of earlier tests

    with use_database(tasks.app, database_url) as app:
        tasks.setup()
        with tasks.connect() as conn:
            ids = [
                conn.execute("insert into users (email, name) values (%s, 'x') returning id", [email]).fetchone()[0]
                for email in ("x+flaky@example.com", "y@nowhere.invalid")
            ]
        flaky = run_job(app, tasks.send_welcome_email, {"user_id": ids[0]})
        assert flaky.status == "retry" and flaky.error["type"] == "MailerUnavailable"
        assert run_job(app, tasks.send_welcome_email, {"user_id": ids[0]}, attempt=2).completed
        bad = run_job(app, tasks.send_welcome_email, {"user_id": ids[1]})
        assert bad.status == "failed" and bad.error["type"] == "PermanentError"


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


def test_course_video_reports_progress(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.course_platform import tasks

    monkeypatch.setattr(tasks, "STEP_SECONDS", 0.01)
    outcome = run_job(tasks.app, tasks.transcode_video, {"video_id": 3})
    assert outcome.completed and outcome.progress == 1.0
    assert outcome.result == {"url": "https://videos.example.com/3/720p.mp4"}
