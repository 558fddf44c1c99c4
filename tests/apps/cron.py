"""A schedule every two seconds, for the multi-worker cron tests."""

from __future__ import annotations

import pgq
from tests.apps.recording import record_end, record_start

app = pgq.App()


@app.periodic(cron="*/2 * * * * *")
@app.task(pass_context=True)
def every_two_seconds(ctx: pgq.JobContext) -> None:
    record_start(ctx)
    record_end(ctx)
