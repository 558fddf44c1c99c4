"""One worker per queue, with that queue's concurrency: ``python -m examples.signup.worker emails``.

SIGTERM (docker stop, Ctrl-C) stops claiming and lets running jobs finish, up to
PGQ_SHUTDOWN_TIMEOUT (30 s); a second signal returns them to the queue at once.
"""

from __future__ import annotations

import argparse

from examples.signup.tasks import CONCURRENCY, app, setup, warn_about_dead_letters
from pgq import logs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("queue", choices=sorted(CONCURRENCY))
    queue = parser.parse_args().queue
    # pgq worker's own log set-up, so PGQ_LOG_FORMAT=json gives JSON lines here too.
    logs.configure(app.settings.log_format)
    setup()
    warn_about_dead_letters()
    app.run_worker(queues=[queue], concurrency=CONCURRENCY[queue])


if __name__ == "__main__":
    main()
