"""The documentation site builds with ``mkdocs build --strict``: every page in the
nav, no broken link or anchor, the API reference generated from the docstrings
and the benchmark results included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="mkdocs-material is not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    config = str(ROOT / "mkdocs.yml")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", config, "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="pgq.App.enqueue"' in api and 'id="pgq.JobContext"' in api
    testing = (site / "testing-your-app" / "index.html").read_text(encoding="utf-8")
    assert 'id="pgq.testing.drain"' in testing
    results_heading = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
    assert results_heading in (site / "benchmarks" / "index.html").read_text(encoding="utf-8")


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_the_getting_started_page_runs_the_readme_quick_start() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    for block in _bash_blocks(quick_start):
        assert block in page, f"docs/getting-started.md lacks the README's quick start block:\n{block}"
