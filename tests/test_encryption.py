"""@app.task(encrypt=True): args and results stored encrypted (issue 17)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

import pgq
from pgq.encryption import SHOWN, is_envelope, key_id
from tests.processes import pgq_cli
from tests.test_web_api import client
from tests.test_worker import finished, job, run_until


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def stored_args(conn: Any, job_id: int) -> Any:
    row = conn.execute("select args from pgq.all_jobs where id = %s", [job_id]).fetchone()
    return row["args"]


async def test_args_and_result_are_stored_encrypted_and_the_handler_sees_them_plain(
    database_url: str, conn: Any
) -> None:
    key = new_key()
    app = pgq.App(database_url, encryption_keys=key)
    seen: list[dict[str, Any]] = []
    try:

        @app.task(encrypt=True, pass_context=True)
        def charge(ctx: pgq.JobContext, card: str, cents: int) -> dict[str, str]:
            seen.append({"card": card, "cents": cents, "ctx": ctx.job.args["card"]})
            return {"receipt": f"paid {cents} with {card[-4:]}"}

        one = charge.enqueue(card="4111111111111111", cents=500)
        [many] = app.enqueue_many([charge.spec(card="5500000000000004", cents=7)])  # the COPY path
        args = stored_args(conn, one)
        assert is_envelope(args) and args["key"] == key_id(base64.b64decode(key))
        assert "4111" not in json.dumps(args) and "4111" not in json.dumps(stored_args(conn, many))

        await run_until(app, finished(app, [one, many]))
        assert seen[0] == {"card": "4111111111111111", "cents": 500, "ctx": "4111111111111111"}
        done = job(app, one)
        assert done.status == "completed" and is_envelope(done.result) and "4111" not in json.dumps(done.result)
        assert app.decrypt(done.result) == {"receipt": "paid 500 with 1111"}
        assert app.decrypt(done.args) == {"card": "4111111111111111", "cents": 500}
        assert app.decrypt({"plain": 1}) == {"plain": 1}

        with client(app) as web:
            shown = web.get(f"/api/jobs/{one}").json()
            assert shown["args"] == SHOWN and shown["result"] == SHOWN
            assert "4111" not in web.get(f"/jobs/{one}").text
        cli = pgq_cli(database_url, "jobs", "show", str(one))
        assert SHOWN in cli.stdout and "4111" not in cli.stdout
    finally:
        app.close()


async def test_a_job_no_key_opens_fails_alone_and_says_which_key(database_url: str) -> None:
    old, new = new_key(), new_key()
    enqueuer = pgq.App(database_url, encryption_keys=old)
    worker_app = pgq.App(database_url, encryption_keys=new)
    try:
        for app in (enqueuer, worker_app):

            @app.task(encrypt=True, name="secret")
            def secret(token: str) -> str:
                return "ok"

            @app.task(name="plain")
            def plain() -> str:
                return "fine"

        locked = enqueuer.enqueue("secret", {"token": "t"})
        other = worker_app.enqueue("plain")
        await run_until(worker_app, finished(worker_app, [locked, other]))
        failed = job(worker_app, locked)
        assert failed.status == "failed" and failed.errors[-1]["type"] == "DecryptionError"
        message = failed.errors[-1]["message"]
        assert key_id(base64.b64decode(old)) in message and "PGQ_ENCRYPTION_KEYS does not hold" in message
        assert job(worker_app, other).result == "fine", "the worker went on"
    finally:
        enqueuer.close()
        worker_app.close()


async def test_rotation_reseals_live_jobs_and_schedules_with_the_new_key(database_url: str, conn: Any) -> None:
    old, new = new_key(), new_key()
    before = pgq.App(database_url, encryption_keys=old)
    during = pgq.App(database_url, encryption_keys=f"{new},{old}")
    after = pgq.App(database_url, encryption_keys=new)
    results: list[str] = []
    try:
        for app in (before, during, after):

            @app.task(encrypt=True, name="report")
            def report(day: str) -> None:
                results.append(day)

        ids = [before.enqueue("report", {"day": f"d{n}"}, delay=3600) for n in range(3)]
        before.add_schedule("nightly", "0 3 * * *", "report", {"day": "nightly"})
        assert is_envelope(before.get_schedule("nightly").args)  # type: ignore[union-attr]
        counts = during.rotate_keys()
        assert counts == {"jobs": 3, "schedules": 1, "unreadable": 0}
        assert {stored_args(conn, i)["key"] for i in ids} == {key_id(base64.b64decode(new))}
        assert during.rotate_keys() == {"jobs": 0, "schedules": 0, "unreadable": 0}
        for job_id in ids:
            after.promote(job_id)
        scheduled = after.trigger_schedule("nightly")
        await run_until(after, finished(after, [*ids, scheduled]))
        assert sorted(results) == ["d0", "d1", "d2", "nightly"]
    finally:
        for app in (before, during, after):
            app.close()


def test_bad_keys_and_missing_keys_are_clear_errors(database_url: str) -> None:
    with pytest.raises(pgq.ConfigurationError, match="key 2 is not the base64 of 32 bytes"):
        pgq.App(database_url, encryption_keys=f"{new_key()},c2hvcnQ=")
    app = pgq.App(database_url)
    try:

        @app.task(encrypt=True)
        def secret(token: str) -> None:
            pass

        with pytest.raises(pgq.ConfigurationError, match="encrypt=True but PGQ_ENCRYPTION_KEYS is not set"):
            secret.enqueue(token="t")
        with pytest.raises(pgq.ConfigurationError, match="not supported for batch tasks"):
            app.task(encrypt=True, batch_size=10)(lambda jobs: [None] * len(jobs))
    finally:
        app.close()


@pytest.mark.slow
def test_pgq_keys_rotate(database_url: str) -> None:
    old, new = new_key(), new_key()
    app = pgq.App(database_url, encryption_keys=old)
    try:

        @app.task(encrypt=True)
        def secret(token: str) -> None:
            pass

        secret.enqueue(token="t")
    finally:
        app.close()
    env = {"PGQ_ENCRYPTION_KEYS": f"{new},{old}"}
    result = pgq_cli(database_url, "keys", "rotate", **env)
    assert result.returncode == 0, result.stderr
    assert f"re-encrypted with key {key_id(base64.b64decode(new))}: 1 live jobs, 0 schedules" in result.stdout
    lost = pgq_cli(database_url, "keys", "rotate", PGQ_ENCRYPTION_KEYS=new_key())
    assert lost.returncode == 1 and "open with no key" in lost.stderr
