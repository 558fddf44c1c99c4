"""The signup flow's jobs. Payloads carry ids: the handler reads the rest from the database,
so a job never sends stale data and never carries personal data in its args."""

from __future__ import annotations

import logging
import os
import time

import psycopg

import pgq
from examples.signup.mailer import InvalidAddress, send_mail

# PGQ_DATABASE_URL from the environment; unset, an embedded PostgreSQL of this example's own in
# ./.pgq/signup (PGQ_DATA_DIR overrides it; see examples/README.md).
app = pgq.App(data_dir=os.environ.get("PGQ_DATA_DIR", ".pgq/signup"))

log = logging.getLogger("signup.events")

#: Each queue has its own workers, and so its own concurrency: a slow CRM cannot hold up emails.
CONCURRENCY = {"emails": 10, "crm": 2}

USERS = """
create table if not exists users (
    id bigint generated always as identity primary key,
    email text not null unique,
    name text not null,
    welcomed_at timestamptz
)
"""


def connect() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(app.url, autocommit=True)


def setup() -> None:
    """pgq's schema and the users table; the API and every worker call it at start-up (it is idempotent)."""
    app.migrate()
    with connect() as conn, conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('signup setup'))")  # API and workers start together
        conn.execute(USERS)


@app.task(queue="emails", max_attempts=5, backoff=2.0, timeout=30)
def send_welcome_email(user_id: int) -> str:
    with connect() as conn:
        row = conn.execute("select email, name, welcomed_at from users where id = %s", [user_id]).fetchone()
        if row is None:
            raise pgq.PermanentError(f"user {user_id} does not exist")
        email, name, welcomed_at = row
        if welcomed_at is not None:  # at least once: a re-run after a crash must not mail twice
            return "already sent"
        try:
            message_id = send_mail(str(email), "Welcome!", f"Hello {name}, welcome aboard.")
        except InvalidAddress as exc:
            raise pgq.PermanentError(str(exc)) from exc  # failed at once, no retry
        # MailerUnavailable (network, 5xx) and anything else: retried after 2 s, 4 s, 8 s, 16 s.
        conn.execute("update users set welcomed_at = now() where id = %s", [user_id])
        return message_id


@app.task(queue="crm", max_attempts=3, timeout=60)
def sync_to_crm(user_id: int) -> None:
    time.sleep(float(os.environ.get("CRM_DELAY", "2")))  # a slow partner API
    log.info("user %s synced to the CRM", user_id)


# Worker events, logged with what an operator needs to find the job again.
@app.on("job_started")
def on_started(event: pgq.Event) -> None:
    log.info("job %s %s active (attempt %s)", event.job.id, event.job.task, event.job.attempts)


@app.on("job_retrying")
def on_retry(event: pgq.Event) -> None:
    error = event.error or {}
    log.warning(
        "job %s %s attempt %s failed (%s), retry in %.1f s",
        event.job.id,
        event.job.task,
        event.job.attempts,
        error.get("type"),
        event.retry_in or 0,
    )


@app.on("job_failed")
def on_failed(event: pgq.Event) -> None:
    error = event.error or {}
    log.error(
        "job %s %s failed for good: %s: %s (pgq jobs retry %s)",
        event.job.id,
        event.job.task,
        error.get("type"),
        error.get("message"),
        event.job.id,
    )


@app.on("job_completed")
def on_completed(event: pgq.Event) -> None:
    log.info("job %s %s done in %.0f ms", event.job.id, event.job.task, (event.duration or 0) * 1000)


def warn_about_dead_letters() -> int:
    """At start-up: say so when failed jobs wait for someone to look at them."""
    failed = app.list_jobs(status="failed", limit=100)
    if failed:
        more = "+" if len(failed) == 100 else ""
        log.warning(
            "%d%s failed jobs in the dead-letter set (latest: %s); inspect them with "
            "`pgq jobs list --status failed`, retry with `pgq jobs retry --failed`",
            len(failed),
            more,
            ", ".join(f"{job.id} {job.task}" for job in failed[:5]),
        )
    return len(failed)
