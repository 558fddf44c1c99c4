"""The REST API (JSON) under ``/api``, and its OpenAPI description.

Errors are ``{"error": "..."}`` with a message saying what was wrong and what
to do: 401 without credentials, 403 read-only or cross-site, 404 unknown id or
name, 409 an action the job's state does not allow, 422 a bad request body or
parameter, 503 the database is unreachable.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgq.job import STATUSES
from pgq.web import data
from pgq.web.operations import (
    JOB_ACTIONS,
    QUEUE_ACTIONS,
    SCHEDULE_ACTIONS,
    WebError,
    call,
    job_action,
    queue_action,
    schedule_action,
)
from pgq.web.security import same_origin

if TYPE_CHECKING:
    from pgq.web.dashboard import Dashboard

MAX_LIMIT = 1000
ENQUEUE_FIELDS: dict[str, tuple[type, ...]] = {
    "task": (str,),
    "args": (dict,),
    "queue": (str,),
    "priority": (int,),
    "delay": (int, float),
    "run_at": (str,),
    "key": (str,),
    "max_attempts": (int,),
    "group": (str,),
    "depends_on": (list,),
    "on_parent_failure": (str,),
    "unique_for": (int, float),
    "debounce": (int, float),
}
TYPE_NAMES = {str: "a string", dict: "a JSON object", int: "an integer", float: "a number", list: "a JSON array"}

Handler = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def json_body(request: Request, allowed: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """The request's JSON object, with only ``allowed`` fields of the right types (else 422)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WebError(422, f"the body is not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(body, dict):
        raise WebError(422, f"the body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise WebError(422, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
    for name, value in body.items():
        types = allowed[name]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise WebError(422, f"field {name!r} must be {TYPE_NAMES[types[0]]}, got {json.dumps(value)[:80]}")
    return body


def int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise WebError(422, f"query parameter {name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise WebError(422, f"query parameter {name} must be between {low} and {high}, got {value}")
    return value


def job_id_param(request: Request) -> int:
    text = request.path_params["job_id"]
    found = data.job_id(text)
    if found is None:
        raise WebError(404, f"no job with id {text!r}: job ids are whole numbers")
    return found


class Api:
    def __init__(self, dashboard: Dashboard) -> None:
        self.d = dashboard

    def routes(self) -> list[Route]:
        table: list[tuple[str, str, Handler]] = [
            ("/api/openapi.json", "GET", self.openapi),
            ("/api/jobs", "GET", self.list_jobs),
            ("/api/jobs", "POST", self.enqueue),
            ("/api/jobs/stats", "GET", self.stats),
            ("/api/jobs/{job_id}", "GET", self.get_job),
            ("/api/jobs/{job_id}/action", "POST", self.job_action),
            ("/api/jobs/{job_id}/explain", "GET", self.explain),
            ("/api/queues", "GET", self.list_queues),
            ("/api/queues/{name}/{action}", "POST", self.queue_action),
            ("/api/workers", "GET", self.list_workers),
            ("/api/schedules", "GET", self.list_schedules),
            ("/api/schedules/{name:path}/action", "POST", self.schedule_action),
        ]
        routes = []
        for path, method, handler in table:
            routes.append(Route(path, self._wrap(handler), methods=[method], name=f"{method} {path}"))
        return routes

    def _wrap(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                if request.method == "POST":
                    self._check_post(request)
                return await handler(request)
            except WebError as exc:
                return error(exc.status, exc.message)

        return endpoint

    def _check_post(self, request: Request) -> None:
        if not same_origin(request):
            raise WebError(403, "cross-site request refused: call the API from its own origin or with a bearer token")
        if self.d.read_only:
            raise WebError(403, "the dashboard is read-only (--read-only): actions are refused")
        ctype = request.headers.get("content-type", "")
        if ctype and "json" not in ctype:
            raise WebError(422, f"send JSON with Content-Type: application/json, not {ctype!r}")

    # ---------------------------------------------------------------- jobs

    async def list_jobs(self, request: Request) -> Response:
        params = request.query_params
        status = params.get("status") or None
        if status is not None and status not in STATUSES:
            raise WebError(422, f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        unknown = sorted(set(params) - {"status", "queue", "task", "key", "limit", "before_id"})
        if unknown:
            raise WebError(
                422,
                f"unknown query parameter(s) {', '.join(unknown)}; known: status, queue, task, key, limit, before_id",
            )
        limit = int_param(request, "limit", 50, 1, MAX_LIMIT)
        assert limit is not None
        before = int_param(request, "before_id", None, 1, 2**63 - 1)
        jobs = await call(
            self.d.app.list_jobs,
            status=status,
            queue=params.get("queue") or None,
            task=params.get("task") or None,
            key=params.get("key") or None,
            limit=limit,
            before_id=before,
        )
        return JSONResponse(
            {
                "jobs": [data.job_json(job, self.d.redact) for job in jobs],
                "next_before_id": jobs[-1].id if len(jobs) == limit else None,
            }
        )

    async def get_job(self, request: Request) -> Response:
        job_id = job_id_param(request)
        job = await call(self.d.app.get_job, job_id)
        if job is None:
            raise WebError(404, f"no job with id {job_id} (live or in the retained history)")
        return JSONResponse(data.job_json(job, self.d.redact))

    async def explain(self, request: Request) -> Response:
        """What ``pgq explain ID`` prints, as text and as its lines (the reasons of a pending job)."""
        job_id = job_id_param(request)
        text = await call(self.d.app.explain, job_id)
        if text.endswith(": no such job"):
            raise WebError(404, f"no job with id {job_id} (live or in the retained history)")
        return JSONResponse({"id": job_id, "text": text, "reasons": data.explain_reasons(text)})

    async def enqueue(self, request: Request) -> Response:
        body = await json_body(request, ENQUEUE_FIELDS)
        task = body.get("task")
        if not task:
            raise WebError(422, 'field "task" is required: the name of a task, e.g. {"task": "send_email", "args": {}}')
        run_at = None
        if body.get("run_at") is not None:
            try:
                run_at = datetime.fromisoformat(body["run_at"])
            except ValueError:
                raise WebError(
                    422, f"run_at {body['run_at']!r} is not ISO 8601; e.g. 2026-12-01T09:00:00+00:00"
                ) from None
            if run_at.tzinfo is None:
                raise WebError(422, f"run_at {body['run_at']!r} has no time zone; add one, e.g. +00:00")
        if run_at is not None and body.get("delay") is not None:
            raise WebError(422, "give delay or run_at, not both")
        job_id = await call(
            self.d.app.enqueue,
            task,
            body.get("args") or {},
            queue=body.get("queue"),
            priority=body.get("priority"),
            run_at=run_at,
            delay=body.get("delay"),
            key=body.get("key"),
            max_attempts=body.get("max_attempts"),
            group=body.get("group"),
            depends_on=body.get("depends_on"),
            on_parent_failure=body.get("on_parent_failure"),
            unique_for=body.get("unique_for"),
            debounce=body.get("debounce"),
            strict=self.d.strict,
        )
        job = await call(self.d.app.get_job, job_id)
        payload: dict[str, Any] = {"id": job_id}
        if job is not None:
            payload["job"] = data.job_json(job, self.d.redact)
        return JSONResponse(payload, status_code=201)

    async def job_action(self, request: Request) -> Response:
        job_id = job_id_param(request)
        body = await json_body(request, {"action": (str,)})
        action = body.get("action")
        if action not in JOB_ACTIONS:
            raise WebError(422, f'field "action" must be one of {", ".join(JOB_ACTIONS)}; got {action!r}')
        message = await job_action(self.d.app, job_id, action)
        job = await call(self.d.app.get_job, job_id)
        return JSONResponse(
            {
                "id": job_id,
                "action": action,
                "message": message,
                "job": data.job_json(job, self.d.redact) if job else None,
            }
        )

    async def stats(self, request: Request) -> Response:
        """What ``pgq stats --json`` prints: per queue, counts, rates and timings."""
        stats = await call(self.d.app.stats)
        return JSONResponse({"queues": [data.plain(s) for s in stats]})

    # -------------------------------------------------------- queues, workers

    async def list_queues(self, request: Request) -> Response:
        queues = await call(self.d.app.list_queues)
        return JSONResponse({"queues": [data.plain(q) for q in queues]})

    async def queue_action(self, request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in QUEUE_ACTIONS:
            raise WebError(404, f"no API endpoint POST /api/queues/{name}/{action}; use {', '.join(QUEUE_ACTIONS)}")
        await json_body(request, {})
        message = await queue_action(self.d.app, name, action)
        return JSONResponse({"queue": name, "action": action, "message": message})

    async def list_workers(self, request: Request) -> Response:
        workers = await call(self.d.app.list_workers)
        return JSONResponse({"workers": [data.plain(w) for w in workers]})

    # ----------------------------------------------------------- schedules

    async def list_schedules(self, request: Request) -> Response:
        schedules = await call(self.d.app.list_schedules)
        out = []
        for schedule in schedules:
            item = data.plain(schedule)
            item["args"] = self.d.redact(item["args"])
            out.append(item)
        return JSONResponse({"schedules": out})

    async def schedule_action(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await json_body(request, {"action": (str,)})
        action = body.get("action")
        if action not in SCHEDULE_ACTIONS:
            raise WebError(422, f'field "action" must be one of {", ".join(SCHEDULE_ACTIONS)}; got {action!r}')
        message = await schedule_action(self.d.app, name, action)
        schedule = await call(self.d.app.get_schedule, name)
        item = data.plain(schedule) if schedule else None
        if item:
            item["args"] = self.d.redact(item["args"])
        return JSONResponse({"name": name, "action": action, "message": message, "schedule": item})

    # -------------------------------------------------------------- openapi

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(request.scope.get("root_path", "")))


def _err(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_document(root_path: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API, written out by hand."""
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    schedule_name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    common_errors = {"401": _err("no or wrong token"), "503": _err("the database is unreachable")}
    post_errors = {**common_errors, "403": _err("read-only dashboard, or a cross-site request")}

    def q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

    paths: dict[str, Any] = {
        "/api/jobs": {
            "get": {
                "summary": "List jobs, newest first",
                "parameters": [
                    q("status", {"type": "string", "enum": list(STATUSES)}, "only jobs in this state"),
                    q("queue", {"type": "string"}, "only jobs of this queue"),
                    q("task", {"type": "string"}, "only jobs of this task"),
                    q("key", {"type": "string"}, "only jobs with this idempotency key"),
                    q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}, "page size"),
                    q("before_id", {"type": "integer"}, "next page: the next_before_id of the previous one"),
                ],
                "responses": {
                    "200": _ok(
                        "a page of jobs",
                        {
                            "type": "object",
                            "properties": {
                                "jobs": {"type": "array", "items": _ref("Job")},
                                "next_before_id": {"type": ["integer", "null"]},
                            },
                        },
                    ),
                    "422": _err("a bad parameter"),
                    **common_errors,
                },
            },
            "post": {
                "summary": "Enqueue a job",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("EnqueueRequest")}}},
                "responses": {
                    "201": _ok(
                        "the job (or the live job that already holds its key)",
                        {"type": "object", "properties": {"id": {"type": "integer"}, "job": _ref("Job")}},
                    ),
                    "422": _err("a bad body: not JSON, unknown field, wrong type, unknown task when strict"),
                    **post_errors,
                },
            },
        },
        "/api/jobs/stats": {
            "get": {
                "summary": "Per queue: live counts, finished over 24 h, rates and timings (as pgq stats --json)",
                "responses": {"200": _ok("counts", _ref("Stats")), **common_errors},
            }
        },
        "/api/jobs/{job_id}": {
            "get": {
                "summary": "One job, live or finished",
                "parameters": [job_id],
                "responses": {"200": _ok("the job", _ref("Job")), "404": _err("no such job"), **common_errors},
            }
        },
        "/api/jobs/{job_id}/explain": {
            "get": {
                "summary": "Why isn't this job running? (as pgq explain ID and the SQL function pgq.explain(id))",
                "parameters": [job_id],
                "responses": {
                    "200": _ok("the explanation", _ref("Explanation")),
                    "404": _err("no such job"),
                    **common_errors,
                },
            }
        },
        "/api/jobs/{job_id}/action": {
            "post": {
                "summary": "Retry, cancel, promote (run a delayed job now) or remove (delete a finished job)",
                "parameters": [job_id],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["action"],
                                "additionalProperties": False,
                                "properties": {"action": {"type": "string", "enum": list(JOB_ACTIONS)}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _ok("done", _ref("ActionResult")),
                    "404": _err("no such job"),
                    "409": _err("the job's state does not allow the action"),
                    "422": _err("a bad body"),
                    **post_errors,
                },
            }
        },
        "/api/queues": {
            "get": {
                "summary": "Every queue with its live counts and whether it is paused",
                "responses": {
                    "200": _ok("queues", {"type": "object", "properties": {"queues": {"type": "array"}}}),
                    **common_errors,
                },
            }
        },
        "/api/queues/{name}/{action}": {
            "post": {
                "summary": "Pause or resume a queue, or retry every failed job of it",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(QUEUE_ACTIONS)},
                    },
                ],
                "responses": {
                    "200": _ok("done", {"type": "object"}),
                    "404": _err("no such action"),
                    "422": _err("not a queue name, or a body with fields"),
                    **post_errors,
                },
            }
        },
        "/api/workers": {
            "get": {
                "summary": "Every worker row (stopped and dead ones for a day), live ones first",
                "responses": {
                    "200": _ok("workers", {"type": "object", "properties": {"workers": {"type": "array"}}}),
                    **common_errors,
                },
            }
        },
        "/api/schedules": {
            "get": {
                "summary": "Every schedule",
                "responses": {
                    "200": _ok(
                        "schedules",
                        {"type": "object", "properties": {"schedules": {"type": "array", "items": _ref("Schedule")}}},
                    ),
                    **common_errors,
                },
            }
        },
        "/api/schedules/{name}/action": {
            "post": {
                "summary": "Enable, disable or trigger (enqueue its job now) a schedule",
                "parameters": [schedule_name],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["action"],
                                "additionalProperties": False,
                                "properties": {"action": {"type": "string", "enum": list(SCHEDULE_ACTIONS)}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _ok("done", {"type": "object"}),
                    "404": _err("no such schedule"),
                    "422": _err("a bad body"),
                    **post_errors,
                },
            }
        },
    }
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Job": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "queue": {"type": "string"},
                "task": {"type": "string"},
                "args": {"type": "object", "description": "keys in PGQ_REDACT_KEYS show as [redacted]"},
                "priority": {"type": "integer"},
                "status": {"type": "string", "enum": list(STATUSES)},
                "attempts": {"type": "integer"},
                "max_attempts": {"type": "integer"},
                "run_at": {"type": "string", "format": "date-time"},
                "created_at": {"type": "string", "format": "date-time"},
                "started_at": {"type": ["string", "null"], "format": "date-time"},
                "finished_at": {"type": ["string", "null"], "format": "date-time"},
                "worker_id": {"type": ["string", "null"]},
                "key": {"type": ["string", "null"]},
                "group_key": {"type": ["string", "null"]},
                "depends_on": {"type": ["array", "null"], "items": {"type": "integer"}},
                "on_parent_failure": {"type": ["string", "null"], "enum": ["cancel", "run", None]},
                "progress": {"type": ["number", "null"]},
                "progress_message": {"type": ["string", "null"]},
                "errors": {"type": "array", "items": {"type": "object"}},
                "timeout": {"type": ["number", "null"], "description": "seconds"},
                "result": {},
            },
        },
        "EnqueueRequest": {
            "type": "object",
            "required": ["task"],
            "additionalProperties": False,
            "properties": {
                "task": {"type": "string"},
                "args": {"type": "object", "default": {}},
                "queue": {"type": "string"},
                "priority": {"type": "integer"},
                "delay": {"type": "number", "description": "seconds from now; excludes run_at"},
                "run_at": {"type": "string", "format": "date-time", "description": "with a time zone"},
                "key": {"type": "string", "description": "idempotency key, unique among live jobs of the queue"},
                "max_attempts": {"type": "integer", "minimum": 1},
                "group": {"type": "string", "description": "flow-control group, e.g. tenant:42"},
                "depends_on": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "description": "ids of jobs to wait for (blocked until they completed)",
                },
                "on_parent_failure": {"type": "string", "enum": ["cancel", "run"]},
                "unique_for": {"type": "number", "description": "with key: seconds the key stays taken"},
                "debounce": {"type": "number", "description": "with key: seconds; pushes the pending job back"},
            },
        },
        "Explanation": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "text": {"type": "string", "description": "the whole text, one line per reason after the first"},
                "reasons": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "what holds a pending job back, one entry each; empty when nothing does",
                },
            },
        },
        "ActionResult": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "action": {"type": "string"},
                "message": {"type": "string"},
                "job": {"oneOf": [_ref("Job"), {"type": "null"}]},
            },
        },
        "Stats": {
            "type": "object",
            "properties": {"queues": {"type": "array", "items": {"type": "object"}}},
            "description": "fields as pgq.QueueStats (docs/operations.md)",
        },
        "Schedule": {"type": "object"},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "pgq", "version": _version(), "description": "The REST API of the pgq dashboard."},
        "servers": [{"url": root_path or "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }


def _version() -> str:
    from pgq import __version__

    return __version__
