"""Two examples run side by side with no database configured (the way their READMEs start them, from one
folder) each get an embedded PostgreSQL of their own, ./.pgq/NAME, and see neither the other's schedules
nor its jobs (examples/README.md, "Each example, its own database").

Before, both used ./.pgq: course_platform's cron schedule, upserted by its worker, fired into the
database media_pipeline's worker serves. Every process here is a child, so each embedded server stops
when the children have exited (the test checks it does)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pgq.db.embedded_life import embedded_status, stop_embedded
from tests.processes import ROOT

pytestmark = pytest.mark.slow

#: Run in the examples' folder: until both examples' jobs ran, then what each app sees, as JSON.
CHECK = """
import json, sys, time
from examples.course_platform import tasks as course
from examples.media_pipeline import tasks as media

media.send_email.enqueue(user_id=7, template="welcome")
course.transcode_video.enqueue(video_id=3)

def seen(app):
    jobs = app.list_jobs(limit=500)
    return {
        "url": app.url,
        "data_dir": str(app.settings.data_dir),
        "schedules": sorted(s.name for s in app.list_schedules()),
        "tasks": sorted({job.task for job in jobs}),
        "queues": sorted({job.queue for job in jobs}),
        "completed": sorted(job.task for job in jobs if job.status == "completed"),
    }

deadline = time.monotonic() + 60
while True:
    report = {"course": seen(course.app), "media": seen(media.app)}
    done = (
        report["course"]["completed"].count("send_lesson_reminder") >= 3
        and "transcode_video" in report["course"]["completed"]
        and "send_email" in report["media"]["completed"]
    )
    if done or time.monotonic() > deadline:
        break
    time.sleep(0.3)
course.app.close()
media.app.close()
print(json.dumps(report), flush=True)
"""


def environment() -> dict[str, str]:
    """No PGQ_DATABASE_URL nor PGQ_DATA_DIR: each example picks its own folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        REMINDER_CRON="* * * * * *",  # course_platform's reminders every second
        VIDEO_STEP_SECONDS="0.01",
    )
    return env


def test_two_examples_in_one_folder_see_neither_the_others_schedules_nor_its_jobs(tmp_path: Path) -> None:
    env = environment()
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []
    for app, queues in (
        ("examples.course_platform.tasks:app", "videos,reminders"),
        ("examples.media_pipeline.tasks:app", "emails,images,webhooks"),
    ):
        log = tmp_path / f"{app.split('.')[1]}.log"
        command = [sys.executable, "-m", "pgq", "worker", app, "--queues", queues]
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        workers.append((process, log))
    folders = {name: tmp_path / ".pgq" / name for name in ("course_platform", "media_pipeline")}
    try:
        check = subprocess.run(
            [sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert check.returncode == 0, check.stderr + "".join(log.read_text() for _, log in workers)
        report: dict[str, dict[str, Any]] = json.loads(check.stdout.splitlines()[-1])
        course, media = report["course"], report["media"]

        # Two servers, each in its example's folder; nothing in the shared default ./.pgq.
        assert (course["data_dir"], media["data_dir"]) == (".pgq/course_platform", ".pgq/media_pipeline")
        assert course["url"] != media["url"]
        assert all((folder / "pg" / "PG_VERSION").exists() for folder in folders.values())
        assert not (tmp_path / ".pgq" / "pg").exists()

        # course_platform: its schedule fired (reminders every second) and its jobs ran, in its database only.
        assert course["schedules"] == ["send_daily_reminders"]
        ran = course["completed"].count("send_lesson_reminder") >= 3 and "transcode_video" in course["completed"]
        assert ran, (course["completed"], worker_logs(workers))
        assert set(course["tasks"]) == {"send_daily_reminders", "send_lesson_reminder", "transcode_video"}
        assert set(course["queues"]) == {"reminders", "videos"}
        # media_pipeline: no schedule, no reminder, no video; only its email.
        assert media["schedules"] == []
        assert media["tasks"] == ["send_email"] and media["queues"] == ["emails"]
        # A worker that never ran its job: its log says why (it once failed this way in CI, logs unseen).
        assert media["completed"] == ["send_email"], worker_logs(workers)
    finally:
        for process, _ in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [process.wait(30) for process, _ in workers]
        # The last process using each server has exited: both stop by themselves.
        deadline = time.monotonic() + 20
        while any(embedded_status(folder).running for folder in folders.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        still = [folder for folder in folders.values() if embedded_status(folder).running]
        for folder in still:
            stop_embedded(folder, force=True)
    assert codes == [0, 0], "".join(log.read_text() for _, log in workers)
    assert not still, f"embedded servers left running in {still}"
    for _, log in workers:
        assert "Traceback" not in log.read_text(), log.read_text()


def worker_logs(workers: list[tuple[subprocess.Popen[bytes], Path]]) -> str:
    """Each worker's exit status (None: still running) and the end of its log."""
    return "\n".join(f"{log.name} (exit {process.poll()}):\n{log.read_text()[-3000:]}" for process, log in workers)
