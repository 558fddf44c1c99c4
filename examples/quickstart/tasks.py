"""The quick start's tasks: import this module as `examples.quickstart.tasks:app`."""

from __future__ import annotations

import asyncio

import pgq

app = pgq.App()


@app.task(queue="emails", max_attempts=3, backoff=2.0, timeout=30)
def send_welcome(user_id: int, email: str) -> None:
    print(f"welcome mail to user {user_id} <{email}>")


@app.task(pass_context=True, timeout=60)
async def resize(ctx: pgq.JobContext, url: str) -> dict[str, str]:
    for step in range(4):
        ctx.set_progress(step / 4, f"resizing {url}")
        await asyncio.sleep(0.1)
    return {"url": url, "thumbnail": url.replace(".png", "-thumb.png")}


if __name__ == "__main__":
    # Enqueue a few jobs: `python -m examples.quickstart.tasks`
    print(send_welcome.enqueue(user_id=7, email="ada@example.com"))
    print(resize.enqueue(url="https://example.com/cat.png"))
