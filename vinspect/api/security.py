"""ASGI middleware: the session cookie, security headers and a request body limit.

Pure ASGI (no BaseHTTPMiddleware), so streaming responses and the benchmark's latency are not
taxed. The session itself is resolved lazily by :class:`SessionHandle`; the cookie is only set
when a handler created, rotated or ended a session.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vinspect.api.auth import SessionStore, WebSession

__all__ = ["COOKIE_NAME", "SecurityMiddleware", "SessionHandle"]

COOKIE_NAME = "vinspect_session"
MAX_BODY_BYTES = 1 << 20  # forms and JSON only; nothing here accepts uploads

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
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

    def __init__(self, store: SessionStore, sid: str | None) -> None:
        self._store = store
        self._session = store.get(sid)
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
    """Attach a :class:`SessionHandle`, enforce the body limit, add security headers."""

    def __init__(self, app: ASGIApp, *, sessions: SessionStore) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handle = SessionHandle(self.sessions, _cookie_value(scope))
        scope.setdefault("state", {})["session"] = handle
        path: str = scope.get("path", "")
        secure = scope.get("scheme") == "https"
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
                if handle.changed:
                    headers.append("set-cookie", handle.cookie_header(secure=secure))
            await send(message)

        try:
            await self.app(scope, _limited(receive), send_with_headers)
        except _BodyTooLarge:
            if started:
                raise
            await _too_large(send)


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
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *[(k.encode(), v.encode()) for k, v in _STATIC_HEADERS.items()]]})
    await send({"type": "http.response.body", "body": body})
