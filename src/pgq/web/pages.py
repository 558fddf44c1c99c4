"""The dashboard's pages and their form actions: read with the App, render a template.

Forms post urlencoded bodies with a CSRF token and answer with a redirect and a
flash message (post/redirect/get); the pages' live parts come from ``/events``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from pgq.bulk import JobFilter, run_bulk
from pgq.db import store
from pgq.job import STATUSES, Job, attempt_verb
from pgq.output import limits_text, replica_text
from pgq.redaction import redact_job, redact_schedule
from pgq.web import data, operations, security
from pgq.web.metrics import render
from pgq.web.operations import WebError, call, read
from pgq.web.security import (
    AUTH_COOKIE,
    base_path,
    client_of,
    cookie_secure,
    csrf_ok,
    session_value,
    token_matches,
    too_many,
)

if TYPE_CHECKING:
    from pgq.web.dashboard import Dashboard

PAGE_SIZE = 50
#: Jobs whose page shows "Why isn't it running?" (pgq.explain).
WAITING_STATUSES = ("pending", "blocked")
#: Largest form body read, in bytes.
FORM_LIMIT = 64 * 1024


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form (the dashboard's forms are small; no multipart parser needed).
    The body was read by the Guard up to its limit; a form larger than FORM_LIMIT is not parsed."""
    if "multipart" in request.headers.get("content-type", ""):
        return {}
    body = await request.body()
    if len(body) > FORM_LIMIT:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def timeline(job: Job, state: str) -> list[dict[str, Any]]:
    """The attempts of a job: one entry per failed attempt, then the last one's outcome."""
    items: list[dict[str, Any]] = []
    for entry in job.errors if isinstance(job.errors, list) else []:
        if not isinstance(entry, dict):
            entry = {"message": str(entry)}
        at = entry.get("at")
        items.append(
            {
                "error": True,
                "attempt": entry.get("attempt", "?"),
                "at": at,
                "at_text": str(at)[:19].replace("T", " ") + " UTC" if at else "",
                "type": entry.get("type", "error"),
                "verb": attempt_verb(entry),
                "message": entry.get("message", ""),
                "traceback": entry.get("traceback"),
            }
        )
    failed_attempts = {item["attempt"] for item in items}
    if job.attempts and job.attempts not in failed_attempts:
        outcome = "returned to the queue" if state in ("pending", "delayed") else state
        items.append(
            {
                "error": False,
                "attempt": job.attempts,
                "outcome": outcome,
                "since": job.started_at if state == "running" else None,
                "when": job.finished_at,
            }
        )
    return items


