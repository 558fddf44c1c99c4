"""Helpers for testing an application that uses pgq, against a real database.

Installing pgq installs a pytest plugin (``pgq.testing.plugin``, loaded through
the ``pytest11`` entry point) with these fixtures:

- ``pgq_database_url``: a fresh, migrated database of the test's own, cloned
  from a template migrated once per session, on an embedded PostgreSQL started
  once per session (or the server of ``PGQ_TEST_DATABASE_URL``);
- ``pgq_app``: a :class:`pgq.App` on that database; point it at your own app
  with the ini option ``pgq_app = "myapp.tasks:app"``, or override the fixture.

And these functions, usable with or without the plugin:

- :func:`assert_enqueued` / :func:`refute_enqueued` / :func:`enqueued_jobs`:
  what is waiting in the queue, matched on the fields you give;
- :func:`drain` / :func:`drain_async`: run every due job in this process, with
  the real executor, claim and finish, and return the outcomes;
- :func:`run_job` / :func:`run_job_async`: call one task's handler with a real
  :class:`pgq.JobContext`, without the queue or a database;
- :func:`use_database`: point an existing App at another database for a while.

See docs/testing-your-app.md.
"""

from pgq.testing.assertions import assert_enqueued, enqueued_jobs, refute_enqueued
from pgq.testing.databases import DatabaseServer, use_database
from pgq.testing.running import JobOutcome, drain, drain_async, run_job, run_job_async

__all__ = [
    "DatabaseServer",
    "JobOutcome",
    "assert_enqueued",
    "drain",
    "drain_async",
    "enqueued_jobs",
    "refute_enqueued",
    "run_job",
    "run_job_async",
    "use_database",
]
