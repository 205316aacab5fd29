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
_COMMON = frozenset(
    {
        "password",
        "password1",
        "password123",
        "123456789012",
        "admin",
        "admin123",
        "administrator",
        "changeme",
        "changeme123",
        "letmein",
        "qwertyuiop12",
        "welcome123",
        "default",
        "root",
        "toor",
        "operator",
        "reviewer",
        "vinspect",
        "passw0rd",
        "p@ssw0rd",
        "1234567890ab",
        "iloveyou1234",
    }
)


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
        self._hash = PasswordHash((Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=1),))
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
    """Bounded in-memory sessions with idle and absolute timeouts (thread-safe).

    Anonymous sessions (a login form's CSRF token) live in their own small pool: however many
    anonymous requests arrive, they only evict each other, never a signed-in session.
    """

    def __init__(
        self,
        *,
        idle_timeout_s: float = 900.0,
        absolute_timeout_s: float = 8 * 3600.0,
        max_sessions: int = 10_000,
        max_anonymous: int = 1_000,
    ) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.absolute_timeout_s = absolute_timeout_s
        self._max, self._max_anonymous = max_sessions, max_anonymous
        self._sessions: OrderedDict[str, WebSession] = OrderedDict()  # signed in
        self._anonymous: OrderedDict[str, WebSession] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _new() -> WebSession:
        now = time.monotonic()
        return WebSession(
            sid=secrets.token_urlsafe(32), csrf_token=secrets.token_urlsafe(32), created_s=now, last_seen_s=now
        )

    @staticmethod
    def _put(pool: OrderedDict[str, WebSession], session: WebSession, limit: int) -> None:
        pool[session.sid] = session
        while len(pool) > limit:
            pool.popitem(last=False)

    def create(self) -> WebSession:
        """A new anonymous session."""
        session = self._new()
        with self._lock:
            self._put(self._anonymous, session, self._max_anonymous)
        return session

    def get(self, sid: str | None, *, touch: bool = True) -> WebSession | None:
        """The live session for a cookie value; expired ones are dropped.

        ``touch=False`` (a page's own polling) reads the session without counting as activity.
        """
        if not sid or len(sid) > 128:
            return None
        now = time.monotonic()
        with self._lock:
            pool = self._sessions if sid in self._sessions else self._anonymous
            session = pool.get(sid)
            if session is None:
                return None
            expired = (
                now - session.last_seen_s > self.idle_timeout_s or now - session.created_s > self.absolute_timeout_s
            )
            if expired:
                del pool[sid]
                return None
            if touch:
                session.last_seen_s = now
                pool.move_to_end(sid)
            return session

    def login(self, old: WebSession | None, *, user_id: int, username: str) -> WebSession:
        """A fresh session id and CSRF token for a successful login."""
        if old is not None:
            self.drop(old.sid)
        session = self._new()
        session.user_id = user_id
        session.username = username
        with self._lock:
            self._put(self._sessions, session, self._max)
        return session

    def drop(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)
            self._anonymous.pop(sid, None)

    def drop_user(self, user_id: int) -> None:
        """End every session of a user (deactivation, role change, repeated failed signatures)."""
        with self._lock:
            for sid in [s.sid for s in self._sessions.values() if s.user_id == user_id]:
                del self._sessions[sid]


class ClientLimiter:
    """Failed logins per real client address and account (in memory).

    Blocked when one client failed ``limit`` times on one account, or ``client_limit`` times over
    all accounts (password spraying), in the window. The address is the peer's, or the one a
    trusted proxy reported (``VINSPECT_API_TRUSTED_PROXIES``); a forged X-Forwarded-For from
    anyone else changes nothing.
    """

    def __init__(self, *, limit: int = 20, client_limit: int = 100, window_s: float = 900.0) -> None:
        self._limit, self._client_limit, self._window_s = limit, client_limit, window_s
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _count(self, key: str, now: float) -> int:
        events = self._events.get(key)
        while events and now - events[0] > self._window_s:
            events.popleft()
        return 0 if events is None else len(events)

    def blocked(self, client: str, account: str = "") -> bool:
        now = time.monotonic()
        with self._lock:
            return (
                self._count(f"{client}\n{account}", now) >= self._limit
                or self._count(client, now) >= self._client_limit
            )

    def fail(self, client: str, account: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._events) > 10_000:
                self._events.clear()
            for key in (client, f"{client}\n{account}"):
                self._events.setdefault(key, deque()).append(now)


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
