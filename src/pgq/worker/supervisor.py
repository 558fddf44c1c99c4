"""``pgq worker --processes N``: N worker processes under one supervisor.

The supervisor starts each child as ``pgq worker ... --processes 1``, restarts
a child that dies (waiting longer after each quick death, so a crash loop does
not spin), and forwards SIGTERM/SIGINT to all children. It exits once they
have all exited, with 0 if they all stopped cleanly.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("pgq.supervisor")

#: A child that lived less than this many seconds counts as a quick death.
QUICK_DEATH = 10.0
MAX_RESTART_DELAY = 30.0


def supervise(child_args: Sequence[str], processes: int) -> int:
    command = [sys.executable, "-m", "pgq", *child_args]
    children: list[subprocess.Popen[bytes] | None] = [None] * processes
    started = [0.0] * processes
    delays = [0.0] * processes
    restart_at = [0.0] * processes
    stopping: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        for child in children:
            if child is not None and child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    def start(index: int) -> None:
        # A session of its own: a terminal's Ctrl-C or a service manager's
        # SIGTERM reaches the children once, through forward(), not twice
        # (twice would mean "stop at once" to them).
        children[index] = subprocess.Popen(command, start_new_session=True)
        if stopping:
            children[index].send_signal(stopping[0])  # type: ignore[union-attr]
        started[index] = time.monotonic()
        log.info("started worker process %d (pid %d)", index + 1, children[index].pid)  # type: ignore[union-attr]

    for index in range(processes):
        start(index)
    exit_code = 0
    while True:
        alive = False
        for index, child in enumerate(children):
            if child is None:
                if not stopping and time.monotonic() >= restart_at[index]:
                    start(index)
                alive = alive or not stopping
                continue
            code = child.poll()
            if code is None:
                alive = True
                continue
            if stopping:
                exit_code = exit_code or (code if code > 0 else 0)
                children[index] = None
                continue
            lived = time.monotonic() - started[index]
            delays[index] = min(max(delays[index] * 2, 1.0), MAX_RESTART_DELAY) if lived < QUICK_DEATH else 0.0
            log.error(
                "worker process %d (pid %d) exited with %s; restarting in %.0f s",
                index + 1,
                child.pid,
                code,
                delays[index],
            )
            children[index] = None
            restart_at[index] = time.monotonic() + delays[index]
            alive = True
        if not alive:
            return exit_code
        time.sleep(0.2)
