"""A media pipeline: emails, images and webhooks, and a callback when a batch of images is done.

Worker: ``pgq worker examples.media_pipeline.tasks:app --queues emails,images,webhooks``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import httpx
import psycopg

import pgq

DAY = 24 * 3600.0
# PGQ_DATABASE_URL, or the embedded PostgreSQL in ./.pgq. The elected sweeper deletes completed and
# cancelled jobs 7 days after they finished, failed ones after 30 (PGQ_RETENTION_* in the environment
# do the same without code).
app = pgq.App(retention=7 * DAY, retention_failed=30 * DAY)

log = logging.getLogger("media")

TABLES = """
create table if not exists image_batches (
    id bigint generated always as identity primary key,
    callback_url text not null,
    total int not null,
    callback_job_id bigint              -- set once, by whichever image job finishes the batch
);
create table if not exists images (
    id bigint generated always as identity primary key,
    batch_id bigint references image_batches,
    url text not null,
    status text not null default 'pending',   -- pending, done, failed
    thumbnail text
);
"""


def connect() -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(app.url, autocommit=True)


# ------------------------------------------------------------------ emails


@app.task(queue="emails", max_attempts=5)
def send_email(user_id: int, template: str) -> None:
    log.info("email %s to user %s", template, user_id)


# ------------------------------------------------------------------ images


def submit_batch(conn: psycopg.Connection[Any], urls: list[str], callback_url: str) -> int:
    """Store a batch of images and enqueue one job per image, in the caller's transaction."""
    batch_id = conn.execute(
        "insert into image_batches (callback_url, total) values (%s, %s) returning id", [callback_url, len(urls)]
    ).fetchone()[0]
    image_ids = [
        conn.execute("insert into images (batch_id, url) values (%s, %s) returning id", [batch_id, url]).fetchone()[0]
        for url in urls
    ]
    app.enqueue_many([process_image.spec(image_id=image_id) for image_id in image_ids], connection=conn)
    return int(batch_id)


@app.task(queue="images", pass_context=True, max_attempts=3, timeout=120)
def process_image(ctx: pgq.JobContext, image_id: int) -> dict[str, str]:
    with connect() as conn:
        (url,) = conn.execute("select url from images where id = %s", [image_id]).fetchone() or (None,)
        if url is None:
            raise pgq.PermanentError(f"image {image_id} was deleted")
        if not url.endswith((".png", ".jpg")):
            raise pgq.PermanentError(f"unsupported format: {url}")  # the job_failed hook below counts it
        for step in range(3):
            ctx.set_progress(step / 3, f"resizing {url}")
            time.sleep(0.1)  # stands for the real work
        thumbnail = url.rsplit(".", 1)[0] + "-thumb.jpg"
        finish_image(conn, image_id, "done", thumbnail)
    return {"thumbnail": thumbnail}


@app.on("job_failed")
@app.on("job_cancelled")
async def image_given_up(event: pgq.Event) -> None:
    """An image that failed for good (or was cancelled) still counts towards its batch.

    Hooks run on the worker's event loop: blocking work goes to a thread."""
    if event.job.task == process_image.name:
        await asyncio.to_thread(finish_image_alone, event.job.args["image_id"], "failed")


def finish_image_alone(image_id: int, status: str) -> None:
    with connect() as conn:
        finish_image(conn, image_id, status, None)


def finish_image(conn: psycopg.Connection[Any], image_id: int, status: str, thumbnail: str | None) -> None:
    """Record one image's outcome; the image that completes its batch enqueues the callback, once."""
    with conn.transaction():
        (batch_id,) = conn.execute("select batch_id from images where id = %s", [image_id]).fetchone()
        # Lock the batch: two last images finishing together take turns, so the second one
        # sees the first one's outcome and exactly one of them enqueues the callback.
        total, callback_job = conn.execute(
            "select total, callback_job_id from image_batches where id = %s for update", [batch_id]
        ).fetchone()
        conn.execute("update images set status = %s, thumbnail = %s where id = %s", [status, thumbnail, image_id])
        (finished,) = conn.execute(
            "select count(*) from images where batch_id = %s and status <> 'pending'", [batch_id]
        ).fetchone()
        if finished == total and callback_job is None:
            job_id = batch_finished.options(connection=conn, key=f"batch-finished:{batch_id}").enqueue(
                batch_id=batch_id
            )
            conn.execute("update image_batches set callback_job_id = %s where id = %s", [job_id, batch_id])


@app.task(queue="images")
def batch_finished(batch_id: int) -> dict[str, int]:
    """The callback: every image of the batch is done or failed."""
    with connect() as conn:
        (url,) = conn.execute("select callback_url from image_batches where id = %s", [batch_id]).fetchone()
        counts = dict(
            conn.execute("select status, count(*) from images where batch_id = %s group by status", [batch_id])
        )
    summary = {"batch_id": batch_id, "done": counts.get("done", 0), "failed": counts.get("failed", 0)}
    deliver_webhook.options(key=f"batch-webhook:{batch_id}").enqueue(url=url, event="batch.finished", data=summary)
    return summary


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
