"""A primary and a streaming standby, built from Debian's PostgreSQL binaries in a temporary
folder (``initdb``, ``pg_basebackup -R``): for the read replica's tests, and the failover's."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.pgservers import FAST_SETTINGS, _as_postgres, _free_port, debian_bin


@dataclass
class Pair:
    primary: str
    standby: str
    folder: Path
    bindir: Path

    def url(self, which: str, dbname: str = "postgres") -> str:
        base = self.primary if which == "primary" else self.standby
        return base.rsplit("/", 1)[0] + f"/{dbname}"

    def stop(self) -> None:
        for data in ("standby", "primary"):
            subprocess.run(
                _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.folder / data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


def _start(bindir: Path, folder: Path, data: str, port: int) -> None:
    options = " ".join(
        [f"-p {port}", f"-k {folder}", "-c listen_addresses=127.0.0.1", "-c max_connections=100"]
        # Not synchronous_commit: a setting on the command line would win over ALTER SYSTEM, and the
        # failover scenarios turn synchronous replication on (full_page_writes: needed by pg_basebackup).
        + [f"-c {k}={v}" for k, v in FAST_SETTINGS.items() if k not in ("full_page_writes", "synchronous_commit")]
        + ["-c wal_level=replica", "-c max_wal_senders=5", "-c hot_standby=on", "-c wal_receiver_status_interval=1"]
    )
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(folder / data),
                "-o",
                options,
                "-l",
                str(folder / f"{data}.log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )


def start_pair(version: int = 15) -> Pair | None:
    """A primary and its standby, streaming; None without the binaries."""
    bindir = debian_bin(version)
    if bindir is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix=f"pgqrepl{version}-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(folder / "primary"), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    primary_port, standby_port = _free_port(), _free_port()
    _start(bindir, folder, "primary", primary_port)
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary_port),
                "-U",
                "postgres",
                "-D",
                str(folder / "standby"),
                "-R",
                "-X",
                "stream",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    _start(bindir, folder, "standby", standby_port)
    pair = Pair(
        f"postgresql://postgres@127.0.0.1:{primary_port}/postgres",
        f"postgresql://postgres@127.0.0.1:{standby_port}/postgres",
        folder,
        bindir,
    )
    deadline = time.monotonic() + 30
    with psycopg.connect(pair.standby, autocommit=True) as conn:
        while not conn.execute("select status = 'streaming' from pg_stat_wal_receiver").fetchone():
            assert time.monotonic() < deadline, "the standby never started streaming"
            time.sleep(0.2)
    return pair


def caught_up(pair: Pair, timeout: float = 30) -> None:
    """Wait until the standby replayed everything the primary wrote so far."""
    with psycopg.connect(pair.primary, autocommit=True) as primary:
        # The insert position: with synchronous_commit off, a commit may not be written out yet.
        (target,) = primary.execute("select pg_current_wal_insert_lsn()").fetchone()  # type: ignore[misc]
    deadline = time.monotonic() + timeout
    with psycopg.connect(pair.standby, autocommit=True) as standby:
        while True:
            row = standby.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]).fetchone()
            if row and row[0]:
                return
            assert time.monotonic() < deadline, "the standby did not catch up"
            time.sleep(0.05)
