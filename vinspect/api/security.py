"""ASGI middleware: the Host check, the session cookie, security headers and a request body limit.

Pure ASGI (no BaseHTTPMiddleware), so streaming responses and the benchmark's latency are not
taxed. The session itself is resolved lazily by :class:`SessionHandle`; the cookie is only set
when a handler created, rotated or ended a session.
"""

from __future__ import annotations

from collections.abc import Collection
from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vinspect.api.auth import SessionStore, WebSession

__all__ = ["COOKIE_NAME", "POLL_PATHS", "SecurityMiddleware", "SessionHandle"]

COOKIE_NAME = "vinspect_session"
MAX_BODY_BYTES = 1 << 20  # forms and JSON only; nothing here accepts uploads

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HSTS = "max-age=31536000"
# Requests a page repeats on its own (the station page polls its status every second): they are
# served but do not count as activity, so an open page does not keep its session alive.
POLL_PATHS = frozenset({"/api/v1/station/status"})
_STATIC_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # "no-referrer" makes Chromium send Origin: null on forms
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class SessionHandle:
    """Per-request access to the session; remembers whether the cookie must change."""

    def __init__(self, store: SessionStore, sid: str | None, *, touch: bool = True) -> None:
        self._store = store
        self._session = store.get(sid, touch=touch)
        self.changed = False

    @property
    def current(self) -> WebSession | None:
        return self._session

    def ensure(self) -> WebSession:
        """The session, creating an anonymous one (for a login form's CSRF token) if needed."""
        if self._session is None:
            self._session = self._store.create()
            self.changed = True
        return self._session

    def login(self, *, user_id: int, username: str) -> WebSession:
        self._session = self._store.login(self._session, user_id=user_id, username=username)
        self.changed = True
        return self._session

    def logout(self) -> None:
        if self._session is not None:
            self._store.drop(self._session.sid)
        self._session = None
        self.changed = True

    def cookie_header(self, *, secure: bool) -> str:
        attrs = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
        if self._session is None:
            return f"{COOKIE_NAME}=; Max-Age=0{attrs}"
        return f"{COOKIE_NAME}={self._session.sid}{attrs}"


def _cookie_value(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                jar = SimpleCookie(value.decode("latin-1"))
            except Exception:  # boundary: a malformed Cookie header is simply no session
                return None
            morsel = jar.get(COOKIE_NAME)
            return morsel.value if morsel is not None else None
    return None


class SecurityMiddleware:
    """Check Host, attach a :class:`SessionHandle`, enforce the body limit, add security headers.

    Args:
        sessions: the app's session store.
        allowed_hosts: Host header names (no port) answered; others get 400 (DNS rebinding). None: any.
        secure_cookies: Secure cookie and HSTS on every response (TLS at a proxy); https requests
            (directly or as reported by a trusted proxy) get them anyway.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: SessionStore,
        allowed_hosts: Collection[str] | None = None,
        secure_cookies: bool = False,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.allowed_hosts = None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
        self.secure_cookies = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed_hosts is not None and _host(scope) not in self.allowed_hosts:
            await _plain(send, 400, b"invalid Host header")
            return
        path: str = scope.get("path", "")
        handle = SessionHandle(self.sessions, _cookie_value(scope), touch=path not in POLL_PATHS)
        scope.setdefault("state", {})["session"] = handle
        secure = self.secure_cookies or scope.get("scheme") == "https"
        if _declared_length(scope) > MAX_BODY_BYTES:
            await _too_large(send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for key, value in _STATIC_HEADERS.items():
                    headers.setdefault(key, value)
                if not path.startswith("/static/"):
                    headers["cache-control"] = "no-store"
                if secure:
                    headers.setdefault("strict-transport-security", HSTS)
                if handle.changed:
                    headers.append("set-cookie", handle.cookie_header(secure=secure))
            await send(message)

        try:
            await self.app(scope, _limited(receive), send_with_headers)
        except _BodyTooLarge:
            if started:
                raise
            await _too_large(send)


def _host(scope: Scope) -> str:
    """The Host header's name, lower case, without port or IPv6 brackets ("" when absent)."""
    for name, value in scope.get("headers", []):
        if name == b"host":
            host: str = bytes(value).decode("latin-1").strip().lower()
            if host.startswith("["):
                return host[1 : host.find("]")] if "]" in host else host
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return ""


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return MAX_BODY_BYTES + 1
    return 0


def _limited(receive: Receive) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise _BodyTooLarge
        return message

    return wrapped


class _BodyTooLarge(Exception):
    """A chunked body grew past the limit while being read."""


async def _too_large(send: Send) -> None:
    body = b'{"detail":"request body too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *[(k.encode(), v.encode()) for k, v in _STATIC_HEADERS.items()],
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
