"""Cancel, retry and stats from code: ``python -m examples.media_pipeline.ops``.

The same from the command line: ``pgq jobs cancel ID``, ``pgq jobs retry --failed --queue images``,
``pgq stats`` (see the README)."""

from __future__ import annotations

from examples.media_pipeline.tasks import app, send_email


def main() -> None:
    # Cancel: a reminder that should no longer go out. A pending job ends cancelled at once;
    # a running one is told to stop ("cancelling").
    reminder = send_email.options(delay=3600).enqueue(user_id=7, template="reminder")
    print(f"job {reminder}: {app.cancel(reminder)}")

    # Retry: every image that failed for good goes back to its queue, same id, one more attempt.
    failed = app.list_jobs(status="failed", queue="images")
    print(f"failed images: {[job.id for job in failed]}")
    print(f"retried: {app.retry_failed(queue='images')}")

    # Stats: live counts now, finished counts over the last 24 hours, timings of the last 15 minutes.
    print(f"{'queue':<10} {'waiting':>7} {'active':>6} {'completed':>9} {'failed':>6} {'run p95':>8}")
    for q in app.stats():
        run_p95 = f"{q.run_ms_p95:.0f}ms" if q.run_ms_p95 is not None else "-"
        print(f"{q.queue:<10} {q.waiting:>7} {q.active:>6} {q.completed:>9} {q.failed:>6} {run_p95:>8}")
    app.close()


if __name__ == "__main__":
    main()
