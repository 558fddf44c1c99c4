"""examples/course_platform inline, with pgq.testing (no worker process): fast checks next to the end-to-end
tests of test_course_platform.py. They show how to test such code: point the module's ``app`` at the test's
database with ``use_database``, check what a request enqueued with ``assert_enqueued``, run the jobs in
the test's process with ``drain``, and one handler with ``run_job``."""

from __future__ import annotations

import pytest

from pgq.testing import run_job


def test_course_video_reports_progress(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.course_platform import tasks

    monkeypatch.setattr(tasks, "STEP_SECONDS", 0.01)
    outcome = run_job(tasks.app, tasks.transcode_video, {"video_id": 3})
    assert outcome.completed and outcome.progress == 1.0
    assert outcome.result == {"url": "https://videos.example.com/3/720p.mp4"}
