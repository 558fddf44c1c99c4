"""The pages' templates (``templates/``, Jinja2 with autoescape on) and the filters they use.

Every value reaches the page through Jinja's escaping; the only markup made in
Python is :func:`when`'s ``<time>`` element, built with :func:`markupsafe.escape`.
Templates hold no inline script or style (the Content-Security-Policy forbids
both): behaviour lives in ``static/live.js`` and ``static/charts.js``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup, escape

from pgq.display import clip, percent

NAV = (
    ("/", "Overview"),
    ("/jobs", "Jobs"),
    ("/queues", "Queues"),
    ("/schedules", "Schedules"),
    ("/workers", "Workers"),
)


@dataclass
class Page:
    """What every page needs besides its own data."""

    base: str
    path: str
    csrf: str
    read_only: bool
    token_mode: bool
    flash: str | None = None
    #: A job the flash message is about (linked after the message).
    flash_job: int | None = None

    def url(self, path: str, **params: Any) -> str:
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return f"{self.base}{path}" + (f"?{query}" if query else "")

    def current(self, link: str) -> bool:
        path = self.path.split("?", 1)[0]
        return path == link if link == "/" else path.startswith(link)


def when(value: datetime | None) -> Markup:
    """A timestamp as ``<time>``: UTC text, which live.js turns into local time and "3 s ago"."""
    if value is None:
        return Markup("")
    text = value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return Markup('<time datetime="{}">{}</time>').format(escape(value.isoformat()), escape(text))


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


def ms(value: float | None) -> str:
    return "-" if value is None else duration(value / 1000)


def pretty_json(value: Any) -> str:
    return json.dumps(clip(value), indent=2, ensure_ascii=False, sort_keys=True, default=str)


def short_json(value: Any, limit: int = 80) -> str:
    text = json.dumps(clip(value, 8), ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pgq.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, duration=duration, ms=ms, pct=percent, pretty_json=pretty_json, short_json=short_json)
    env.globals["NAV"] = NAV
    return env
