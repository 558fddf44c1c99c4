"""The CMS's background jobs. The worker runs them: ``pgq worker examples.cms_jobs.jobs:app --queues cms``."""

from __future__ import annotations

import logging
import os
import time

import pgq

# PGQ_DATABASE_URL, or an embedded PostgreSQL of this example's own in ./.pgq/cms_jobs (PGQ_DATA_DIR overrides
# it): the other examples' jobs and tables stay out of the CMS's (see examples/README.md).
app = pgq.App(data_dir=os.environ.get("PGQ_DATA_DIR", ".pgq/cms_jobs"))

log = logging.getLogger("cms")

# Every job of the CMS: 3 attempts, the first retry after 2 s, then 4 s (doubling, with jitter).
RETRIES = {"queue": "cms", "max_attempts": 3, "backoff": 2.0, "timeout": 60}


@app.task(name="send-email", priority=10, **RETRIES)
def send_email(article_id: int, to: str) -> dict[str, str]:
    """Tell the editors that an article was published (a real app calls its mail provider here)."""
    log.info("mail to %s about article %s", to, article_id)
    return {"sent_to": to}


@app.task(name="generate-report", **RETRIES)
def generate_report(article_id: int) -> dict[str, int]:
    time.sleep(0.2)  # stands for an expensive query
    return {"article_id": article_id, "words": 1200}


@app.task(name="process-image", priority=5, **RETRIES)
def process_image(article_id: int, image_url: str) -> dict[str, str]:
    if not image_url.lower().endswith((".png", ".jpg", ".jpeg")):
        # Any exception is a failed attempt: retried after 2 s, 4 s, then failed for good.
        raise ValueError(f"cannot decode {image_url}")
    return {"thumbnail": image_url.rsplit(".", 1)[0] + "-thumb.jpg"}


#: The CMS's job types, a closed set as its collection's "type" select was: POST /jobs refuses others.
#: They share the queue "cms" (one worker command serves the CMS; priorities order them).
JOB_TYPES: dict[str, pgq.Task[..., object]] = {task.name: task for task in (send_email, generate_report, process_image)}
