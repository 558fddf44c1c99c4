"""Submit a batch of images and an email: ``python -m examples.media_pipeline.submit [CALLBACK_URL]``.

The callback URL defaults to the example's own receiver (``WEBHOOK_URL``: POST /webhook-receiver of
``uvicorn examples.media_pipeline.api:api``), so nothing leaves the machine."""

from __future__ import annotations

import sys

from examples.media_pipeline.tasks import (
    TABLES,
    WEBHOOK_URL,
    app,
    configure_queues,
    connect,
    send_email,
    submit_batch,
)


def main() -> None:
    callback_url = sys.argv[1] if len(sys.argv) > 1 else WEBHOOK_URL
    app.migrate()
    configure_queues()  # webhooks: at most WEBHOOK_RATE (10/s) calls across all workers
    with connect() as conn, conn.transaction():
        conn.execute(TABLES)
        urls = [f"https://cdn.example.com/photo-{i}.png" for i in range(1, 5)] + ["https://cdn.example.com/anim.gif"]
        batch_id = submit_batch(conn, urls, callback_url)
        send_email.options(connection=conn).enqueue(user_id=7, template="upload-received")
    print(f"batch {batch_id}: {len(urls)} images; the callback goes to {callback_url} when all are done")
    app.close()


if __name__ == "__main__":
    main()
