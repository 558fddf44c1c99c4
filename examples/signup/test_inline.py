"""examples/signup inline, with pgq.testing (no worker process): fast checks next to the end-to-end
tests of test_signup.py. They show how to test such code: point the module's ``app`` at the test's
database with ``use_database``, check what a request enqueued with ``assert_enqueued``, run the jobs in
the test's process with ``drain``, and one handler with ``run_job``."""

from __future__ import annotations

from collections import Counter

import pytest

from pgq.testing import run_job, use_database


def test_signup_errors_transient_and_permanent(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.signup import mailer, tasks

    monkeypatch.setattr(mailer, "_tries", Counter())  # the fake provider's memory of earlier tests

    with use_database(tasks.app, database_url) as app:
        tasks.setup()
        with tasks.connect() as conn:
            ids = [
                conn.execute("insert into users (email, name) values (%s, 'x') returning id", [email]).fetchone()[0]
                for email in ("x+flaky@example.com", "y@nowhere.invalid")
            ]
        flaky = run_job(app, tasks.send_welcome_email, {"user_id": ids[0]})
        assert flaky.status == "retry" and flaky.error["type"] == "MailerUnavailable"
        assert run_job(app, tasks.send_welcome_email, {"user_id": ids[0]}, attempt=2).completed
        bad = run_job(app, tasks.send_welcome_email, {"user_id": ids[1]})
        assert bad.status == "failed" and bad.error["type"] == "PermanentError"
