"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright).

The dashboard runs in uvicorn on a free port in a thread of this process; a
real `pgq worker` runs the jobs where a test needs them run. Each test saves
a screenshot of every page it visits under its tmp folder (``screens/``).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
WEB_APP = "tests.apps.web:app"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """The dashboard of ``app`` in uvicorn, in a thread."""

    def __init__(self, app: pgq.App, **options: Any) -> None:
        import uvicorn

        from pgq.web import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(app, tick=0.5, **options),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the dashboard did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def serve(app: pgq.App) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(**options: Any) -> Served:
        served = Served(app, **options)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    # bypass_csp: the test's own probes evaluate strings; and escaping must hold
    # without the Content-Security-Policy's help (it is a second line).
    context = browser.new_context(viewport={"width": 1100, "height": 800}, bypass_csp=True)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("dialog", lambda dialog: dialog.accept())
    yield tab
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def shot(tab: Any, tmp_path: Path, name: str) -> None:
    folder = tmp_path / "screens"
    folder.mkdir(exist_ok=True)
    tab.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def mark_page(tab: Any) -> None:
    """Tag the document: the tag survives live updates and disappears on a reload."""
    tab.evaluate("window.__pgqMark = 'same page'")


def same_page(tab: Any) -> bool:
    return bool(tab.evaluate("window.__pgqMark === 'same page'"))


def counter(queue: str, state: str) -> str:
    """The selector of the cell counting ``queue``'s jobs in ``state`` ("*": all queues)."""
    return f"[data-count='{json.dumps([queue, state])}']"


def count(tab: Any, queue: str, state: str) -> str:
    return str(tab.locator(counter(queue, state)).first.inner_text())


def wait_job(app: pgq.App, job_id: int, status: str, timeout: float = 20) -> pgq.Job:
    deadline = time.monotonic() + timeout
    while True:
        job = app.get_job(job_id)
        if job is not None and job.status == status:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job.status if job else 'gone'}, not {status}")
        time.sleep(0.05)


def test_overview_counts_and_a_job_enqueued_elsewhere_shows_up_live(
    app: pgq.App, serve: Callable[..., Served], page: Any, tmp_path: Path, database_url: str
) -> None:
    app.enqueue("send", {"to": "ada"}, queue="emails")
    app.enqueue("send", {"to": "bob"}, queue="emails", delay=3600)
    app.cancel(app.enqueue("send", {"to": "eve"}, queue="emails"))
    app.enqueue("report", {}, queue="reports")
    served = serve()

    page.goto(served.url + "/")
    assert count(page, "emails", "pending") == "1"
    assert count(page, "emails", "delayed") == "1"
    assert count(page, "emails", "cancelled") == "1"
    assert count(page, "reports", "pending") == "1"
    assert count(page, "*", "pending") == "2"
    sync_api.expect(page.locator("#live")).to_have_class(re.compile("on"))
    shot(page, tmp_path, "overview")
    mark_page(page)

    with psycopg.connect(database_url, autocommit=True) as conn:  # another connection, another client
        conn.execute("select pgq.enqueue('send', '{\"to\": \"zoe\"}', 'emails')")
        conn.execute("select pgq.enqueue('send', '{}', 'emails')")
    sync_api.expect(page.locator(counter("emails", "pending"))).to_have_text("3")
    sync_api.expect(page.locator(counter("*", "pending"))).to_have_text("4")
    assert same_page(page), "updated without a reload"
    shot(page, tmp_path, "overview-live")

    page.goto(served.url + "/jobs?queue=emails")
    assert page.locator("table.jobs tbody tr").count() == 5
    shot(page, tmp_path, "jobs")
    page.goto(served.url + "/queues")
    shot(page, tmp_path, "queues")


def test_progress_moves_and_a_retried_job_runs(
    app: pgq.App, serve: Callable[..., Served], page: Any, tmp_path: Path, start_worker: Callable[..., Any]
) -> None:
    start_worker(app=WEB_APP)
    served = serve()
    crawl = app.enqueue("crawl", {"steps": 12, "pause": 0.4})
    failing = app.enqueue("fails_first", {"note": "retry me"})
    wait_job(app, crawl, "running")

    page.goto(f"{served.url}/jobs/{crawl}")
    mark_page(page)
    bar = page.locator(f'[data-job-progress="{crawl}"] progress')
    page.wait_for_function(
        f"document.querySelector('[data-job-progress=\"{crawl}\"] progress').value >= 0.2", timeout=15_000
    )
    first = float(bar.evaluate("b => b.value"))
    page.wait_for_function(
        f"document.querySelector('[data-job-progress=\"{crawl}\"] progress').value > {first + 0.1}",
        timeout=15_000,
    )
    assert same_page(page), "the bar moved without a reload"
    assert "page " in page.locator(f'[data-job-progress="{crawl}"] .msg').inner_text()
    shot(page, tmp_path, "job-running")

    page.goto(served.url + "/")
    sync_api.expect(page.locator(f'#running [data-running="{crawl}"]')).to_be_visible()
    shot(page, tmp_path, "overview-running")

    wait_job(app, failing, "failed")
    page.goto(f"{served.url}/jobs/{failing}")
    assert "first attempt fails on purpose" in page.locator("ol.timeline").inner_text()
    shot(page, tmp_path, "job-failed")
    page.get_by_role("button", name="Retry").click()
    # The page follows the job (pending, running, completed) and shows the result.
    sync_api.expect(page.locator(f'[data-job-status="{failing}"]')).to_have_text("completed", timeout=20_000)
    sync_api.expect(page.locator("main")).to_contain_text('"attempt": 2')
    assert wait_job(app, failing, "completed").result == {"attempt": 2, "note": "retry me"}
    shot(page, tmp_path, "job-retried")
    page.goto(served.url + "/workers")
    sync_api.expect(page.locator("main table")).to_contain_text("running")
    shot(page, tmp_path, "workers")


