"""The dashboard as one ASGI application: pages, form actions, live updates, API, metrics."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pgq.db.queries import query
from pgq.job import STATUSES, Job
from pgq.redaction import Redactor
from pgq.web import data, views
from pgq.web.api import Api
from pgq.web.live import LiveHub
from pgq.web.markup import Html
from pgq.web.metrics import registry_for, render
from pgq.web.operations import (
    JOB_ACTIONS,
    SCHEDULE_ACTIONS,
    WebError,
    call,
    job_action,
    queue_action,
    schedule_action,
)
from pgq.web.security import (
    AUTH_COOKIE,
    FLASH_COOKIE,
    Guard,
    base_path,
    cookie_secure,
    csrf_ok,
    csrf_token,
    local_path,
    session_value,
    set_cookies,
    set_flash,
    token_matches,
)

if TYPE_CHECKING:
    from pgq.app import App

log = logging.getLogger("pgq.web")

PAGE_SIZE = 50
#: Jobs whose page shows "Why isn't it running?" (pgq.explain).
WAITING_STATUSES = ("pending", "blocked")
#: Largest form body read, in bytes.
FORM_LIMIT = 64 * 1024


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form (the dashboard's forms are small; no multipart parser needed).
    The body is read up to FORM_LIMIT and no further: the login form is open to anyone
    who reaches the server, and a body read whole first could be gigabytes."""
    if "multipart" in request.headers.get("content-type", ""):
        return {}
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > FORM_LIMIT:
        return {}
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > FORM_LIMIT:
            return {}
        chunks.append(chunk)
    body = b"".join(chunks)
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


