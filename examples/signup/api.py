"""The producer: ``uvicorn examples.signup.api:api``. It writes the user and enqueues its jobs
in one transaction; it runs no job itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from examples.signup.tasks import app, connect, send_welcome_email, setup, sync_to_crm, warn_about_dead_letters


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    setup()
    warn_about_dead_letters()
    yield
    app.close()


api = FastAPI(title="signup", lifespan=lifespan)


class Signup(BaseModel):
    email: str
    name: str


@api.post("/signup")
def signup(body: Signup) -> dict[str, Any]:
    with connect() as conn, conn.transaction():
        # A double submit finds the user of the first one...
        user_id = conn.execute(
            "insert into users (email, name) values (%s, %s)"
            " on conflict (email) do update set name = excluded.name returning id",
            [body.email.strip().lower(), body.name],
        ).fetchone()[0]  # type: ignore[index]
        # ...and the deterministic key returns its job instead of enqueueing another while it is live.
        # (Once it has run, the handler sees users.welcomed_at and sends nothing.)
        welcome = send_welcome_email.options(connection=conn, key=f"welcome-email:{user_id}").enqueue(user_id=user_id)
        crm = sync_to_crm.options(connection=conn, key=f"crm-sync:{user_id}").enqueue(user_id=user_id)
    return {"user_id": user_id, "jobs": {"welcome_email": welcome, "crm_sync": crm}}


@api.get("/jobs/{job_id}")
def job(job_id: int) -> dict[str, Any]:
    found = app.get_job(job_id)
    return {"id": job_id, "status": found.status if found else None, "attempts": found.attempts if found else None}
