"""Headless Chromium for the examples' pages (Debian's `chromium`, driven by Playwright, as in
tests/test_web_browser.py). examples/conftest.py gives the fixtures to every example's tests
(elsewhere: ``from tests.example_browser import browser, tab``); ``shot`` saves a screenshot.
Tests that take them skip without Playwright or /usr/bin/chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    """A page in its own context (time zone Europe/Paris); a script error in it fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Europe/Paris")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot under the test's tmp folder (``screens/NAME.png``)."""
    folder = tmp_path / "screens"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