class Dashboard:
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
        self.app = app
        self.read_only = read_only
        self.token = token
        self.redact = Redactor(redact_keys)
        self.strict = strict
        self.hub = LiveHub(app, self.redact, tick=tick)
        self.registry = registry_for(app)

    # ------------------------------------------------------------- helpers

    def page(self, request: Request) -> views.Page:
        flash = request.cookies.get(FLASH_COOKIE)
        if flash:
            request.scope["pgq.flash_shown"] = True
        return views.Page(
            base=base_path(request.scope),
            path=local_path(request.scope) + (f"?{request.url.query}" if request.url.query else ""),
            csrf=csrf_token(request),
            read_only=self.read_only,
            token_mode=self.token is not None,
            flash=unquote(flash) if flash else None,
        )

    def html(self, request: Request, body: Html, status: int = 200) -> Response:
        response = HTMLResponse(body, status_code=status, headers={"cache-control": "no-store"})
        set_cookies(request, response)
        return response

    def error_html(self, request: Request, status: int, message: str) -> Response:
        titles = {
            404: "Not found",
            409: "Not possible now",
            403: "Refused",
            422: "Bad request",
            503: "Database unavailable",
        }
        return self.html(request, views.error_page(self.page(request), titles.get(status, "Error"), message), status)

    def back(self, request: Request, target: Any, message: str) -> Response:
        """Redirect to ``target`` (a path inside the dashboard) with a flash message."""
        path = target if isinstance(target, str) and target.startswith("/") and not target.startswith("//") else "/"
        if "\\" in path:
            path = "/"
        response = RedirectResponse(base_path(request.scope) + path, status_code=303)
        set_flash(request, response, message)
        return response

    # --------------------------------------------------------------- pages

    async def overview(self, request: Request) -> Response:
        def read() -> tuple[Any, ...]:
            stats = self.app.stats()
            live = self.app._run(query("dashboard_live", self.app.schema), {"ids": []})[0]["live"]
            table = data.merge_counts(live, data.finished_counts(stats))
            now, series = data.series(self.app)
            running = self.app.list_jobs(status="running", limit=50)
            workers = self.app.list_workers()
            return table, data.paused_queues(self.app), now, series, running, stats, workers

        try:
            table, paused, now, series, running, stats, workers = await call(read)
        except WebError as exc:
            return self.error_html(request, exc.status, exc.message)
        body = views.overview(
            self.page(request), table, data.totals(table), paused, running, now, series, stats, workers
        )
        return self.html(request, body)

    async def queues(self, request: Request) -> Response:
        def read() -> tuple[Any, ...]:
            queues = self.app.list_queues()
            return queues, data.failed_by_queue(self.app, [q.name for q in queues])

        try:
            queues, failed = await call(read)
        except WebError as exc:
            return self.error_html(request, exc.status, exc.message)
        return self.html(request, views.queues_page(self.page(request), queues, failed))

    async def workers(self, request: Request) -> Response:
        try:
            workers = await call(self.app.list_workers)
        except WebError as exc:
            return self.error_html(request, exc.status, exc.message)
        return self.html(request, views.workers_page(self.page(request), workers))

    async def jobs(self, request: Request) -> Response:
        params = request.query_params
        wanted = (params.get("id") or "").strip().lstrip("#")
        if wanted:
            if (found := data.job_id(wanted)) is not None:
                return RedirectResponse(f"{base_path(request.scope)}/jobs/{found}", status_code=303)
            return self.back(request, "/jobs", f"{wanted!r} is not a job id (a whole number)")
        filters: dict[str, Any] = {k: (params.get(k) or "").strip() or None for k in ("status", "queue", "task", "key")}
        problem = None
        if filters["status"] not in (None, *STATUSES):
            problem = f"unknown state {filters['status']!r}; pick one of {', '.join(STATUSES)}"
            filters["status"] = None
        before = params.get("before_id")
        filters["before_id"] = data.job_id(before) if before else None
        try:
            jobs, now = await call(self._read_jobs, filters)
        except WebError as exc:
            return self.error_html(request, exc.status, exc.message)
        next_before = jobs[-1].id if len(jobs) == PAGE_SIZE else None
        body = views.jobs_list(self.page(request), jobs, now, filters, self.redact, next_before, problem)
        return self.html(request, body)

    def _read_jobs(self, filters: dict[str, Any]) -> tuple[list[Job], Any]:
        return self.app.list_jobs(limit=PAGE_SIZE, **filters), data.db_now(self.app)

    async def job(self, request: Request) -> Response:
        text = request.path_params["job_id"]
        found = data.job_id(text)
        if found is None:
            return self.error_html(request, 404, f"{text!r} is not a job id")
        job_id = found

        def read() -> tuple[Job | None, Any, str | None]:
            job = self.app.get_job(job_id)
            waiting = job is not None and job.status in WAITING_STATUSES
            return job, data.db_now(self.app), self.app.explain(job_id) if waiting else None

        try:
            job, now, explain = await call(read)
        except WebError as exc:
            return self.error_html(request, exc.status, exc.message)
        if job is None:
            return self.error_html(request, 404, f"No job with id {job_id}: it never existed or retention removed it.")
        return self.html(request, views.job_detail(self.page(request), job, now, self.redact, explain))

    async def schedules(self, request: Request) -> Response:
        try:
            schedules = await call(self.app.list_schedules)
        except WebError as exc:
            return self.error_html(request, exc.status, exc.message)
        return self.html(request, views.schedules_page(self.page(request), schedules, self.redact))

    # ------------------------------------------------------------- actions

    async def _form(self, request: Request) -> dict[str, Any] | Response:
        fields = await form_fields(request)
        if self.read_only:
            return self.error_html(request, 403, "This dashboard is read-only (--read-only): actions are refused.")
        if not csrf_ok(request, fields.get("csrf")):
            return self.error_html(
                request, 403, "The form's security token did not match (CSRF check). Reload the page and try again."
            )
        return fields

    async def job_form(self, request: Request) -> Response:
        fields = await self._form(request)
        if isinstance(fields, Response):
            return fields
        action, text = fields.get("action", ""), fields.get("id", "")
        job_id = data.job_id(text)
        if action not in JOB_ACTIONS or job_id is None:
            return self.error_html(request, 422, f"unknown action {action!r} or job id {text!r}")
        try:
            message = await job_action(self.app, job_id, action)
        except WebError as exc:
            return self.back(request, fields.get("next"), f"Job {text}: {exc.message}")
        target = fields.get("next")
        if action == "remove":
            target = "/jobs"
        return self.back(request, target, message)

    async def schedule_form(self, request: Request) -> Response:
        fields = await self._form(request)
        if isinstance(fields, Response):
            return fields
        action, name = fields.get("action", ""), fields.get("name", "")
        if action not in SCHEDULE_ACTIONS:
            return self.error_html(request, 422, f"unknown action {action!r}")
        try:
            message = await schedule_action(self.app, name, action)
        except WebError as exc:
            message = exc.message
        return self.back(request, fields.get("next"), message)

    async def queue_form(self, request: Request) -> Response:
        fields = await self._form(request)
        if isinstance(fields, Response):
            return fields
        action, name = fields.get("action", ""), fields.get("name", "")
        try:
            message = await queue_action(self.app, name, action)
        except WebError as exc:
            message = exc.message
        return self.back(request, fields.get("next"), message)

    # --------------------------------------------------------------- login

    async def login(self, request: Request) -> Response:
        page = self.page(request)
        next_path = request.query_params.get("next", "/")
        if self.token is None:
            return self.back(request, "/", "This dashboard has no token: no login needed.")
        if request.method == "GET":
            return self.html(request, views.login_page(page, next_path))
        form = await form_fields(request)
        next_path = str(form.get("next") or "/")
        given = form.get("token")
        if not csrf_ok(request, form.get("csrf")):
            return self.html(request, views.login_page(page, next_path, "The form expired; try again."), 403)
        if not isinstance(given, str) or not token_matches(given, self.token):
            await asyncio.sleep(0.5)  # slows guessing down
            return self.html(request, views.login_page(page, next_path, "Wrong token."), 401)
        safe = (
            next_path if next_path.startswith("/") and not next_path.startswith("//") and "\\" not in next_path else "/"
        )
        response = RedirectResponse(base_path(request.scope) + safe, status_code=303)
        response.set_cookie(
            AUTH_COOKIE,
            session_value(self.token),
            max_age=30 * 24 * 3600,
            path=base_path(request.scope) or "/",
            httponly=True,
            samesite="strict",
            secure=cookie_secure(request.scope),
        )
        return response

    async def logout(self, request: Request) -> Response:
        form = await form_fields(request)
        if not csrf_ok(request, form.get("csrf")):
            return self.error_html(request, 403, "The form's security token did not match; reload and try again.")
        response = RedirectResponse(base_path(request.scope) + "/login", status_code=303)
        response.delete_cookie(AUTH_COOKIE, path=base_path(request.scope) or "/")
        return response

    # ---------------------------------------------------------- live, metrics

    async def events(self, request: Request) -> Response:
        parts = request.query_params.get("jobs", "").split(",")
        ids = frozenset(found for part in parts if (found := data.job_id(part)) is not None)
        return StreamingResponse(
            self.hub.stream(ids),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def metrics(self, request: Request) -> Response:
        try:
            body = await call(render, self.registry)
        except WebError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---------------------------------------------------------------- wiring

    def routes(self) -> list[Route | Mount]:
        static = StaticFiles(directory=str(resources.files("pgq.web") / "static"))
        return [
            Route("/", self.overview, methods=["GET"]),
            Route("/jobs", self.jobs, methods=["GET"]),
            Route("/jobs/{job_id}", self.job, methods=["GET"]),
            Route("/queues", self.queues, methods=["GET"]),
            Route("/schedules", self.schedules, methods=["GET"]),
            Route("/workers", self.workers, methods=["GET"]),
            Route("/actions/job", self.job_form, methods=["POST"]),
            Route("/actions/schedule", self.schedule_form, methods=["POST"]),
            Route("/actions/queue", self.queue_form, methods=["POST"]),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/events", self.events, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            *Api(self).routes(),
            Mount("/static", app=static, name="static"),
        ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = local_path(request.scope)
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {path}; see /api/openapi.json"
    elif exc.status_code == 404:
        message = f"nothing at {path}; see /api/openapi.json for the API"
    else:
        message = str(exc.detail)
    if path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=exc.status_code)
    body = f"<!doctype html><title>{exc.status_code}</title><p>{html.escape(message)}</p>"
    return HTMLResponse(body, status_code=exc.status_code)


def create_app(
    app: App,
    *,
    read_only: bool = False,
    token: str | None = None,
    redact_keys: Iterable[str] | None = None,
    strict: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    tick: float = 1.0,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI application, to serve or mount at any path.

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
    dashboard = Dashboard(
        app,
        read_only=read_only,
        token=token,
        redact_keys=app.settings.redact_keys if redact_keys is None else redact_keys,
        strict=strict,
        tick=tick,
    )
    web = Starlette(
        routes=dashboard.routes(),
        middleware=[Middleware(Guard, token=token, allowed_hosts=allowed_hosts)],
        exception_handlers={HTTPException: _http_error},
    )
    web.state.dashboard = dashboard
    return web
