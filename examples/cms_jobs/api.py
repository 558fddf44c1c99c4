"""The CMS's HTTP API: ``uvicorn examples.cms_jobs.api:api``.

POST /articles writes the article and enqueues its jobs in one transaction; GET /jobs and
GET /jobs/{id} show the jobs; GET /admin/failures runs plain SQL over pgq's history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import Column, ForeignKey, Integer, String, Table, create_engine, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import pgq
from examples.cms_jobs.jobs import app as queue
from examples.cms_jobs.jobs import generate_report, process_image, send_email

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


api = FastAPI(title="CMS", lifespan=lifespan)


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
        "processed_at": job.started_at,  # the start of the last attempt
        "completed_at": job.finished_at if job.status == "completed" else None,
        "finished_at": job.finished_at,
        "result": job.result,
    }


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
