"""Tags and meta (issue 17): every enqueue path stores them, the handler sees them, history
keeps them, and jobs are found by tag and by args, on both servers."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

import pgq
from pgq.output import job_detail
from pgq.web import create_app
from tests.openapi_check import CheckedClient
from tests.processes import pgq_cli
from tests.test_worker import finished, job, run_until


async def test_every_enqueue_path_stores_tags_and_meta_and_the_handler_sees_them(
    app: pgq.App, database_url: str, conn: Any
) -> None:
    seen: dict[int, tuple[Any, Any]] = {}

    @app.task(pass_context=True)
    def work(ctx: pgq.JobContext, n: int = 0) -> None:
        seen[ctx.job.id] = (ctx.job.tags, ctx.job.meta)

    ids = {
        "enqueue": app.enqueue("work", {"n": 1}, tags=["tenant:42", "import", "tenant:42"], meta={"by": "api"}),
        "options": work.options(tags=("tenant:7",), meta={"trace": "abc"}).enqueue(n=2),
        "keyed": app.enqueue("work", {"n": 3}, key="k-1", tags=["keyed"], meta={"k": 1}),
        "sql": conn.execute(
            "select pgq.enqueue('work', tags => array['from-sql'], meta => '{\"via\": \"psql\"}') as id"
        ).fetchone()["id"],
        "async": await app.enqueue_async("work", {"n": 4}, tags=["async"]),
    }
    many = app.enqueue_many(
        [pgq.JobSpec("work", {"n": 10 + i}, tags=["bulk", f"n:{i}"], meta={"i": i}) for i in range(3)]
        + [pgq.JobSpec("work", {"n": 20})]
    )
    shown = pgq_cli(database_url, "enqueue", "work", "--tag", "cli", "--tag", "ops:1", "--meta", '{"who": "me"}')
    assert shown.returncode == 0, shown.stderr
    ids["cli"] = int(shown.stdout.strip())
    everything = [*ids.values(), *many]
    await run_until(app, finished(app, everything))

    expected = {
        "enqueue": (["tenant:42", "import"], {"by": "api"}),
        "options": (["tenant:7"], {"trace": "abc"}),
        "keyed": (["keyed"], {"k": 1}),
        "sql": (["from-sql"], {"via": "psql"}),
        "async": (["async"], None),
        "cli": (["cli", "ops:1"], {"who": "me"}),
    }
    for path, job_id in ids.items():
        assert seen[job_id] == expected[path], path
        stored = job(app, job_id)
        assert (stored.tags, stored.meta) == expected[path], f"{path}: history keeps them"
    assert [seen[i] for i in many] == [(["bulk", f"n:{i}"], {"i": i}) for i in range(3)] + [(None, None)]


def test_jobs_are_found_by_tag_and_by_args(app: pgq.App, database_url: str) -> None:
    tenant = [app.enqueue("report", {"user_id": 7, "kind": k}, tags=["tenant:42"]) for k in ("a", "b")]
    other = app.enqueue("report", {"user_id": 8}, tags=["tenant:43", "import"])
    untagged = app.enqueue("report", {"user_id": 7})

    assert [j.id for j in app.list_jobs(tag="tenant:42")] == tenant[::-1]
    assert [j.id for j in app.list_jobs(tag="import")] == [other]
    assert app.list_jobs(tag="nobody") == []
    assert [j.id for j in app.list_jobs(args={"user_id": 7})] == [untagged, *tenant[::-1]]
    assert [j.id for j in app.list_jobs(args={"user_id": 7}, tag="tenant:42", limit=1)] == [tenant[1]]
    assert [j.id for j in app.list_jobs(tag="tenant:42", before_id=tenant[1])] == [tenant[0]]

    listed = pgq_cli(database_url, "jobs", "list", "--tag", "tenant:42", "--args", '{"kind": "b"}', "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["id"] for row in json.loads(listed.stdout)] == [tenant[1]]

    with CheckedClient(create_app(app), base_url="http://127.0.0.1") as web:
        page = web.get("/api/jobs", params={"tag": "tenant:42"}).json()
        assert [j["id"] for j in page["jobs"]] == tenant[::-1]
        assert page["jobs"][0]["tags"] == ["tenant:42"]
        page = web.get("/api/jobs", params={"args": '{"user_id": 8}'}).json()
        assert [j["id"] for j in page["jobs"]] == [other]
        refused = web.get("/api/jobs", params={"args": "[1]"})
        assert refused.status_code == 422 and "args must be a JSON object" in refused.json()["error"]
        html = web.get("/jobs", params={"tag": "import"}).text
        assert f"#{other}<" in html and f"#{tenant[0]}<" not in html
        assert "args must be a JSON object" in web.get("/jobs", params={"args": "user_id=7"}).text
        made = web.post("/api/jobs", json={"task": "report", "tags": ["web"], "meta": {"ip": "10.0.0.1"}})
        assert made.status_code == 201 and made.json()["job"]["tags"] == ["web"]
        assert made.json()["job"]["meta"] == {"ip": "10.0.0.1"}
        bad = web.post("/api/jobs", json={"task": "report", "tags": ["has space"]})
        assert bad.status_code == 422
        page = web.get(f"/jobs/{other}").text
        assert f'<dd data-job-tags="{other}">' in page and "?tag=import" in page


def test_a_tagged_job_shows_its_tags_and_meta(app: pgq.App) -> None:
    job_id = app.enqueue("report", tags=["tenant:42", "import"], meta={"ticket": 12, "password": "hunter2"})
    found = job(app, job_id)
    text = job_detail(found)
    assert "  tags        tenant:42 import" in text and '  meta        {"ticket": 12' in text
    assert "tags" not in job_detail(job(app, app.enqueue("report")))
    with CheckedClient(create_app(app), base_url="http://127.0.0.1") as web:
        page = web.get(f"/jobs/{job_id}").text
        assert f'<pre data-job-meta="{job_id}">' in page and "hunter2" not in page, "meta is redacted as args are"


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ("tenant:42", "tags must be a list of strings"),
        (["two words"], "without spaces or commas"),
        (["a,b"], "without spaces or commas"),
        ([""], "1 to 100 characters"),
        (["x" * 101], "1 to 100 characters"),
        ([7], "must be a string"),
        ([f"t{i}" for i in range(21)], "at most 20 tags"),
    ],
)
def test_bad_tags_are_refused_by_python_and_sql_alike(app: pgq.App, conn: Any, tags: Any, problem: str) -> None:
    with pytest.raises(pgq.InvalidJob, match=problem):
        app.enqueue("report", tags=tags)
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="tags must be at most 20 tags"):
            conn.execute("select pgq.enqueue('report', tags => %s)", [tags])
    assert app.list_jobs() == [], "nothing was written"


@pytest.mark.parametrize("meta", [[1], "x", {"at": object()}])
def test_bad_meta_is_refused(app: pgq.App, meta: Any) -> None:
    with pytest.raises(pgq.InvalidJob, match="meta"):
        app.enqueue("report", meta=meta)
    assert app.list_jobs() == []
