"""Who may use the dashboard, and how its forms are protected.

- **Token** (``PGQ_DASHBOARD_TOKEN`` / ``create_app(token=...)``): every request
  needs ``Authorization: Bearer TOKEN`` or the session cookie that the login
  form sets (an HMAC of the token, HttpOnly, SameSite=Strict, Secure over HTTPS
  and on loopback addresses). Without a token the dashboard trusts whoever
  reaches it: 127.0.0.1 only, or behind the mounting application's own auth.
- **CSRF**: browser forms carry a random token that must match the
  ``pgq_csrf`` cookie (double submit); every POST from another origin
  (``Origin`` or ``Sec-Fetch-Site``) is refused, which also covers the JSON API.
- **Hosts**: ``allowed_hosts`` refuses other ``Host`` headers (what ``pgq
  dashboard`` sets on 127.0.0.1 against DNS rebinding).
- Every response forbids inline script, framing and sniffing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

AUTH_COOKIE = "pgq_auth"
CSRF_COOKIE = "pgq_csrf"
FLASH_COOKIE = "pgq_flash"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def session_value(token: str) -> str:
    """What the session cookie holds: proof of the token, not the token itself."""
    return hmac.new(token.encode(), b"pgq-dashboard-session", hashlib.sha256).hexdigest()


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def base_path(scope: Scope) -> str:
    """Where the dashboard is mounted ('' at the root): every URL it writes starts with this."""
    return str(scope.get("root_path", "")).rstrip("/")


def local_path(scope: Scope) -> str:
    """The request's path below the mount point."""
    path = str(scope.get("path", "/"))
    base = base_path(scope)
    if base and path.startswith(base):
        path = path[len(base) :]
    return path or "/"


def host_of(headers: Headers) -> str:
    host = headers.get("host", "")
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def is_loopback(scope: Scope) -> bool:
    return host_of(Headers(scope=scope)).lower() in LOOPBACK


def cookie_secure(scope: Scope) -> bool:
    """Secure cookies over HTTPS; browsers also keep them on http://127.0.0.1 and localhost."""
    return scope.get("scheme") in ("https", "wss") or is_loopback(scope)


def same_origin(request: Request) -> bool:
    """False for a request a browser sent on behalf of another site.

    Compares the ``Origin`` header's host with ``Host`` (not the scheme, which a
    TLS-terminating proxy in front changes)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not sent by a browser (or one old enough to predate Origin on POST)
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser (a new one is set by :func:`set_csrf_cookie` when missing)."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) < 20:
        token = request.scope.setdefault("pgq.new_csrf", secrets.token_urlsafe(24))
    return token


def set_cookies(request: Request, response: Response) -> None:
    """Set the CSRF cookie if this request made one, and clear a shown flash message."""
    path = base_path(request.scope) or "/"
    new = request.scope.get("pgq.new_csrf")
    if new:
        response.set_cookie(
            CSRF_COOKIE, new, path=path, httponly=True, samesite="strict", secure=cookie_secure(request.scope)
        )
    if request.cookies.get(FLASH_COOKIE) and request.scope.get("pgq.flash_shown"):
        response.delete_cookie(FLASH_COOKIE, path=path)


def csrf_ok(request: Request, submitted: Any) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not isinstance(submitted, str):
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode()) and same_origin(request)


def set_flash(request: Request, response: Response, text: str) -> None:
    response.set_cookie(
        FLASH_COOKIE,
        quote(text[:300]),
        path=base_path(request.scope) or "/",
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request.scope),
    )


class Guard:
    """ASGI middleware: hosts, authentication and security headers for every request."""

    def __init__(self, app: ASGIApp, token: str | None, allowed_hosts: Iterable[str] | None) -> None:
        self.app = app
        self.token = token
        self.session = session_value(token) if token else None
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts) if allowed_hosts else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in SECURITY_HEADERS if name not in names]
                message = {**message, "headers": headers}
            await send(message)

        response = self._refusal(scope)
        if response is not None:
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if self.allowed_hosts is not None and host_of(headers).lower() not in self.allowed_hosts:
            return JSONResponse(
                {"error": f"host {headers.get('host', '')!r} is not served here; use http://127.0.0.1"},
                status_code=400,
            )
        if self.token is None or self._authenticated(scope, headers):
            return None
        path = local_path(scope)
        if path == "/login" or path.startswith("/static/"):
            return None
        if path.startswith("/api/") or path in ("/metrics", "/events") or "text/html" not in headers.get("accept", ""):
            return JSONResponse(
                {"error": "authentication required: send 'Authorization: Bearer <PGQ_DASHBOARD_TOKEN>'"},
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="pgq"'},
            )
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{query}" if query else "")
        return RedirectResponse(f"{base_path(scope)}/login?next={quote(target, safe='')}", status_code=303)

    def _authenticated(self, scope: Scope, headers: Headers) -> bool:
        assert self.token is not None and self.session is not None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and token_matches(auth[7:].strip(), self.token):
            return True
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:
            return False
        morsel = cookies.get(AUTH_COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.session.encode())
