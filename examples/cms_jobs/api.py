"""The CMS's HTTP API: ``uvicorn examples.cms_jobs.api:api``.

POST /articles writes the article and enqueues its jobs in one transaction; POST /jobs
creates a job of any of the CMS's types, PATCH /jobs/{id} changes a waiting one and
DELETE /jobs/{id} removes one; GET /jobs and GET /jobs/{id} show them; GET /admin/failures
runs plain SQL over pgq's history, and /admin/jobs is pgq's dashboard. Every route asks
for ``Authorization: Bearer $CMS_API_TOKEN``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, Field
from sqlalchemy import Column, ForeignKey, Integer, String, Table, create_engine, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import pgq
import pgq.web
from examples.cms_jobs.jobs import JOB_TYPES, generate_report, process_image, send_email
from examples.cms_jobs.jobs import app as queue

log = logging.getLogger("cms")

# The collection was "access: authenticated": so is this API. A real deploy sets the token.
TOKEN = os.environ.get("CMS_API_TOKEN") or "dev-token"
if "CMS_API_TOKEN" not in os.environ:
    log.warning("CMS_API_TOKEN is not set: the API accepts the development token 'dev-token'")


def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), TOKEN.encode()):
        raise HTTPException(401, "send Authorization: Bearer <CMS_API_TOKEN>", headers={"WWW-Authenticate": "Bearer"})


# One database for the CMS and its jobs. The engine connects with pgq's URL (PGQ_DATABASE_URL,
# or the embedded PostgreSQL), so the articles and the jobs can share a transaction.
engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(queue.url))


class Base(DeclarativeBase):
    pass


class Article(Base):
    __tablename__ = "articles"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    slug: Mapped[str] = mapped_column(unique=True)
    author_email: Mapped[str]


class Tag(Base):
    __tablename__ = "tags"
    name: Mapped[str] = mapped_column(primary_key=True)


article_tags = Table(
    "article_tags",
    Base.metadata,
    Column("article_id", Integer, ForeignKey("articles.id"), primary_key=True),
    Column("tag", String, ForeignKey("tags.name"), primary_key=True),
)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    queue.migrate()  # pgq's schema (a no-op when up to date); `pgq migrate` in a real deploy
    Base.metadata.create_all(engine)  # the CMS's own tables; alembic in a real app
    with Session(engine) as session, session.begin():
        for name in ("news", "sport", "culture"):
            session.merge(Tag(name=name))
    yield
    queue.close()


api = FastAPI(title="CMS", lifespan=lifespan, dependencies=[Depends(require_token)])
# pgq's dashboard inside the CMS's admin, behind the same token (a browser logs in with it).
api.mount("/admin/jobs", pgq.web.create_app(queue, token=TOKEN))


def get_session() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


DB = Annotated[Session, Depends(get_session)]


class NewArticle(BaseModel):
    title: str
    slug: str
    author_email: str
    images: list[str] = []
    tags: list[str] = []


@api.post("/articles", status_code=201)
def create_article(body: NewArticle, session: DB) -> dict[str, Any]:
    article = Article(title=body.title, slug=body.slug, author_email=body.author_email)
    session.add(article)
    try:
        session.flush()  # the row is written (not committed): article.id is known
        # The jobs join the session's transaction: they exist only if it commits.
        jobs = [
            send_email.options(connection=session).enqueue(article_id=article.id, to=body.author_email),
            generate_report.options(connection=session).enqueue(article_id=article.id),
        ]
        jobs += [
            process_image.options(connection=session).enqueue(article_id=article.id, image_url=url)
            for url in body.images
        ]
        if body.tags:  # an unknown tag breaks the foreign key: the article AND its jobs are rolled back
            session.execute(insert(article_tags), [{"article_id": article.id, "tag": tag} for tag in body.tags])
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise HTTPException(409, f"article not saved, no job enqueued: {exc.orig}") from None
    return {"id": article.id, "jobs": jobs}


# pgq's job statuses, in the CMS's words.
STATUS = {
    "pending": "pending",
    "blocked": "pending",
    "running": "processing",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}


def job_view(job: pgq.Job) -> dict[str, Any]:
    last_error = job.errors[-1] if job.errors else None
    return {
        "id": job.id,
        "type": job.task,
        "payload": job.args,
        "status": STATUS[job.status],
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error": f"{last_error['type']}: {last_error['message']}" if last_error else None,
        "run_at": job.run_at,  # when it is due (a delayed job: later than created_at)
        "processed_at": job.started_at,  # the start of the last attempt
        "completed_at": job.finished_at if job.status == "completed" else None,
        "finished_at": job.finished_at,
        "created_at": job.created_at,
        # pgq records no edit time: the last event it does record (finish, start, creation).
        "updated_at": job.finished_at or job.started_at or job.created_at,
        "result": job.result,
    }


class NewJob(BaseModel):
    type: str
    payload: dict[str, Any] = {}
    priority: int | None = None
    delay: float | None = Field(default=None, ge=0, description="seconds from now")
    run_at: dt.datetime | None = None


class JobChanges(BaseModel):
    payload: dict[str, Any] | None = None
    priority: int | None = None
    delay: float | None = Field(default=None, ge=0, description="seconds from now")
    run_at: dt.datetime | None = None


def _known_type(name: str) -> pgq.Task[..., Any]:
    task = JOB_TYPES.get(name)
    if task is None:
        raise HTTPException(422, f"unknown job type {name!r}; the CMS's types are {', '.join(sorted(JOB_TYPES))}")
    return task


@api.post("/jobs", status_code=201)
def create_job(body: NewJob) -> dict[str, Any]:
    """createJob(type, payload, options): a job of one of the CMS's types."""
    task = _known_type(body.type)
    try:
        job_id = task.options(priority=body.priority, delay=body.delay, run_at=body.run_at).enqueue(**body.payload)
    except (pgq.InvalidJob, pgq.ConfigurationError) as exc:
        raise HTTPException(422, str(exc)) from None
    return get_job(job_id)


