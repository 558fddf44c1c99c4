"""The dashboard as one ASGI application (FastAPI): pages, form actions, live updates, API, metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from pgq.job import STATUSES
from pgq.payload import MAX_DEPTH
from pgq.web import api, data, pages
from pgq.web.live import LiveHub
from pgq.web.metrics import registry_for
from pgq.web.operations import DATABASE_GONE, WebError, unreachable
from pgq.web.render import Page, environment
from pgq.web.security import (
    FLASH_COOKIE,
    Guard,
    Throttle,
    base_path,
    csrf_token,
    local_path,
    read_flash,
    set_cookies,
    set_flash,
)

if TYPE_CHECKING:
    from pgq.app import App
    from pgq.job import Job

log = logging.getLogger("pgq.web")

TITLES = {
    400: "Bad request",
    403: "Refused",
    404: "Not found",
    405: "Not allowed",
    409: "Not possible now",
    413: "Too large",
    422: "Bad request",
    429: "Too many tries",
    500: "Dashboard error",
    503: "Database unavailable",
}


class Dashboard:
    """What the pages and the API share: the App, the options, the live hub, the templates."""

    def __init__(
        self,
        app: App,
        *,
        read_only: bool,
        token: str | None,
        redact_keys: Iterable[str],
        strict: bool,
        tick: float,
    ) -> None:
        from pgq.redaction import Redactor

        self.app = app
        #: Where the pages and the API's GETs read: PGQ_READ_URL's replica when set (App.reader);
        #: actions, enqueues and the job that follows an action go to the primary (``app``).
        self.reads = app.reader
        self.read_only = read_only
        self.token = token
        self.redact = Redactor(redact_keys)
        self.strict = strict
        self.hub = LiveHub(app, self.redact, tick=tick)
        self.registry = registry_for(self.reads)
        self.templates = environment()
        self.throttle = Throttle()
        self.routes: list[Any] = []
        self._openapi: dict[str, dict[str, Any]] = {}

    def job(self, job_id: int) -> tuple[Job | None, App]:
        """A job read where the pages read, else on the primary (a job enqueued or changed a
        moment ago may not have reached the replica yet: read-your-writes); and the app that
        found it, for the reads that go with it."""
        found = self.reads.get_job(job_id)
        if found is not None or self.reads is self.app:
            return found, self.reads
        return self.app.get_job(job_id), self.app

    def openapi(self, root_path: str) -> dict[str, Any]:
        if root_path not in self._openapi:
            self._openapi[root_path] = api.openapi_document(self.routes, root_path)
        return self._openapi[root_path]

    # ---------------------------------------------------------------- pages

    def page(self, request: Request) -> Page:
        flash = request.cookies.get(FLASH_COOKIE)
        text, job_id = read_flash(flash) if flash else (None, None)
        if flash:
            request.scope["pgq.flash_shown"] = True
        return Page(
            base=base_path(request.scope),
            path=local_path(request.scope) + (f"?{request.url.query}" if request.url.query else ""),
            csrf=csrf_token(request),
            read_only=self.read_only,
            token_mode=self.token is not None,
            flash=text,
            flash_job=job_id,
        )

    def url(self, request: Request, path: str, **params: Any) -> str:
        return Page(base_path(request.scope), "", "", False, False).url(path, **params)

    def render(self, request: Request, template: str, title: str, *, status: int = 200, **context: Any) -> Response:
        values: dict[str, Any] = {
            "watch": [],
            "reload_on_change": False,
            "bare": False,
            "error_status": "",
            "loaded_at": datetime.now(UTC).isoformat(),
            "STATES": data.STATES,
            "FINISHED_STATES": data.FINISHED_STATES,
            "STATUSES": list(STATUSES),
            "RANGES": list(data.RANGES),
        }
        values.update(context)
        body = self.templates.get_template(template).render(page=self.page(request), title=title, **values)
        response = HTMLResponse(body, status_code=status)
        set_cookies(request, response)
        return response

    def error_page(self, request: Request, status: int, message: str) -> Response:
        return self.render(
            request, "error.html", TITLES.get(status, "Error"), status=status, message=message, error_status=status
        )

    def back(self, request: Request, target: Any, message: str, job_id: int | None = None) -> Response:
        """Redirect to ``target`` (a path inside the dashboard) with a flash message."""
        path = target if isinstance(target, str) and target.startswith("/") and not target.startswith("//") else "/"
        if "\\" in path:
            path = "/"
        response = RedirectResponse(base_path(request.scope) + path, status_code=303)
        set_flash(request, response, message, job_id)
        return response

    # ---------------------------------------------------------------- errors

    def error(self, request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        """``{"error": ...}`` under /api (and for /metrics, /events), a styled page elsewhere."""
        path = local_path(request.scope)
        if path.startswith("/api/") or path in ("/api", "/metrics", "/events"):
            return JSONResponse({"error": message}, status_code=status, headers=headers)
        return self.error_page(request, status, message)

    async def render_error(self, scope: Scope, status: int, message: str) -> Response:
        request = Request(scope)
        try:
            return self.error(request, status, message)
        except Exception:  # the templates themselves failed: say it plainly
            log.exception("the dashboard's error page failed")
            return JSONResponse({"error": message}, status_code=status)


def install_handlers(web: FastAPI, d: Dashboard) -> None:
    async def web_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WebError)
        return d.error(request, exc.status, exc.message)

    async def database_gone(request: Request, exc: Exception) -> Response:
        failure = unreachable(exc)
        return d.error(request, failure.status, failure.message)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return d.error(request, 422, api.validation_message(exc.errors()))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        path = local_path(request.scope)
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {path}; see /api/openapi.json"
        elif exc.status_code == 404:
            message = f"nothing at {path}; see /api/openapi.json for the API"
        elif exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer when json.loads fails other than on syntax: the body nests
            # deeper than Python reads. A bad body is a 422 here, like every other one.
            return d.error(
                request,
                422,
                f"the body could not be read as JSON: it nests too deep (args may nest {MAX_DEPTH} levels at most)",
            )
        else:
            message = str(exc.detail)
        return d.error(request, exc.status_code, message, headers=dict(exc.headers or {}))

    web.add_exception_handler(WebError, web_error)
    web.add_exception_handler(RequestValidationError, invalid)
    web.add_exception_handler(HTTPException, http_error)
    for kind in DATABASE_GONE:
        web.add_exception_handler(kind, database_gone)


def body_limit(app: App) -> int:
    """The largest request body read: args may be PGQ_MAX_PAYLOAD_BYTES once encoded by pgq,
    and a client's JSON escapes (``\\u00e9``) can make the same args longer, hence twice that."""
    return 2 * app.settings.max_payload_bytes + 64 * 1024


