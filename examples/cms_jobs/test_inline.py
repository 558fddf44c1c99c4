"""examples/cms_jobs inline, with pgq.testing (no worker process): fast checks next to the end-to-end
tests of test_cms_jobs.py. They show how to test such code: point the module's ``app`` at the test's
database with ``use_database``, check what a request enqueued with ``assert_enqueued``, run the jobs in
the test's process with ``drain``, and one handler with ``run_job``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

import pgq
from pgq.testing import assert_enqueued, drain, refute_enqueued, use_database


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
