"""Parsing, checking and describing database URLs without ever showing a password."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgq.errors import ConfigurationError

_URL_SCHEME = re.compile(r"^(postgres|postgresql)(\+[a-z0-9_]+)?://", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@?#]*:)([^@/?#]*)(@)")

EXPECTED = "expected postgresql://user:password@host:port/dbname"


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    redacted = _URL_PASSWORD.sub(r"\1***\3", url)
    return re.sub(r"(password=)\S+", r"\1***", redacted)


def normalize(url: str, setting: str = "PGQ_DATABASE_URL") -> str:
    """A libpq connection string for ``url``, or a clear error if it is not one.

    SQLAlchemy-style URLs (``postgresql+psycopg://``) are accepted and their
    driver suffix dropped, so one URL serves the app and pgq.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{setting} is empty; {EXPECTED}")
    url = url.strip()
    if "://" in url:
        match = _URL_SCHEME.match(url)
        if not match:
            scheme = url.split("://", 1)[0]
            raise ConfigurationError(
                f"{setting} has scheme {scheme!r}, which is not PostgreSQL ({redact(url)}); {EXPECTED}"
            )
        url = "postgresql://" + url[match.end() :]
    elif "=" not in url:
        raise ConfigurationError(f"{setting} is not a PostgreSQL URL ({redact(url)}); {EXPECTED}")
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unparsable"
        raise ConfigurationError(
            f"{setting} is not a valid PostgreSQL URL ({redact(url)}): {redact(reason)}; {EXPECTED}"
        ) from None
    port = str(params.get("port") or "")
    if port and not all(part.isdigit() for part in port.split(",")):
        raise ConfigurationError(f"{setting} has port {port!r}, which is not a number ({redact(url)}); {EXPECTED}")
    return url


def describe(url: str) -> str:
    """Where ``url`` points, for error messages: ``host:port/dbname as user``."""
    try:
        params: dict[str, Any] = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return redact(url)
    host = params.get("host") or params.get("hostaddr") or "local socket"
    port = params.get("port") or "5432"
    where = f"{host}:{port}" if not str(host).startswith("/") else f"socket {host} port {port}"
    dbname = params.get("dbname") or params.get("user") or "(default database)"
    user = params.get("user")
    return f"{where}, database {dbname}" + (f", user {user}" if user else "")
