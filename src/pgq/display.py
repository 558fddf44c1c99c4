"""Any stored JSON value, made safe to show: the dashboard, its API and the CLI read rows through this.

Rows can come from SQL (``insert into pgq.jobs ...``), so no check made at
enqueue holds for them: ``args`` nested 10,000 levels deep is valid ``jsonb``,
but Python's ``json`` refuses to read it (``RecursionError`` past about 1,000
levels) and every recursive step after it (redaction, serialisation, templates)
would fail the same way, for every page that lists the job.

- :func:`loads` is ``json.loads``, except that a document nested too deeply to
  read is read with its deep parts cut (see :func:`clip_text`);
- :func:`clip` cuts a decoded value at :data:`DISPLAY_DEPTH`, without recursion.

A cut part becomes the string :data:`CUT`, so a surface shows that something
is missing, and where.
"""

from __future__ import annotations

import json
from typing import Any

#: Levels of nesting shown; deeper parts become :data:`CUT`. Far beyond what any
#: real payload uses, far below the interpreter's recursion limit.
DISPLAY_DEPTH = 100
CUT = f"[nested deeper than {DISPLAY_DEPTH} levels: not shown]"


def _cut(depth: int) -> str:
    return CUT if depth == DISPLAY_DEPTH else f"[nested deeper than {depth} levels: not shown]"


def loads(text: str | bytes) -> Any:
    """``json.loads``, reading a document too deep for it with its deep parts cut."""
    try:
        return json.loads(text)
    except RecursionError:
        return json.loads(clip_text(text if isinstance(text, str) else text.decode("utf-8")))


def clip_text(text: str, depth: int = DISPLAY_DEPTH) -> str:
    """The JSON document ``text`` with every array or object deeper than ``depth`` replaced by
    the string :data:`CUT`. A single scan that tracks strings and nesting: no parsing, no recursion."""
    out: list[str] = []
    level = 0
    in_string = escaped = False
    cut_from: int | None = None  # the level at which the current cut part opened
    start = 0  # first character not yet copied
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            level += 1
            if level > depth and cut_from is None:
                cut_from = level
                out.append(text[start:i])
                out.append(json.dumps(_cut(depth)))
        elif char in "]}":
            if cut_from is not None and level == cut_from:
                cut_from = None
                start = i + 1
            level -= 1
    if cut_from is None:
        out.append(text[start:])
    return "".join(out)


def clip(value: Any, depth: int = DISPLAY_DEPTH) -> Any:
    """A copy of ``value`` (JSON-like: dicts, lists, scalars) whose containers deeper than
    ``depth`` are replaced by :data:`CUT`. Iterative, so any depth is fine."""
    if not isinstance(value, dict | list | tuple):
        return value
    root: list[Any] = [None]
    # (source container, level, where to put its copy: (parent, index or key))
    stack: list[tuple[Any, int, Any, Any]] = [(value, 1, root, 0)]
    while stack:
        source, level, parent, slot = stack.pop()
        if level > depth:
            parent[slot] = _cut(depth)
            continue
        if isinstance(source, dict):
            copy: Any = {}
            parent[slot] = copy
            for key, item in source.items():
                if isinstance(item, dict | list | tuple):
                    copy[key] = None
                    stack.append((item, level + 1, copy, key))
                else:
                    copy[key] = item
        else:
            copy = [None] * len(source)
            parent[slot] = copy
            for index, item in enumerate(source):
                if isinstance(item, dict | list | tuple):
                    stack.append((item, level + 1, copy, index))
                else:
                    copy[index] = item
    return root[0]


def percent(value: float | None) -> str:
    """A percentage for people: ``87.5%``, ``0.05%`` (two figures under 1 %), ``-`` for none."""
    if value is None:
        return "-"
    return f"{value:.1f}%" if value >= 1 or value == 0 else f"{value:.2g}%"
