"""Passwords, server-side sessions, CSRF tokens and the first-admin bootstrap secret.

Sessions live in memory on the app (one :class:`SessionStore` per ``create_app``), keyed by a
256-bit random id carried in an HttpOnly, SameSite=Strict cookie. Each session holds its own
CSRF synchronizer token; login rotates both (no session fixation). A session cookie alone never
signs a record: every signature re-enters the password (:meth:`PasswordService.verify`).
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

__all__ = [
    "BOOTSTRAP_FILE",
    "AuthUser",
    "ClientLimiter",
    "PasswordService",
    "SessionStore",
    "WebSession",
    "consume_bootstrap_secret",
    "ensure_bootstrap_secret",
    "password_problems",
]

BOOTSTRAP_FILE = "bootstrap-secret"
MIN_PASSWORD_LENGTH = 12
# The most common default and breached passwords; a policy check, not a full breach list.
_COMMON = frozenset({
    "password", "password1", "password123", "123456789012", "admin", "admin123", "administrator",
    "changeme", "changeme123", "letmein", "qwertyuiop12", "welcome123", "default", "root", "toor",
    "operator", "reviewer", "vinspect", "passw0rd", "p@ssw0rd", "1234567890ab", "iloveyou1234",
})


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthUser:
    """The signed-in person, re-read from the store on every request."""

    user_id: int
    username: str
    display_name: str
    role: str


def password_problems(password: str, *, username: str) -> list[str]:
    """Why a new password is refused (empty when acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 256:
        problems.append("at most 256 characters")
    lowered = password.lower()
    if lowered in _COMMON or lowered.rstrip("0123456789!") in _COMMON:
        problems.append("not a common or default password")
    if username and username.lower() in lowered:
        problems.append("must not contain the username")
    return problems


class PasswordService:
    """argon2id hashing; cheaper parameters are for tests only."""

    def __init__(self, *, time_cost: int = 3, memory_cost_kib: int = 65536) -> None:
        self._hash = PasswordHash((Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost_kib,
                                                parallelism=1),))
        self._dummy = self._hash.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hash.hash(password)

    def verify(self, password: str, password_hash: str | None) -> bool:
        """Constant work whether or not the user exists (no username oracle by timing)."""
        if password_hash is None:
            self._hash.verify(password, self._dummy)
            return False
        try:
            return self._hash.verify(password, password_hash)
        except Exception:  # boundary: a malformed stored hash is a failed login, never a 500
            return False


@dataclass(slots=True)
class WebSession:
    """One browser session; ``user`` is None until login."""

    sid: str
    csrf_token: str
    created_s: float
    last_seen_s: float
    user_id: int | None = None
    username: str | None = None
    flash: list[str] = field(default_factory=list)

    def check_csrf(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token.encode(), (token or "").encode())


class SessionStore:
    """Bounded in-memory sessions with idle and absolute timeouts (thread-safe)."""

    def __init__(self, *, idle_timeout_s: float = 900.0, absolute_timeout_s: float = 8 * 3600.0,
                 max_sessions: int = 10_000) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.absolute_timeout_s = absolute_timeout_s
        self._max = max_sessions
        self._sessions: OrderedDict[str, WebSession] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> WebSession:
        now = time.monotonic()
        session = WebSession(sid=secrets.token_urlsafe(32), csrf_token=secrets.token_urlsafe(32),
                             created_s=now, last_seen_s=now)
        with self._lock:
            self._sessions[session.sid] = session
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        return session

    def get(self, sid: str | None) -> WebSession | None:
        """The live session for a cookie value; expired ones are dropped."""
        if not sid or len(sid) > 128:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            expired = (now - session.last_seen_s > self.idle_timeout_s
                       or now - session.created_s > self.absolute_timeout_s)
            if expired:
                del self._sessions[sid]
                return None
            session.last_seen_s = now
            self._sessions.move_to_end(sid)
            return session

    def login(self, old: WebSession | None, *, user_id: int, username: str) -> WebSession:
        """A fresh session id and CSRF token for a successful login."""
        if old is not None:
            self.drop(old.sid)
        session = self.create()
        session.user_id = user_id
        session.username = username
        return session

    def drop(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def drop_user(self, user_id: int) -> None:
        """End every session of a user (deactivation, role change)."""
        with self._lock:
            for sid in [s.sid for s in self._sessions.values() if s.user_id == user_id]:
                del self._sessions[sid]


class ClientLimiter:
    """At most ``limit`` failed logins per client address per window (in memory)."""

    def __init__(self, *, limit: int = 20, window_s: float = 900.0) -> None:
        self._limit, self._window_s = limit, window_s
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            events = self._events.get(client)
            while events and now - events[0] > self._window_s:
                events.popleft()
            return events is not None and len(events) >= self._limit

    def fail(self, client: str) -> None:
        with self._lock:
            if len(self._events) > 10_000:
                self._events.clear()
            self._events.setdefault(client, deque()).append(time.monotonic())



def ensure_bootstrap_secret(data_dir: Path) -> Path:
    """Write a one-time secret to ``<data_dir>/bootstrap-secret`` (mode 0600) unless one exists.

    Call only while no active admin exists. Returns the file's path.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / BOOTSTRAP_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        return path
    try:
        os.write(fd, (secrets.token_urlsafe(24) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def bootstrap_pending(data_dir: Path) -> bool:
    """True while a bootstrap secret waits to be used."""
    return (data_dir / BOOTSTRAP_FILE).is_file()


def check_bootstrap_secret(data_dir: Path, offered: str) -> bool:
    """Compare an offered secret with the file, in constant time."""
    try:
        expected = (data_dir / BOOTSTRAP_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(expected) and hmac.compare_digest(expected.encode(), offered.strip().encode("utf-8"))


def consume_bootstrap_secret(data_dir: Path) -> None:
    """Delete the secret once the first admin exists (it works once)."""
    (data_dir / BOOTSTRAP_FILE).unlink(missing_ok=True)
