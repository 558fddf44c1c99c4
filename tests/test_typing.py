"""pgq is typed for its users: it ships ``py.typed``, and a task is typed by its handler, so
that mypy in a user's project checks ``task.enqueue(...)`` against the handler's parameters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pgq

USER_CODE = """
import pgq

app = pgq.App("postgresql://localhost/unused")


@app.task
def send_welcome(user_id: int, email: str) -> None: ...


@app.task(queue="mail", max_attempts=5)
async def notify(user_id: int) -> str:
    return "sent"


@app.task(pass_context=True)
def with_context(ctx: pgq.JobContext, n: int) -> None: ...


@app.task(batch_size=100)
def in_batches(jobs: list[pgq.Job]) -> list[object]:
    return [None for _ in jobs]


async def main() -> None:
    send_welcome.enqueue(user_id=1, email="a@example.com")
    send_welcome.enqueue(user_id="x", email="a@example.com")  # error: str for int
    send_welcome.enqueue(user_id=1)  # error: email missing
    notify.options(delay=5).enqueue(user_id=2)
    notify.options(delay=5).enqueue(user=2)  # error: no such parameter
    await notify.enqueue_async(user_id=3)
    await notify.options(queue="urgent").enqueue_async(user_id="3")  # error: str for int
    with_context.enqueue(n="not checked")  # a context handler's args are not its parameters
    in_batches.enqueue(anything=1)  # nor a batch handler's
    calls: str = await notify(4)  # calling the task calls the handler
    print(calls)
"""


def test_mypy_checks_enqueue_against_the_handler(tmp_path: Path) -> None:
    assert (Path(pgq.__file__).parent / "py.typed").is_file()
    (tmp_path / "user.py").write_text(USER_CODE)
    found = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in found.stdout.splitlines() if ": error:" in line]
    lines = USER_CODE.splitlines()
    flagged = sorted(int(line.split(":")[1]) for line in errors)
    expected = sorted(number for number, text in enumerate(lines, start=1) if "# error:" in text)
    assert flagged == expected, found.stdout + found.stderr
    assert "py.typed" not in found.stdout
