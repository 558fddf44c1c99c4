"""Fixtures of the examples' tests (examples/*/test_*.py): ``pytest examples/NAME`` runs one
example's tests, ``pytest`` at the root runs them with the rest of the suite. The servers and
databases (``database_url``, ``start_worker``, ...) come from the root conftest.py; here are the
examples' own: ``serve`` (an example's API under uvicorn) and ``browser``/``tab`` (headless Chromium)."""

from __future__ import annotations

from tests.example_browser import browser, tab
from tests.example_services import serve

__all__ = ["browser", "serve", "tab"]
