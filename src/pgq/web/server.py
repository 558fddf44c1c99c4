"""``pgq dashboard``: serve the dashboard with uvicorn, refusing unsafe exposure."""

from __future__ import annotations

import ipaddress
import logging
from types import FrameType

from pgq.app import App
from pgq.errors import ConfigurationError

log = logging.getLogger("pgq.web")


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, read_only: bool, insecure_no_auth: bool) -> None:
    """Refuse to serve a dashboard anyone on the network could use without a token."""
    if is_loopback_host(host) or token:
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
    Server(config).run()
    return 0
