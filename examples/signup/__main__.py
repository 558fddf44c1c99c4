"""Everything in one command: ``python -m examples.signup`` runs the API (uvicorn, port
``PORT``, default 8000) and a worker per queue, as separate processes (as in production),
and stops them all on Ctrl-C or SIGTERM, each given time to finish its running jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from examples.signup.tasks import CONCURRENCY, setup


def main() -> int:
    setup()  # once, before the processes that would all race to do it
    port = os.environ.get("PORT", "8000")
    commands = [
        [sys.executable, "-m", "uvicorn", "examples.signup.api:api", "--port", port],
        *([sys.executable, "-m", "examples.signup.worker", queue] for queue in sorted(CONCURRENCY)),
    ]
    children = [subprocess.Popen(command) for command in commands]
    stopping = False

    def stop(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"signup: API on http://127.0.0.1:{port}, workers for {', '.join(sorted(CONCURRENCY))}", flush=True)
    # One process that dies takes the others down: a half-running service is worse than none.
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    if not stopping:  # one child ended by itself: stop the others (a second SIGTERM would rush them)
        stop(signal.SIGTERM, None)
    # uvicorn ends a graceful shutdown by raising the signal it got again: -SIGTERM is clean too.
    codes = [child.wait() for child in children]
    failed = [
        (command, code) for command, code in zip(commands, codes, strict=True) if code not in (0, -signal.SIGTERM)
    ]
    for command, code in failed:
        print(f"signup: {' '.join(command[1:])} exited with {code}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
