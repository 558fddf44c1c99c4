"""``pgq dashboard``: serve the dashboard with uvicorn, refusing unsafe exposure."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from types import FrameType

from pgq.app import App
from pgq.errors import ConfigurationError

log = logging.getLogger("pgq.web")

#: The shortest PGQ_DASHBOARD_TOKEN accepted on an address other than loopback: a short
#: token falls to guessing even at the throttled rate.
MIN_TOKEN_LENGTH = 16


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, read_only: bool, insecure_no_auth: bool) -> None:
    """Refuse to serve a dashboard anyone on the network could use without a (long enough) token."""
    if is_loopback_host(host):
        return
    if token:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigurationError(
                f"PGQ_DASHBOARD_TOKEN is {len(token)} characters; on {host} it must have at least "
                f"{MIN_TOKEN_LENGTH}: make one with `openssl rand -hex 24`"
            )
        return
    if read_only and insecure_no_auth:
        log.warning("serving a read-only dashboard on %s without authentication (--insecure-no-auth)", host)
        return
    raise ConfigurationError(
        f"refusing to serve the dashboard on {host} without authentication: set PGQ_DASHBOARD_TOKEN "
        "(browsers log in with it, API clients send 'Authorization: Bearer TOKEN'), or pass both "
        "--read-only and --insecure-no-auth, or keep the default --host 127.0.0.1"
    )


def serve(app: App, *, host: str, port: int, read_only: bool, insecure_no_auth: bool) -> int:
    import uvicorn

    from pgq.web import create_app

    token = app.settings.dashboard_token or None
    check_exposure(host, token, read_only, insecure_no_auth)
    local = is_loopback_host(host)
    if token and not local:
        log.warning("the dashboard token travels in clear over plain HTTP on %s: put a TLS proxy in front of it", host)
    app.url  # noqa: B018 - start the embedded server (or fail on a bad URL) before serving
    # On 127.0.0.1 without a token, any web page the operator visits could try to reach
    # the dashboard through DNS rebinding: accept only the loopback host names.
    allowed = None if token or not local else ["127.0.0.1", "localhost", "[::1]"]
    asgi = create_app(app, read_only=read_only, token=token, allowed_hosts=allowed)
    sock = bind(host, port)  # before saying where it serves: the port may be taken
    shown = f"[{host}]" if ":" in host else host
    print(
        f"pgq dashboard on http://{shown}:{port}/ (schema {app.schema}){' read-only' if read_only else ''}", flush=True
    )
    hub = asgi.state.dashboard.hub

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            hub.close_streams()  # open SSE streams would hold the shutdown up
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        asgi, host=host, port=port, log_level="warning", server_header=False, timeout_graceful_shutdown=5
    )
    with sock:
        Server(config).run(sockets=[sock])
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or :class:`ConfigurationError` saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(
            f"cannot listen on {host!r}: {exc.strerror}; give an address such as 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"port {port} on {host} is in use (another pgq dashboard?): pick another with --port"
            ) from None
        if exc.errno == errno.EACCES:
            raise ConfigurationError(f"no permission to listen on port {port}: use a port above 1023") from None
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock
