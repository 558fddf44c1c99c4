"""The worker's own sessions (pgq.db.session): bounded in time, and a deadline met by
one makes its siblings reconnect, since a socket gone silent for one usually has for all."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg.rows import tuple_row

from pgq.db.session import Session, Silence
from pgq.settings import Settings


async def backend_pid(session: Session) -> int:
    rows = await session.fetch("select pg_backend_pid()", None, tuple_row)
    return int(rows[0][0])


async def test_a_deadline_in_one_session_makes_its_siblings_reconnect(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    silence = Silence()
    claims = Session(database_url, settings, "test claims", 0.5, silence)
    finishes = Session(database_url, settings, "test finishes", 0.5, silence)
    other = Session(database_url, settings, "test other", 0.5)  # not of the group
    try:
        before = await backend_pid(finishes)
        outsider = await backend_pid(other)
        assert await backend_pid(finishes) == before  # kept while nothing happens
        with pytest.raises(TimeoutError):
            await claims.fetch("select pg_sleep(3)", None, tuple_row)
        assert silence.count == 1
        after = await backend_pid(finishes)
        assert after != before  # reconnected before its next statement
        assert await backend_pid(finishes) == after  # once
        assert await backend_pid(other) == outsider
        await backend_pid(claims)  # the session that timed out works again
    finally:
        for session in (claims, finishes, other):
            await session.close()


async def test_a_refused_statement_is_not_a_silence(database_url: str, conn: Any) -> None:
    settings = Settings(database_url=database_url)
    silence = Silence()
    claims = Session(database_url, settings, "test claims", 5, silence)
    try:
        with pytest.raises(Exception, match="division by zero"):
            await claims.fetch("select 1 / 0", None, tuple_row)
        assert silence.count == 0
    finally:
        await claims.close()