@api.patch("/jobs/{job_id}")
def change_job(job_id: int, body: JobChanges) -> dict[str, Any]:
    """Change a waiting job's payload, priority or run time; a started one is 409."""
    changes = body.model_dump(exclude_unset=True)
    if "payload" in changes:
        changes["args"] = changes.pop("payload")
    try:
        job = queue.update_job(job_id, **changes)
    except pgq.JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except pgq.InvalidState as exc:
        raise HTTPException(409, str(exc)) from None
    except (pgq.InvalidJob, pgq.ConfigurationError) as exc:
        raise HTTPException(422, str(exc)) from None
    return job_view(job)


@api.delete("/jobs/{job_id}", status_code=204)
def remove_job(job_id: int) -> Response:
    """Remove a job, as BullMQ's job.remove(): a waiting one is cancelled first; a running one
    is 409 (cancel it, then remove it once it stopped)."""
    job = queue.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    try:
        if not job.is_finished:
            if queue.cancel(job_id) != "cancelled":  # "cancelling": it is running
                raise HTTPException(409, f"job {job_id} is running: it was asked to stop; DELETE it again once it has")
        queue.delete(job_id)
    except pgq.JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except pgq.InvalidState as exc:
        raise HTTPException(409, str(exc)) from None
    return Response(status_code=204)


@api.get("/jobs")
def list_jobs(status: str | None = None, type: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    pgq_status = {"processing": "running"}.get(status or "", status)
    return [job_view(job) for job in queue.list_jobs(status=pgq_status, queue="cms", task=type, limit=limit)]


@api.get("/jobs/{job_id}")
def get_job(job_id: int) -> dict[str, Any]:
    job = queue.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job_view(job)


FAILURES_BY_TYPE = text("""
    select task as type, count(*) as failed, max(finished_at) as last_failure,
           (array_agg(errors -> -1 ->> 'message' order by finished_at desc))[1] as last_error
    from pgq.job_history
    where queue = 'cms' and status = 'failed'
      and finished_at >= cast(:day as date) and finished_at < cast(:day as date) + 1
    group by task
    order by failed desc, task
""")


@api.get("/admin/failures")
def failures_by_type(session: DB, day: dt.date | None = None) -> dict[str, Any]:
    """Jobs that failed for good on one day (default: yesterday, by the database's clock), by type."""
    day = session.execute(text("select coalesce(cast(:day as date), current_date - 1)"), {"day": day}).scalar_one()
    rows = session.execute(FAILURES_BY_TYPE, {"day": day}).mappings().all()
    return {"day": day.isoformat(), "failures": [dict(row) for row in rows]}
