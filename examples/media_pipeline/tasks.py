"""A media pipeline: emails, images and webhooks, and a callback when a batch of images is done.

Worker: ``pgq worker examples.media_pipeline.tasks:app --queues emails,images,webhooks``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import httpx
import psycopg

import pgq

DAY = 24 * 3600.0
# PGQ_DATABASE_URL, or an embedded PostgreSQL of this example's own in ./.pgq/media_pipeline (PGQ_DATA_DIR
# overrides it; see examples/README.md). The elected sweeper deletes completed and
# cancelled jobs 7 days after they finished, failed ones after 30 (PGQ_RETENTION_* in the environment
# do the same without code).
app = pgq.App(
    data_dir=os.environ.get("PGQ_DATA_DIR", ".pgq/media_pipeline"), retention=7 * DAY, retention_failed=30 * DAY
)

log = logging.getLogger("media")

TABLES = """
create table if not exists image_batches (
    id bigint generated always as identity primary key,
    callback_url text not null
);
create table if not exists images (
    id bigint generated always as identity primary key,
    batch_id bigint references image_batches,
    url text not null,
    thumbnail text                      -- set by the image's job when it is done
);
-- What the example's own webhook receiver (POST /webhook-receiver in api.py) got.
create table if not exists webhook_receipts (
    id bigint generated always as identity primary key,
    received_at timestamptz not null default now(),
    body jsonb not null
);
"""

#: Where webhooks go unless told otherwise: the example's own receiver (api.py under uvicorn on its
#: default port), so that the pipeline runs offline. MEDIA_WEBHOOK_URL changes it.
WEBHOOK_URL = os.environ.get("MEDIA_WEBHOOK_URL", "http://127.0.0.1:8000/webhook-receiver")


def connect() -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(app.url, autocommit=True)


# ------------------------------------------------------------------ emails


@app.task(queue="emails", max_attempts=5)
def send_email(user_id: int, template: str) -> None:
    log.info("email %s to user %s", template, user_id)


# ------------------------------------------------------------------ images


def submit_batch(conn: psycopg.Connection[Any], urls: list[str], callback_url: str) -> int:
    """Store a batch of images and enqueue it as one workflow, in the caller's transaction:
    one job per image, and the callback, which waits for all of them whatever their outcome."""
    (batch_id,) = conn.execute(
        "insert into image_batches (callback_url) values (%s) returning id", [callback_url]
    ).fetchone()
    image_ids = [
        conn.execute("insert into images (batch_id, url) values (%s, %s) returning id", [batch_id, url]).fetchone()[0]
        for url in urls
    ]
    # on_parent_failure="run": an image that fails for good (or is cancelled) does not cancel the
    # callback; it runs once every image finished.
    callback = batch_finished.options(on_parent_failure="run").spec(batch_id=batch_id)
    app.enqueue_workflow(
        pgq.group([process_image.spec(image_id=image_id) for image_id in image_ids]).then(callback),
        connection=conn,
    )
    return int(batch_id)


def submit_image(
    conn: psycopg.Connection[Any], url: str, *, priority: int | None = None, delay: float | None = None
) -> int:
    """One image on its own (no batch, no callback): its row and its job, in the caller's transaction."""
    row = conn.execute("insert into images (url) values (%s) returning id", [url]).fetchone()
    assert row is not None
    return process_image.options(connection=conn, priority=priority, delay=delay).enqueue(image_id=int(row[0]))


@app.task(queue="images", pass_context=True, max_attempts=3, timeout=120)
def process_image(ctx: pgq.JobContext, image_id: int) -> dict[str, str]:
    with connect() as conn:
        (url,) = conn.execute("select url from images where id = %s", [image_id]).fetchone() or (None,)
        if url is None:
            raise pgq.PermanentError(f"image {image_id} was deleted")
        if not url.endswith((".png", ".jpg")):
            raise pgq.PermanentError(f"unsupported format: {url}")  # fails for good; the callback still runs
        for step in range(3):
            ctx.set_progress(step / 3, f"resizing {url}")
            time.sleep(0.1)  # stands for the real work
        thumbnail = url.rsplit(".", 1)[0] + "-thumb.jpg"
        conn.execute("update images set thumbnail = %s where id = %s", [thumbnail, image_id])
    return {"thumbnail": thumbnail}


@app.task(queue="images", pass_context=True)
def batch_finished(ctx: pgq.JobContext, batch_id: int) -> dict[str, Any]:
    """The callback: it runs once every image of the batch finished, done or not.

    Its parents are the batch's image jobs (``ctx.job.depends_on``): ``ctx.parent_statuses`` says how
    each ended, and ``ctx.parent_results`` holds the results of those that completed."""
    failed = [job_id for job_id, status in ctx.parent_statuses.items() if status != "completed"]
    failed_images = sorted(job.args["image_id"] for job_id in failed if (job := app.get_job(job_id)) is not None)
    with connect() as conn:
        (url,) = conn.execute("select callback_url from image_batches where id = %s", [batch_id]).fetchone()
    summary = {
        "batch_id": batch_id,
        "done": len(ctx.parent_results),
        "failed": len(failed),
        "failed_images": failed_images,
    }
    deliver_webhook.options(key=f"batch-webhook:{batch_id}").enqueue(url=url, event="batch.finished", data=summary)
    return summary


# --------------------------------------------------------------- fast lane

#: Preview URLs this process asked the CDN to warm (here the "CDN" is this list).
WARMED: list[str] = []


@app.task(durable=False, concurrency=2, rate="20/s", batch_size=10, batch_wait=0.2, max_attempts=2, backoff=0.5)
def warm_previews(jobs: list[pgq.Job]) -> list[Any]:
    """The fast lane: ask the CDN to cache the preview of each new image, ten per request, at most 20
    previews a second. Losing one costs nothing (the CDN makes a preview on its first view), so these
    jobs are never written to the database: they run in the process that enqueued them (the API) and
    are lost if it stops. The image's durable job (process_image) is the one that must not be lost."""
    WARMED.extend(job.args["url"] for job in jobs)
    return [None] * len(jobs)


# ---------------------------------------------------------------- webhooks

#: Calls per period to customers' endpoints, across every worker (pgq's queue rate limit).
WEBHOOK_RATE = os.environ.get("WEBHOOK_RATE", "10/s")


def configure_queues() -> None:
    """Run once at deploy (submit.py does): the limit is stored in pgq.queues and every worker's
    claim obeys it, whatever the number of workers. Same as `pgq queues set webhooks --rate 10/s`."""
    app.set_queue("webhooks", rate=WEBHOOK_RATE)


@app.task(queue="webhooks", max_attempts=8, backoff=5.0, timeout=30)
def deliver_webhook(url: str, event: str, data: dict[str, Any]) -> int:
    # Starts are spaced by the queue's rate limit (configure_queues), not by this code.
    response = httpx.post(url, json={"event": event, "data": data}, timeout=10)
    if 400 <= response.status_code < 500 and response.status_code != 429:
        raise pgq.PermanentError(f"{url} refused the webhook: {response.status_code}")
    response.raise_for_status()  # 429 and 5xx: retried with backoff
    return response.status_code
