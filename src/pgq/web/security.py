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
- **Guessing**: a wrong token (bearer header or login form) costs half a
  second, and a client with :data:`MAX_FAILURES` of them within
  :data:`FAILURE_WINDOW` seconds is answered 429 until the oldest ages out,
  whatever it sends: the right token included, or the limit would not slow a guesser.
- **Bodies**: a request body larger than the dashboard's limit is refused with
  413 before it is read whole.
- Every response forbids inline script, framing and sniffing, and none may be
  cached (static files excepted).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
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
#: Wrong tokens a client may send within FAILURE_WINDOW seconds before it is refused (429).
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0
#: What a wrong token costs its sender, in seconds.
FAILURE_DELAY = 0.5
#: Clients whose failures are remembered (the oldest is forgotten first).
TRACKED_CLIENTS = 10_000

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


def set_flash(request: Request, response: Response, text: str, job_id: int | None = None) -> None:
    response.set_cookie(
        FLASH_COOKIE,
        flash_value(text, job_id),
        path=base_path(request.scope) or "/",
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request.scope),
    )


def client_of(scope: Scope) -> str:
    """The client's address as the server saw it (behind a proxy: the proxy's, unless the
    server is told to trust its forwarded headers, e.g. uvicorn --forwarded-allow-ips)."""
    client = scope.get("client")
    return str(client[0]) if client else "?"


class Throttle:
    """Wrong tokens per client: :data:`MAX_FAILURES` within :data:`FAILURE_WINDOW` seconds, then 429."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None if it may now."""
        now = time.monotonic()
        times = self._recent(client, now)
        if len(times) < self.limit:
            return None
        return max(times[0] + self.window - now, 0.1)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        times = self._recent(client, now)
        times.append(now)
        self._failures[client] = times
        self._failures.move_to_end(client)
        while len(self._failures) > TRACKED_CLIENTS:
            self._failures.popitem(last=False)


def too_many(retry_after: float) -> JSONResponse:
    seconds = max(1, round(retry_after))
    return JSONResponse(
        {"error": f"too many wrong tokens from this address; try again in {seconds} s"},
        status_code=429,
        headers={"retry-after": str(seconds)},
    )


#: Renders an error page (or JSON under /api) for a status and a message.
ErrorRenderer = Callable[[Scope, int, str], Awaitable[Response]]


class Guard:
    """ASGI middleware: hosts, authentication (throttled), body size, security headers, and a
    page for errors nothing else caught, for every request."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        allowed_hosts: Iterable[str] | None,
        throttle: Throttle,
        body_limit: int,
        render_error: ErrorRenderer,
    ) -> None:
        self.app = app
        self.token = token
        self.session = session_value(token) if token else None
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts) if allowed_hosts else None
        self.throttle = throttle
        self.body_limit = body_limit
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = local_path(scope).startswith("/static/")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                extra = [*SECURITY_HEADERS] if cacheable else [*SECURITY_HEADERS, (b"cache-control", b"no-store")]
                headers += [(name, value) for name, value in extra if name not in names]
                message = {**message, "headers": headers}
            await send(message)

        response = await self._refusal(scope)
        if response is None and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
            body = await self._read_body(scope, receive)
            if isinstance(body, Response):
                response = body
            else:
                receive = _replay(body)
        if response is not None:
            await response(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:  # a styled page with the security headers, then the server logs it
                page = await self.render_error(scope, 500, "The dashboard failed on this request; its log says why.")
                await page(scope, receive, send_with_headers)
            raise

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | Response:
        """The whole body, or a 413 as soon as it is known to be larger than the limit."""
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.body_limit:
            return self._too_large(scope)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.body_limit:
                return self._too_large(scope)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _too_large(self, scope: Scope) -> Response:
        return JSONResponse(
            {
                "error": f"the request body is larger than {self.body_limit} bytes, the most this dashboard "
                "reads (twice PGQ_MAX_PAYLOAD_BYTES plus 64 KiB)"
            },
            status_code=413,
            headers={"connection": "close"},
        )

    async def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if self.allowed_hosts is not None and host_of(headers).lower() not in self.allowed_hosts:
            return JSONResponse(
                {"error": f"host {headers.get('host', '')!r} is not served here; use http://127.0.0.1"},
                status_code=400,
            )
        if self.token is None:
            return None
        path = local_path(scope)
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        client = client_of(scope)
        if bearer is not None:
            wait = self.throttle.retry_after(client)
            if wait is not None:
                return too_many(wait)
            if token_matches(bearer, self.token):
                return None
            self.throttle.failed(client)
            await asyncio.sleep(FAILURE_DELAY)
            return JSONResponse(
                {"error": "wrong token: send 'Authorization: Bearer <PGQ_DASHBOARD_TOKEN>'"},
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="pgq", error="invalid_token"'},
            )
        if self._session_ok(headers) or path == "/login" or path.startswith("/static/"):
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

    def _session_ok(self, headers: Headers) -> bool:
        assert self.session is not None
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:
            return False
        morsel = cookies.get(AUTH_COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.session.encode())


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands the app the body already read, then waits for the disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # pragma: no cover - nothing more will come
        return {"type": "http.disconnect"}

    return receive


def flash_value(text: str, job_id: int | None = None) -> str:
    """The flash cookie's content: the message, and a job it may link."""
    return quote(json.dumps({"text": text[:300], "job": job_id}, separators=(",", ":")))


def read_flash(value: str) -> tuple[str, int | None]:
    from urllib.parse import unquote

    text = unquote(value)
    try:
        data = json.loads(text)
    except ValueError:
        return text, None
    if not isinstance(data, dict):
        return text, None
    job = data.get("job")
    return str(data.get("text", "")), job if isinstance(job, int) and not isinstance(job, bool) else None