def router(d: Dashboard) -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    # ------------------------------------------------------------------ pages

    @pages.get("/")
    async def overview(request: Request) -> Response:
        def read_all() -> dict[str, Any]:
            app = d.reads
            stats = app.stats()
            live = store.dashboard_live.run(app.db, {"ids": []})[0]
            table = data.merge_counts(live["live"], data.finished_counts(stats))
            return {
                "counts": table,
                "totals": data.totals(table),
                "paused": list(live["paused"]),
                "running": app.list_jobs(status="running", limit=50),
                "stats": stats,
                "workers": app.list_workers(),
                "last_hour": data.last_hour(app),
                "replica": None if app is d.app else replica_text(d.app.replica_lag()),
            }

        context = await read(read_all)
        return d.render(request, "overview.html", "Overview", **context)

    @pages.get("/queues")
    async def queues(request: Request) -> Response:
        def read_all() -> dict[str, Any]:
            listed = d.reads.list_queues()
            return {"queues": listed, "failed": data.failed_by_queue(d.reads, [q.name for q in listed])}

        return d.render(request, "queues.html", "Queues", **await read(read_all), limits_text=limits_text)

    @pages.get("/workers")
    async def workers(request: Request) -> Response:
        return d.render(request, "workers.html", "Workers", workers=await read(d.reads.list_workers))

    @pages.get("/schedules")
    async def schedules(request: Request) -> Response:
        listed = [redact_schedule(s, d.redact) for s in await read(d.reads.list_schedules)]
        return d.render(request, "schedules.html", "Schedules", schedules=listed)

    @pages.get("/jobs")
    async def jobs(request: Request) -> Response:
        params = request.query_params
        wanted = (params.get("id") or "").strip().lstrip("#")
        if wanted:
            if (found := data.job_id(wanted)) is not None:
                return RedirectResponse(f"{base_path(request.scope)}/jobs/{found}", status_code=303)
            return d.back(request, "/jobs", f"{wanted!r} is not a job id (a whole number)")
        filters: dict[str, Any] = {k: (params.get(k) or "").strip() or None for k in operations.FILTER_FIELDS}
        problem = None
        if filters["status"] not in (None, *STATUSES):
            problem = f"unknown state {filters['status']!r}; pick one of {', '.join(STATUSES)}"
            filters["status"] = None
        try:
            args = operations.args_filter(filters["args"])
        except WebError as bad:
            problem, filters["args"], args = bad.message, None, None
        before = params.get("before_id")
        before_id = data.job_id(before) if before else None

        def read_page() -> tuple[list[Job], datetime]:
            found = d.reads.list_jobs(limit=PAGE_SIZE + 1, before_id=before_id, **{**filters, "args": args})
            return found, data.db_now(d.reads)

        listed, now = await read(read_page)
        shown = [redact_job(job, d.redact) for job in listed[:PAGE_SIZE]]
        return d.render(
            request,
            "jobs.html",
            "Jobs",
            jobs=shown,
            filters=filters,
            filters_no_page={k: v for k, v in filters.items() if v},
            first_page=before_id is None,
            next_before=shown[-1].id if len(listed) > PAGE_SIZE else None,
            problem=problem,
            check_url=d.url(request, "/api/jobs", limit=1, **{k: v for k, v in filters.items() if v}),
            job_state=lambda job: data.display_state(job, now),
            watch=[job.id for job in shown],
        )

    @pages.get("/jobs/{job_id}")
    async def job(request: Request, job_id: str) -> Response:
        found = data.job_id(job_id)
        if found is None:
            raise WebError(404, f"{job_id!r} is not a job id")

        def read_job() -> dict[str, Any] | None:
            stored, app = d.job(found)
            if stored is None:
                return None
            waiting = stored.status in WAITING_STATUSES
            children, graph = data.family(app, stored)
            return {
                "job": redact_job(stored, d.redact),
                "now": data.db_now(app),
                "explain": app.explain(found) if waiting else None,
                "children": children,
                "graph": graph,
                "worker_names": data.worker_names(app, [stored.worker_id]),
                "logs": app.job_logs(found),
            }

        context = await read(read_job)
        if context is None:
            raise WebError(404, f"No job with id {found}: it never existed or retention removed it.")
        state = data.display_state(context["job"], context.pop("now"))
        return d.render(
            request,
            "job.html",
            f"Job {found}",
            **context,
            state=state,
            timeline=timeline(context["job"], state),
            watch=[found],
            reload_on_change=True,
        )

    # ---------------------------------------------------------------- actions

    async def checked_form(request: Request) -> dict[str, str]:
        fields = await form_fields(request)
        if d.read_only:
            raise WebError(403, "This dashboard is read-only (--read-only): actions are refused.")
        if not csrf_ok(request, fields.get("csrf")):
            raise WebError(403, "The form's security token did not match (CSRF check). Reload the page and try again.")
        return fields

    @pages.post("/actions/job")
    async def job_form(request: Request) -> Response:
        fields = await checked_form(request)
        action, text = fields.get("action", ""), fields.get("id", "")
        job_id = data.job_id(text)
        if action not in operations.JOB_ACTIONS or job_id is None:
            raise WebError(422, f"unknown action {action!r} or job id {text!r}")
        try:
            message = await operations.job_action(d.app, job_id, action)
        except WebError as exc:
            return d.back(request, fields.get("next"), f"Job {text}: {exc.message}")
        return d.back(request, "/jobs" if action == "remove" else fields.get("next"), message)

    @pages.post("/actions/bulk")
    async def bulk_form(request: Request) -> Response:
        """A bulk action from the jobs list: the first post shows how many jobs it takes and asks;
        the second (``confirm``) does it and goes back to the list with what it did."""
        fields = await checked_form(request)
        action = fields.get("action", "")
        given = {k: (fields.get(k) or "").strip() or None for k in operations.FILTER_FIELDS}
        back = "/jobs" + ("?" + urlencode({k: v for k, v in given.items() if v}) if any(given.values()) else "")
        try:
            text = {k: v for k, v in given.items() if k != "args"}
            job_filter = await call(lambda: JobFilter(**text, args=operations.args_filter(given["args"])))
            priority = operations.bulk_priority(fields.get("priority")) if action == "priority" else None
            if job_filter.empty:
                raise WebError(422, "choose a filter first: a bulk action from the dashboard never takes every job")
            if fields.get("confirm") != "1":
                preview = await call(run_bulk, d.app, action, job_filter, priority=priority, dry_run=True)
                if preview.count == 0:
                    return d.back(request, back, f"No job that {action} acts on matches {job_filter.describe()}.")
                return d.render(
                    request,
                    "bulk.html",
                    "Confirm",
                    action=action,
                    count=preview.count,
                    described=job_filter.describe(),
                    filters={k: v for k, v in given.items() if v},
                    priority=priority,
                    back=back,
                )
            result = await call(run_bulk, d.app, action, job_filter, priority=priority)
        except WebError as exc:
            return d.back(request, back, exc.message)
        return d.back(request, back, result.message(job_filter))

    @pages.post("/actions/edit")
    async def edit_form(request: Request) -> Response:
        """The job page's Edit form: the fields that differ from the job as it is change."""
        fields = await checked_form(request)
        job_id = data.job_id(fields.get("id", ""))
        if job_id is None:
            raise WebError(422, f"not a job id: {fields.get('id', '')!r}")
        back = f"/jobs/{job_id}"
        try:
            current = await read(d.app.get_job, job_id)
            if current is None:
                raise WebError(404, f"no job with id {job_id}")
            changes = operations.edit_changes(fields, current)
            if not changes:
                return d.back(request, back, f"Job {job_id}: nothing changed.")
            await call(d.app.update_job, job_id, **changes)
        except WebError as exc:
            return d.back(request, back, f"Job {job_id}: {exc.message}")
        return d.back(request, back, f"Job {job_id} updated: {', '.join(sorted(changes))}.")

    @pages.post("/actions/schedule")
    async def schedule_form(request: Request) -> Response:
        fields = await checked_form(request)
        action, name = fields.get("action", ""), fields.get("name", "")
        if action not in operations.SCHEDULE_ACTIONS:
            raise WebError(422, f"unknown action {action!r}")
        job_id = None
        try:
            message, job_id = await operations.schedule_action(d.app, name, action)
        except WebError as exc:
            message = exc.message
        return d.back(request, fields.get("next"), message, job_id)

    @pages.post("/actions/queue")
    async def queue_form(request: Request) -> Response:
        fields = await checked_form(request)
        action, name = fields.get("action", ""), fields.get("name", "")
        try:
            if action == "limits":
                message = await operations.set_limits(d.app, name, operations.limit_changes(fields, empty_removes=True))
            else:
                message = await operations.queue_action(d.app, name, action)
        except WebError as exc:
            message = exc.message
        return d.back(request, fields.get("next"), message)

    # ------------------------------------------------------------------ login

    @pages.api_route("/login", methods=["GET", "POST"])
    async def login(request: Request) -> Response:
        next_path = request.query_params.get("next", "/")
        if d.token is None:
            return d.back(request, "/", "This dashboard has no token: no login needed.")
        if request.method == "GET":
            return d.render(request, "login.html", "Log in", next_path=next_path, error=None, bare=True)
        form = await form_fields(request)
        next_path = str(form.get("next") or "/")
        given = form.get("token")
        if not csrf_ok(request, form.get("csrf")):
            return d.render(
                request,
                "login.html",
                "Log in",
                next_path=next_path,
                error="The form expired; try again.",
                bare=True,
                status=403,
            )
        client = client_of(request.scope)
        wait = d.throttle.retry_after(client)
        if wait is not None:
            return too_many(wait)
        if not isinstance(given, str) or not token_matches(given, d.token):
            d.throttle.failed(client)
            await asyncio.sleep(security.FAILURE_DELAY)
            return d.render(
                request, "login.html", "Log in", next_path=next_path, error="Wrong token.", bare=True, status=401
            )
        safe = (
            next_path if next_path.startswith("/") and not next_path.startswith("//") and "\\" not in next_path else "/"
        )
        response = RedirectResponse(base_path(request.scope) + safe, status_code=303)
        response.set_cookie(
            AUTH_COOKIE,
            session_value(d.token),
            max_age=30 * 24 * 3600,
            path=base_path(request.scope) or "/",
            httponly=True,
            samesite="strict",
            secure=cookie_secure(request.scope),
        )
        return response

    @pages.post("/logout")
    async def logout(request: Request) -> Response:
        form = await form_fields(request)
        if not csrf_ok(request, form.get("csrf")):
            raise WebError(403, "The form's security token did not match; reload and try again.")
        response = RedirectResponse(base_path(request.scope) + "/login", status_code=303)
        response.delete_cookie(AUTH_COOKIE, path=base_path(request.scope) or "/")
        return response

    # ----------------------------------------------------------- live, metrics

    @pages.get("/events")
    async def events(request: Request) -> Response:
        parts = request.query_params.get("jobs", "").split(",")
        ids = frozenset(found for part in parts if (found := data.job_id(part)) is not None)
        return StreamingResponse(
            d.hub.stream(ids),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    @pages.get("/metrics")
    async def metrics(request: Request) -> Response:
        try:
            body = await read(render, d.registry)
        except WebError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return pages
