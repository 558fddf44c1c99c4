"""pgq's SQL, loaded once from the named blocks in ``db/sql/*.sql``.

This module is the only reader of SQL text, and no module outside ``pgq.db`` and
the migrations holds any (``tests/test_sql_text.py`` checks): everything else
asks for a query by name, the engine's as well as the bench's (``bench.sql``),
the test helpers' (``admin.sql``, ``testing.sql``) and the session statements
(``session.sql``: LISTEN, savepoints, settings).

In a file, ``-- name: x`` starts block ``x``; other ``--`` lines are comments.
In a block:

- ``{schema}`` becomes the quoted schema (the ``schema`` argument);
- ``{part:x}`` becomes the text of block ``x`` (a part two queries share, which may
  hold parts too);
- ``{ident:x}`` becomes the identifier given as keyword argument ``x``, quoted
  (a LISTEN channel, a database name, a setting), so that no caller builds SQL
  text: ``query("listen", channel="pgq_jobs")`` is ``listen "pgq_jobs"``.

Values are never put in the text: they are bind parameters (``%(x)s``).
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_PART = re.compile(r"\{part:(\w+)\}")
#: What :func:`query` fills in, in one pass (a quoted name is never looked at again).
_PLACEHOLDER = re.compile(r"\{schema\}|\{ident:(\w+)\}")


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier: in double quotes, a double quote doubled."""
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


def names() -> list[str]:
    """Every named block, sorted (for checks that read all of pgq's SQL)."""
    return sorted(_raw())


def identifier_names(name: str) -> list[str]:
    """The ``{ident:x}`` placeholders query ``name`` needs, sorted."""
    return sorted({m.group(1) for m in _PLACEHOLDER.finditer(_with_parts(name)) if m.group(1)})


def _with_parts(name: str) -> str:
    """Block ``name`` with its ``{part:x}`` filled in, placeholders still open."""
    try:
        raw = _raw()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in pgq/db/sql") from None
    # A part may hold parts of its own (a bulk batch holds the job filter).
    while _PART.search(raw):
        raw = _PART.sub(lambda part: _raw()[part.group(1)], raw)
    return raw


def query(name: str, schema: str | None = None, **identifiers: str) -> str:
    """The text of query ``name`` for ``schema``, with ``identifiers`` quoted into its
    ``{ident:x}`` placeholders; each placeholder must be given, and each given one used."""
    if not identifiers:
        return _for_schema(name, schema)
    return _fill(name, schema, identifiers)


@functools.cache
def _for_schema(name: str, schema: str | None) -> str:
    return _fill(name, schema, {})


def _fill(name: str, schema: str | None, identifiers: dict[str, str]) -> str:
    whole = _with_parts(name)
    used: set[str] = set()

    def fill(placeholder: re.Match[str]) -> str:
        key = placeholder.group(1)
        if key is None:
            if schema is None:
                raise TypeError(f"query {name!r} needs a schema")
            return quote_ident(schema)
        if key not in identifiers:
            raise TypeError(f"query {name!r} needs the identifier {key!r}")
        used.add(key)
        return quote_ident(identifiers[key])

    text = _PLACEHOLDER.sub(fill, whole)
    unused = sorted(identifiers.keys() - used)
    if unused:
        raise TypeError(f"query {name!r} has no {{ident:...}} for {', '.join(unused)}")
    return text
