"""HTML with escaping by default: every value put into markup goes through :func:`esc`.

``h("<td>{}</td>", value)`` escapes ``value`` unless it is already :class:`Html`
(markup built by these helpers). Templates never hold inline script or style
(the dashboard's Content-Security-Policy forbids both); behaviour lives in
``static/live.js`` and looks in ``static/app.css``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any


class Html(str):
    """A string of markup that is safe to insert as is."""

    __slots__ = ()


def esc(value: Any) -> Html:
    """``value`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def h(template: str, *args: Any, **kwargs: Any) -> Html:
    """Fill ``template`` (``str.format`` syntax) with escaped values."""
    return Html(template.format(*(esc(a) for a in args), **{k: esc(v) for k, v in kwargs.items()}))


def join(parts: Iterable[Any], separator: str = "") -> Html:
    return Html(separator.join(esc(part) for part in parts))


def when(value: datetime | None) -> Html:
    """A timestamp as ``<time>``: UTC text, turned into local time and "3 s ago" by live.js."""
    if value is None:
        return Html("")
    return h('<time datetime="{}">{}</time>', value.isoformat(), value.strftime("%Y-%m-%d %H:%M:%S %Z").strip())


def duration(value: timedelta | float | None) -> str:
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def short_json(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
