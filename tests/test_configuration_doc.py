"""docs/configuration.md is generated from pgq.settings.Settings: keep them in sync."""

from __future__ import annotations

from pathlib import Path

from pgq.settings import reference_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_configuration_doc_is_generated_from_settings() -> None:
    assert DOC.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/configuration.md is stale: run `python -m pgq.settings > docs/configuration.md`"
    )
