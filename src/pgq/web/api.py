"""The REST API (JSON) under ``/api``, with FastAPI: the models of :mod:`pgq.web.models`
validate requests and make ``/api/openapi.json``.

Errors are ``{"error": "..."}`` with a message saying what was wrong and what
to do: 401 without credentials, 403 read-only or cross-site, 404 unknown id or
name, 409 an action the job's state does not allow, 413 a body too large, 422 a
bad request body or parameter, 429 too many wrong tokens, 503 the database is
unreachable.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from pgq.bulk import JobFilter, run_bulk
from pgq.job import STATUSES
from pgq.redaction import redact_schedule
from pgq.schedules import Schedule
from pgq.web import data, operations
from pgq.web.models import (
    FIELD_RULES,
    BulkIn,
    BulkOut,
    Enqueued,
    EnqueueIn,
    ErrorOut,
    Explanation,
    JobActionIn,
    JobActionOut,
    JobOut,
    JobPage,
    JobUpdateIn,
    QueueActionOut,
    QueueLimitsIn,
    QueueList,
    ScheduleActionIn,
    ScheduleActionOut,
    ScheduleList,
    Series,
    StatsOut,
    WorkerList,
)
from pgq.web.operations import WebError, call, read
from pgq.web.security import same_origin

if TYPE_CHECKING:
    from pgq.web.dashboard import Dashboard

F = TypeVar("F", bound=Callable[..., Any])

MAX_LIMIT = 1000
LIST_PARAMS = ("status", "queue", "task", "key", "tag", "args", "limit", "before_id")
QUERY_RULES = {
    "status": f"one of {', '.join(STATUSES)}",
    "limit": f"a whole number between 1 and {MAX_LIMIT}",
    "before_id": "a whole number (the next_before_id of the previous page)",
    "range": f"one of {', '.join(data.RANGES)}",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "a Host header this dashboard does not serve (allowed_hosts)",
        401: "no token, or a wrong one",
        403: "a read-only dashboard, or a request a browser sent for another site",
        404: "no such job, schedule or endpoint",
        409: "the job's state does not allow the action",
        413: "the body is larger than the dashboard reads",
        422: "a bad body or parameter (the message says which and why)",
        429: "too many wrong tokens from this address (see Retry-After)",
        503: "the database is unreachable or not migrated",
    }
    return {code: {"model": ErrorOut, "description": described[code]} for code in (400, 401, 422, 429, 503, *codes)}


JobIdPath = Annotated[str, Path(description="the job's id", json_schema_extra={"type": "integer", "minimum": 1})]


def job_id_param(text: str) -> int:
    found = data.job_id(text)
    if found is None:
        raise WebError(404, f"no job with id {text!r}: job ids are whole numbers")
    return found


def _field(loc: Sequence[Any]) -> str:
    """A body field's name from a validation error's location; ``filter.tag`` inside the bulk filter."""
    return ".".join(str(part) for part in loc[1:3]) if len(loc) > 2 and loc[1] == "filter" else str(loc[1])


def validation_message(errors: Sequence[Any]) -> str:
    """One sentence for FastAPI's validation errors: which field or parameter, what it must be."""
    first = errors[0]
    loc, kind, given = tuple(first.get("loc", ())), first.get("type", ""), first.get("input")
    where = loc[0] if loc else "body"
    if kind == "json_invalid":
        reason = first.get("ctx", {}).get("error", "")
        return f"the body is not valid JSON ({reason}); send a JSON object"
    if where == "body" and len(loc) <= 1:
        if kind == "missing":
            return 'send a JSON object as the body, e.g. {"task": "send_email", "args": {}}'
        return f"the body must be a JSON object, got {type(given).__name__}"
    if where == "body":
        unknown = [_field(e["loc"]) for e in errors if e.get("type") == "extra_forbidden" and len(e["loc"]) > 1]
        if unknown:
            return f"unknown field(s) {', '.join(unknown)}; /api/openapi.json lists the known ones"
        field = _field(loc)
        if kind == "missing":
            if field == "task":
                return 'field "task" is required: the name of a task, e.g. {"task": "send_email", "args": {}}'
            return f'field "{field}" is required'
        if field == "run_at":
            if kind == "timezone_aware":
                return f"run_at {given!r} has no time zone; add one, e.g. +00:00"
            return f"run_at {given!r} is not ISO 8601; e.g. 2026-12-01T09:00:00+00:00"
        rule = FIELD_RULES.get(field.rpartition(".")[2], first.get("msg", "valid"))
        return f"field {field!r} must be {rule}, got {json.dumps(given, default=str)[:80]}"
    name = str(loc[1]) if len(loc) > 1 else "?"
    rule = QUERY_RULES.get(name, first.get("msg", "valid"))
    return f"{where} parameter {name} must be {rule}, got {given!r}"