def create_app(
    app: App,
    *,
    read_only: bool = False,
    token: str | None = None,
    redact_keys: Iterable[str] | None = None,
    strict: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    tick: float = 1.0,
) -> FastAPI:
    """The dashboard of ``app`` as an ASGI application (FastAPI, so Starlette), to serve or mount at any path.

    - ``read_only``: hide every action and refuse them (403).
    - ``token``: require ``Authorization: Bearer TOKEN`` or a login with it
      (default: none; the mounting application's own auth, or 127.0.0.1 only).
    - ``redact_keys``: arg keys shown as ``[redacted]`` (default ``PGQ_REDACT_KEYS``).
    - ``strict``: ``POST /api/jobs`` refuses tasks ``app`` has not registered.
    - ``allowed_hosts``: refuse requests whose ``Host`` is not one of these.
    - ``tick``: seconds between the live ticker's reads (one per tick for all browsers).

    ``Mount("/pgq", app=pgq.web.create_app(app))`` in Starlette, or
    ``fastapi_app.mount("/pgq", ...)`` in FastAPI; put your authentication in
    front of it (a middleware or a dependency of the mount's parent).
    """
    d = Dashboard(
        app,
        read_only=read_only,
        token=token,
        redact_keys=app.settings.redact_keys if redact_keys is None else redact_keys,
        strict=strict,
        tick=tick,
    )
    guard = Middleware(
        Guard,
        token=token,
        allowed_hosts=allowed_hosts,
        throttle=d.throttle,
        body_limit=body_limit(app),
        render_error=d.render_error,
    )
    web = FastAPI(
        title="pgq",
        openapi_url=None,  # served by the API itself, with the mount point as its server
        docs_url=None,
        redoc_url=None,
        middleware=[guard],
    )
    install_handlers(web, d)
    web.include_router(api.router(d))
    web.include_router(pages.router(d))
    web.mount("/static", StaticFiles(directory=str(resources.files("pgq.web") / "static")), name="static")
    d.routes = web.routes
    web.state.dashboard = d
    return web
