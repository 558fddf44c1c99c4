"""Fixtures of the fault suite: a database with the `runs` table and a helper to
finish each scenario with the table checks and the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.faults.consistency import Counts, check_tables, count_runs


@pytest.fixture
def settle(database_url: str, reliability: Callable[..., None]) -> Callable[..., Counts]:
    """Check the tables' invariants, count lost/duplicated/overlapping runs, and record them."""

    def finish(job_ids: list[int], **figures: Any) -> Counts:
        from psycopg.rows import dict_row

        dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            check_tables(conn, str(dbname))
            counts = count_runs(conn, job_ids)
        reliability(**counts.as_dict(), **figures)
        # Guarantee 3: every re-run shows in attempts, or as a crash whose attempt was given back.
        assert counts.unexplained == 0, f"{counts.unexplained} jobs ran more often than their attempts and crashes say"
        return counts

    return finish