def openapi_document(routes: Sequence[Any], root_path: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document, made from the routes' models."""
    from pgq import __version__

    doc = get_openapi(
        title="pgq",
        version=__version__,
        description="The REST API of the pgq dashboard (docs/dashboard.md).",
        routes=list(routes),  # the pages are left out of it (include_in_schema=False)
        servers=[{"url": root_path or "/"}],
        tags=[
            {"name": "jobs", "description": "enqueue, list, inspect and act on jobs"},
            {"name": "queues", "description": "queues and their limits"},
            {"name": "workers", "description": "worker processes"},
            {"name": "schedules", "description": "cron schedules"},
            {"name": "metrics", "description": "throughput and latency over time"},
        ],
    )
    doc.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    doc["security"] = [{}, {"bearer": []}]
    return doc


def _schedule_out(schedule: Schedule | None, d: Dashboard) -> Schedule | None:
    return None if schedule is None else redact_schedule(schedule, d.redact)


def router(d: Dashboard) -> APIRouter:
    async def post_guard(request: Request) -> None:
        if not same_origin(request):
            raise WebError(403, "cross-site request refused: call the API from its own origin or with a bearer token")
        if d.read_only:
            raise WebError(403, "the dashboard is read-only (--read-only): actions are refused")
        ctype = request.headers.get("content-type", "")
        if ctype and "json" not in ctype:
            raise WebError(422, f"send JSON with Content-Type: application/json, not {ctype!r}")

    api = APIRouter(prefix="/api")
    guarded = [Depends(post_guard)]

    def reading(path: str, model: type[Any], tag: str, operation_id: str, *codes: int) -> Callable[[F], F]:
        """A GET route of the API, which may also answer ``codes``."""
        return api.get(path, response_model=model, tags=[tag], operation_id=operation_id, responses=_errors(*codes))

    def acting(
        method: str, path: str, model: type[Any], tag: str, operation_id: str, *codes: int, **extra: Any
    ) -> Callable[[F], F]:
        """A route that changes something: behind ``post_guard`` (403) and the body limit (413), and
        which may also answer ``codes``."""
        return api.api_route(
            path,
            methods=[method],
            response_model=model,
            tags=[tag],
            operation_id=operation_id,
            responses=_errors(403, *codes, 413),
            dependencies=guarded,
            **extra,
        )

    # ------------------------------------------------------------------ jobs

    @reading("/jobs", JobPage, "jobs", "listJobs", 422)
    async def list_jobs(
        request: Request,
        status: Annotated[Literal[STATUSES] | None, Query(description="only jobs in this state")] = None,  # type: ignore[valid-type]
        queue: Annotated[str | None, Query(description="only jobs of this queue")] = None,
        task: Annotated[str | None, Query(description="only jobs of this task")] = None,
        key: Annotated[str | None, Query(description="only jobs with this idempotency key")] = None,
        tag: Annotated[str | None, Query(description="only jobs with this tag")] = None,
        args: Annotated[
            str | None, Query(description='only jobs whose args contain this JSON object, e.g. {"user_id": 7}')
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")] = 50,
        before_id: Annotated[int | None, Query(ge=1, description="the next_before_id of the previous page")] = None,
    ) -> Any:
        """Jobs newest first, a page at a time (keyset pagination: a deep page costs what the first does)."""
        unknown = sorted(set(request.query_params) - set(LIST_PARAMS))
        if unknown:
            raise WebError(422, f"unknown query parameter(s) {', '.join(unknown)}; known: {', '.join(LIST_PARAMS)}")
        jobs = await read(
            d.reads.list_jobs,
            status=status,
            queue=queue or None,
            task=task or None,
            key=key or None,
            tag=tag or None,
            args=operations.args_filter(args),
            limit=limit + 1,  # one more than shown: is there a next page at all?
            before_id=before_id,
        )
        shown = jobs[:limit]
        return {
            "jobs": [data.job_json(job, d.redact) for job in shown],
            "next_before_id": shown[-1].id if len(jobs) > limit else None,
        }

    @acting("POST", "/jobs", Enqueued, "jobs", "enqueueJob", status_code=201)
    async def enqueue(body: EnqueueIn) -> Any:
        """Enqueue a job, as ``app.enqueue``: 201 with its id (or the id of the live job holding its key)."""
        job_id = await call(d.app.enqueue, **body.model_dump(), strict=d.strict)  # its fields are enqueue's
        job = await read(d.app.get_job, job_id)
        return {"id": job_id, "job": data.job_json(job, d.redact) if job else None}

    @reading("/jobs/stats", StatsOut, "jobs", "jobStats")
    async def stats() -> Any:
        """Per queue: live counts, finished over 24 h, rates and timings (as ``pgq stats --json``)."""
        lag = await read(d.app.replica_lag) if d.reads is not d.app else None
        return {"queues": await read(d.reads.stats), "replica_lag_seconds": lag}

    @reading("/jobs/{job_id}", JobOut, "jobs", "getJob", 404)
    async def get_job(job_id: JobIdPath) -> Any:
        """One job, live or finished."""
        found = job_id_param(job_id)
        job, _ = await read(d.job, found)
        if job is None:
            raise WebError(404, f"no job with id {found} (live or in the retained history)")
        return data.job_json(job, d.redact)

    @acting("PATCH", "/jobs/{job_id}", JobOut, "jobs", "updateJob", 404, 409)
    async def update_job(job_id: JobIdPath, body: JobUpdateIn) -> Any:
        """Change a waiting job (pending, delayed or blocked), as ``app.update_job``: only the fields
        sent change. 409 for a running or finished job."""
        found = job_id_param(job_id)
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        if not changes:
            raise WebError(422, f"nothing to change: send at least one of {', '.join(JobUpdateIn.model_fields)}")
        job = await call(d.app.update_job, found, **changes)
        return data.job_json(job, d.redact)

    @reading("/jobs/{job_id}/explain", Explanation, "jobs", "explainJob", 404)
    async def explain(job_id: JobIdPath) -> Any:
        """Why isn't this job running? (as ``pgq explain ID`` and the SQL function ``pgq.explain(id)``)"""
        found = job_id_param(job_id)
        text = await read(d.reads.explain, found)
        if text.endswith(": no such job") and d.reads is not d.app:
            text = await read(d.app.explain, found)  # not on the replica yet: the primary has it
        if text.endswith(": no such job"):
            raise WebError(404, f"no job with id {found} (live or in the retained history)")
        return {"id": found, "text": text, "reasons": data.explain_reasons(text)}

    @acting("POST", "/jobs/{job_id}/action", JobActionOut, "jobs", "actOnJob", 404, 409)
    async def act_on_job(job_id: JobIdPath, body: JobActionIn) -> Any:
        """Retry, cancel, promote (run a delayed job now) or remove (delete a finished job)."""
        found = job_id_param(job_id)
        message = await operations.job_action(d.app, found, body.action)
        job = await read(d.app.get_job, found)
        return {
            "id": found,
            "action": body.action,
            "message": message,
            "job": data.job_json(job, d.redact) if job else None,
        }

    @acting("POST", "/jobs/bulk", BulkOut, "jobs", "bulkAction", 409)
    async def bulk_action(body: BulkIn) -> Any:
        """Retry, cancel, delete or re-prioritise every job the filter matches (``app.bulk``), in batches.
        Send ``dry_run: true`` first to get the count for a confirmation."""
        chosen = await call(lambda: JobFilter(**body.filter.model_dump()))
        result = await call(
            run_bulk, d.app, body.action, chosen, priority=body.priority, all=body.all, dry_run=body.dry_run
        )
        return {**dataclasses.asdict(result), "message": result.message(chosen)}

    # ---------------------------------------------------------------- queues

    @reading("/queues", QueueList, "queues", "listQueues")
    async def list_queues() -> Any:
        """Every queue with its live counts, whether it is paused, and its limits."""
        return {"queues": await read(d.reads.list_queues)}

    @acting("POST", "/queues/{name}/limits", QueueActionOut, "queues", "setQueueLimits")
    async def set_queue_limits(name: str, body: QueueLimitsIn) -> Any:
        """Set a queue's limits, as ``pgq queues set``: only the fields given change, null removes a limit."""
        changes = operations.limit_changes(body.model_dump(exclude_unset=True), empty_removes=False)
        message = await operations.set_limits(d.app, name, changes)
        return {"queue": name, "action": "limits", "message": message}

    @acting("POST", "/queues/{name}/{action}", QueueActionOut, "queues", "actOnQueue", 404)
    async def act_on_queue(
        name: str,
        action: Annotated[str, Path(json_schema_extra={"enum": list(operations.QUEUE_ACTIONS)})],
        body: Annotated[dict[str, Any] | None, Body(description="nothing, or {}")] = None,
    ) -> Any:
        """Pause or resume a queue, or retry every failed job of it."""
        if action not in operations.QUEUE_ACTIONS:
            raise WebError(
                404, f"no API endpoint POST /api/queues/{name}/{action}; use {', '.join(operations.QUEUE_ACTIONS)}"
            )
        if body:
            raise WebError(422, f"this action takes no fields, got {', '.join(sorted(body))}")
        message = await operations.queue_action(d.app, name, action)
        return {"queue": name, "action": action, "message": message}

    # --------------------------------------------------------------- workers

    @reading("/workers", WorkerList, "workers", "listWorkers")
    async def list_workers() -> Any:
        """Every worker row (stopped and dead ones for a day), live ones first."""
        return {"workers": await read(d.reads.list_workers)}

    # ------------------------------------------------------------- schedules

    @reading("/schedules", ScheduleList, "schedules", "listSchedules")
    async def list_schedules() -> Any:
        """Every schedule, with its args redacted."""
        return {"schedules": [_schedule_out(s, d) for s in await read(d.reads.list_schedules)]}

    @acting("POST", "/schedules/{name:path}/action", ScheduleActionOut, "schedules", "actOnSchedule", 404)
    async def act_on_schedule(name: str, body: ScheduleActionIn) -> Any:
        """Enable, disable or trigger (enqueue its job now) a schedule."""
        message, job_id = await operations.schedule_action(d.app, name, body.action)
        schedule = await read(d.app.get_schedule, name)
        return {
            "name": name,
            "action": body.action,
            "message": message,
            "schedule": _schedule_out(schedule, d),
            "job_id": job_id,
        }

    # --------------------------------------------------------------- metrics

    @reading("/metrics/series", Series, "metrics", "metricSeries", 422)
    async def metric_series(
        range: Annotated[Literal["1h", "6h", "24h", "7d"], Query(description="how far back")] = "1h",
    ) -> Any:
        """Completed, failed and retried jobs and mean wait and run times per queue, in equal steps
        (the sweeper's ``pgq.metrics`` rows): what the overview's charts draw."""
        return await read(data.series, d.app, range)

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(d.openapi(request.scope.get("root_path", "")))

    return api
