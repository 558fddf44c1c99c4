"""pgq's SQL, loaded once from the named blocks in ``db/sql/*.sql``.

This module is the only reader of SQL text: everything else asks for a query
by name. ``-- name: x`` starts a block; ``{schema}`` becomes the quoted schema;
``{part:x}`` becomes the text of block ``x`` (a part two queries share).
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_PART = re.compile(r"\{part:(\w+)\}")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@functools.cache
def _raw() -> dict[str, str]:
    blocks: dict[str, str] = {}
    folder = resources.files("pgq.db") / "sql"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        parts = _NAME.split(text)
        # parts: [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in blocks:
                raise RuntimeError(f"query {name} is defined twice in db/sql")
            lines = [line for line in body.strip().splitlines() if not line.lstrip().startswith("--")]
            blocks[name] = "\n".join(lines).strip().rstrip(";")
    return blocks


@functools.cache
def query(name: str, schema: str) -> str:
    """The text of query ``name`` for ``schema``."""
    try:
        raw = _raw()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in pgq/db/sql") from None
    whole = _PART.sub(lambda part: _raw()[part.group(1)], raw)
    return whole.replace("{schema}", quote_ident(schema))
