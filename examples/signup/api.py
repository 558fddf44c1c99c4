"""The producer: ``uvicorn examples.signup.api:api``. It writes the user and enqueues its jobs
in one transaction; it runs no job itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel, Field, model_validator

from examples.signup.tasks import (
    CONCURRENCY,
    app,
    connect,
    send_welcome_email,
    setup,
    sync_to_crm,
    warn_about_dead_letters,
)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    setup()
    warn_about_dead_letters()
    yield
    app.close()


api = FastAPI(title="signup", lifespan=lifespan)


class Signup(BaseModel):
    """The seed's form, ``{userId, email}``, or this example's, ``{email, name}``."""

    email: str
    name: str | None = None
    user_id: str | None = Field(default=None, alias="userId", description="the caller's id of the user")

    @model_validator(mode="after")
    def named(self) -> Signup:
        if self.name is None and self.user_id is None:
            raise ValueError("give name (or the seed's userId)")
        return self


@api.post("/signup")
def signup(body: Signup) -> dict[str, Any]:
    with connect() as conn, conn.transaction():
        # A double submit finds the user of the first one...
        user_id = conn.execute(
            "insert into users (email, name) values (%s, %s)"
            " on conflict (email) do update set name = excluded.name returning id",
            [body.email.strip().lower(), body.name or body.user_id],
        ).fetchone()[0]  # type: ignore[index]
        # ...and the deterministic key returns its job instead of enqueueing another while it is live.
        # (Once it has run, the handler sees users.welcomed_at and sends nothing.)
        welcome = send_welcome_email.options(connection=conn, key=f"welcome-email:{user_id}").enqueue(user_id=user_id)
        crm = sync_to_crm.options(connection=conn, key=f"crm-sync:{user_id}").enqueue(user_id=user_id)
    # success and jobId: the seed's answer; user_id and jobs: this example's.
    return {"success": True, "jobId": welcome, "user_id": user_id, "jobs": {"welcome_email": welcome, "crm_sync": crm}}


class SimulatedError(BaseModel):
    #: transient: the mailer answers 503 once (retried with backoff, then sent);
    #: permanent: an address no provider takes (failed at once, no retry).
    kind: Literal["transient", "permanent"]


@api.post("/simulate-error", status_code=202)
def simulate_error(body: SimulatedError) -> dict[str, Any]:
    """A signup whose welcome email meets that failure, through the real mailer path."""
    with connect() as conn:
        (n,) = conn.execute("select count(*) + 1 from users").fetchone()  # type: ignore[misc]
    email = f"test{n}+flaky@example.com" if body.kind == "transient" else f"test{n}@example.invalid"
    answer = signup(Signup(email=email, name=f"{body.kind} error test"))
    return {"kind": body.kind, "email": email, "jobId": answer["jobId"]}


@api.get("/health")
def health(response: Response) -> dict[str, Any]:
    """Database reachable, a live worker for each queue, and the backlog: 200 when all is well,
    503 otherwise (what a load balancer or an uptime check reads)."""
    try:
        queues = {queue.name: queue for queue in app.list_queues()}
        workers = app.list_workers()
    except Exception as exc:  # the database is unreachable: say so, do not raise
        response.status_code = 503
        return {"status": "down", "database": f"unreachable: {exc}"}
    live = {name: sum(1 for w in workers if w.status == "running" and name in w.queues) for name in CONCURRENCY}
    backlog = {
        name: {"waiting": queues[name].waiting, "delayed": queues[name].delayed, "running": queues[name].active}
        if name in queues
        else {"waiting": 0, "delayed": 0, "running": 0}
        for name in CONCURRENCY
    }
    healthy = all(live.values())
    if not healthy:
        response.status_code = 503
    return {"status": "ok" if healthy else "degraded", "database": "ok", "workers": live, "backlog": backlog}


@api.get("/jobs/{job_id}")
def job(job_id: int) -> dict[str, Any]:
    found = app.get_job(job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id}")
    return {"id": job_id, "status": found.status, "attempts": found.attempts}
