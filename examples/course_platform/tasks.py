"""The learning platform's jobs. Worker:
``pgq worker examples.course_platform.tasks:app --queues videos,reminders``."""

from __future__ import annotations

import logging
import os
import time

import pgq

# PGQ_DATABASE_URL, or an embedded PostgreSQL of this example's own in ./.pgq/course_platform (PGQ_DATA_DIR
# overrides it): its schedule and jobs never reach another example's workers (see examples/README.md).
app = pgq.App(data_dir=os.environ.get("PGQ_DATA_DIR", ".pgq/course_platform"))

log = logging.getLogger("courses")

#: Seconds per transcoding step (10 steps); short, so that the demo finishes while you watch.
STEP_SECONDS = float(os.environ.get("VIDEO_STEP_SECONDS", "1"))


@app.task(queue="videos", pass_context=True, max_attempts=3, timeout=3600)
def transcode_video(ctx: pgq.JobContext, video_id: int, resolution: str = "720p") -> dict[str, str]:
    for step in range(10):
        if ctx.cancelled:  # cancelled from the panel (the job ends cancelled), or a shutdown ran out of time
            raise InterruptedError(f"stopped at segment {step + 1}")
        ctx.set_progress(step / 10, f"encoding {resolution}: segment {step + 1} of 10")
        time.sleep(STEP_SECONDS)
    ctx.set_progress(1.0, "done")
    return {"url": f"https://videos.example.com/{video_id}/{resolution}.mp4"}


@app.task(queue="reminders")
def send_lesson_reminder(student_id: int, lesson_id: int) -> None:
    log.info("reminder to student %s about lesson %s", student_id, lesson_id)


# Every day at 08:00 in Paris (REMINDER_CRON="*/5 * * * * *" to watch it every 5 seconds).
@app.periodic(cron=os.environ.get("REMINDER_CRON", "0 8 * * *"), timezone="Europe/Paris", catch_up="none")
@app.task(queue="reminders")
def send_daily_reminders() -> int:
    """Finds the students with a lesson today and enqueues one reminder each (here: a fixed list)."""
    due = [(1, 101), (2, 101), (3, 102)]
    app.enqueue_many([send_lesson_reminder.spec(student_id=student, lesson_id=lesson) for student, lesson in due])
    return len(due)