def test_script_in_args_renders_as_text(app: pgq.App, serve: Callable[..., Served], page: Any, tmp_path: Path) -> None:
    payload = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    job_id = app.enqueue("echo", {"html": payload, "password": "hunter2"})
    app.add_schedule("nightly <b>bold</b>", "0 3 * * *", "echo", {"html": payload})
    served = serve()
    for path, name in ((f"/jobs/{job_id}", "job-script"), ("/jobs", "jobs-script"), ("/schedules", "schedules")):
        page.goto(served.url + path)
        page.wait_for_timeout(300)
        assert page.evaluate("window.__pwned === undefined"), f"{path} ran the job's script"
        assert page.locator("img[src=x]").count() == 0
        shot(page, tmp_path, name)
    page.goto(f"{served.url}/jobs/{job_id}")
    assert "<script>window.__pwned = 1</script>" in page.locator("pre").first.inner_text()
    assert "hunter2" not in page.content() and "[redacted]" in page.content()


def test_login_form_guards_a_token_dashboard(
    app: pgq.App, serve: Callable[..., Served], page: Any, tmp_path: Path
) -> None:
    job_id = app.enqueue("echo", {})
    served = serve(token="correct horse battery staple")
    page.goto(f"{served.url}/jobs/{job_id}")
    assert page.url.startswith(served.url + "/login?next=")
    shot(page, tmp_path, "login")
    page.fill("input[name=token]", "wrong")
    page.get_by_role("button", name="Log in").click()
    sync_api.expect(page.locator(".flash.error")).to_have_text("Wrong token.")
    page.fill("input[name=token]", "correct horse battery staple")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{served.url}/jobs/{job_id}")
    assert page.evaluate("document.cookie").find("pgq_auth") == -1, "the session cookie is HttpOnly"
    sync_api.expect(page.locator("#live")).to_have_class(re.compile("on"))  # SSE passes the guard too
    shot(page, tmp_path, "after-login")
    page.get_by_role("button", name="Log out").click()
    page.goto(served.url + "/")
    assert "/login" in page.url


def test_phone_and_dark_mode_screens(app: pgq.App, serve: Callable[..., Served], browser: Any, tmp_path: Path) -> None:
    job_id = app.enqueue("crawl", {"steps": 3}, queue="a-rather-long-queue-name")
    app.enqueue("echo", {"text": "x" * 300}, delay=60)
    served = serve()
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True)
    try:
        tab = context.new_page()
        for path, name in (("/", "phone-overview"), ("/jobs", "phone-jobs"), (f"/jobs/{job_id}", "phone-job")):
            tab.goto(served.url + path)
            width = tab.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways on a phone ({width} px)"
            shot(tab, tmp_path, name)
        assert tab.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(247, 248, 250)"
    finally:
        context.close()


def test_explain_panel_follows_the_queue_live(
    app: pgq.App, serve: Callable[..., Served], page: Any, tmp_path: Path
) -> None:
    job_id = app.enqueue("<i>import</i>", queue="imports")
    app.pause_queue("imports")
    served = serve()
    page.goto(f"{served.url}/jobs/{job_id}")
    panel = page.locator("[data-job-explain]")
    sync_api.expect(panel).to_contain_text("its queue imports is paused")
    sync_api.expect(panel).to_contain_text("no live worker serves its queue imports")
    mark_page(page)
    shot(page, tmp_path, "job-explain")
    # Resuming changes no job's state: the panel is read again when the live counts change.
    app.resume_queue("imports")
    app.enqueue("t", queue="elsewhere")
    sync_api.expect(panel).not_to_contain_text("paused", timeout=20_000)
    sync_api.expect(panel).to_contain_text("no live worker serves its queue imports")
    assert same_page(page)
    assert page.locator("i").count() == 0  # the task name is text, not markup
