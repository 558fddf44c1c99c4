"""pgq's web dashboard and REST API: ``pgq dashboard``, or mount ``create_app(app)`` in your ASGI app.

Needs the ``web`` extra: ``pip install 'pgq-jobs[web]'`` (FastAPI, Jinja2, uvicorn, prometheus-client).
"""

from __future__ import annotations

try:
    from pgq.web.dashboard import create_app
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installed extras
    if exc.name in ("fastapi", "starlette", "pydantic", "jinja2", "markupsafe", "prometheus_client"):
        from pgq.errors import ConfigurationError

        raise ConfigurationError(f"pgq's dashboard needs {exc.name}: pip install 'pgq-jobs[web]'") from None
    raise

__all__ = ["create_app"]
