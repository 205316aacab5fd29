"""The audit key: an HMAC key kept outside the database, and the signed chain anchor.

Anyone who can write the database can append audit rows with correctly computed plain hashes;
nobody without the key file can compute their ``mac`` (HMAC-SHA256 of ``row_hash``). The key
file (``<data_dir>/audit-key``, mode 0600, refused when readable by others) holds every key id
ever used and which one is current; :func:`rotate_key` adds a new current key and keeps the
old ones so that older rows still verify. Deleting the newest rows leaves no broken link, so
every commit that appended rows also rewrites the anchor file (``<data_dir>/audit-anchor.json``:
seq, row_hash and their HMAC) outside the database; verification checks the chain still reaches it.

Attach a keyring to an engine with :func:`attach`; :mod:`vinspect.store.audit` signs every row
appended through that engine and writes the anchor after each such commit.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import secrets
import stat
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vinspect.errors import ConfigError
from vinspect.files import write_atomically

__all__ = [
    "ANCHOR_FILE",
    "KEY_FILE",
    "AnchorWriter",
    "AuditKeyring",
    "Keying",
    "SignedAnchor",
    "attach",
    "flush_anchors",
    "keying_for",
    "load_keyring",
    "open_keyring",
    "read_anchor",
    "rotate_key",
    "write_anchor",
]

logger = logging.getLogger(__name__)
KEY_FILE = "audit-key"
ANCHOR_FILE = "audit-anchor.json"


@dataclass(frozen=True, slots=True)
class AuditKeyring:
    """Every audit key id with its secret, and the id new rows are signed with."""

    current: str
    keys: dict[str, bytes]

    def sign(self, row_hash: str) -> tuple[str, str]:
        """(key id, HMAC-SHA256 hex) of a link's ``row_hash`` with the current key."""
        return self.current, self.mac(self.current, row_hash)

    def mac(self, key_id: str, message: str) -> str:
        return hmac.new(self.keys[key_id], message.encode("ascii"), hashlib.sha256).hexdigest()

    def check(self, key_id: str, message: str, mac: str | None) -> bool | None:
        """True/False for a known key id, None when the key id is not in this keyring."""
        if key_id not in self.keys:
            return None
        return mac is not None and hmac.compare_digest(self.mac(key_id, message), mac)


def _check_mode(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXO | stat.S_IWGRP):
        raise ConfigError(
            f"audit key {path}: mode {stat.S_IMODE(mode):04o} lets others read or write it; run: chmod 600 {path}"
        )


def load_keyring(path: Path) -> AuditKeyring | None:
    """The keyring in ``path``, or None when the file does not exist.

    Raises:
        ConfigError: unreadable, malformed, or readable/writable by others.
    """
    if not path.exists():
        return None
    _check_mode(path)
    try:
        raw = json.loads(path.read_text("utf-8"))
        keys = {str(k): bytes.fromhex(v) for k, v in raw["keys"].items()}
        current = str(raw["current"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"audit key {path}: unreadable or malformed ({exc})") from exc
    if current not in keys or any(len(k) < 32 for k in keys.values()):
        raise ConfigError(f"audit key {path}: current key {current!r} missing or a key shorter than 32 bytes")
    return AuditKeyring(current=current, keys=keys)


def _write_keyring(path: Path, ring: AuditKeyring) -> None:
    body = (
        json.dumps(
            {"current": ring.current, "keys": {k: v.hex() for k, v in ring.keys.items()}}, indent=1, sort_keys=True
        )
        + "\n"
    )
    write_atomically(path, body, durable=True, mode=0o600)  # a secret: never readable by others, even briefly


def _new_key_id(existing: dict[str, bytes]) -> str:
    while True:
        key_id = f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
        if key_id not in existing:
            return key_id


def open_keyring(data_dir: Path) -> AuditKeyring:
    """The keyring of a data directory, created (one fresh key, mode 0600) on first use."""
    path = data_dir / KEY_FILE
    ring = load_keyring(path)
    if ring is None:
        key_id = _new_key_id({})
        ring = AuditKeyring(current=key_id, keys={key_id: secrets.token_bytes(32)})
        _write_keyring(path, ring)
    return ring


def rotate_key(data_dir: Path) -> AuditKeyring:
    """Add a new current key (older keys stay, so older rows still verify); returns the new keyring."""
    path = data_dir / KEY_FILE
    ring = load_keyring(path)
    keys = dict(ring.keys) if ring is not None else {}
    key_id = _new_key_id(keys)
    keys[key_id] = secrets.token_bytes(32)
    ring = AuditKeyring(current=key_id, keys=keys)
    _write_keyring(path, ring)
    return ring


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedAnchor:
    """The chain head as last written outside the database."""

    seq: int
    row_hash: str
    key_id: str
    mac: str
    at: str


def _anchor_message(seq: int, row_hash: str) -> str:
    return f"vinspect-audit-anchor|{seq}|{row_hash}"


def write_anchor(path: Path, ring: AuditKeyring, *, seq: int, row_hash: str) -> None:
    """Replace the anchor file with this head (atomically: a temporary file, then rename).

    Not fsynced: the anchor guards against tampering, not power loss (the database is durable at
    commit; an anchor lost in a power cut is an older, still valid, prefix). Two processes that
    write one store may replace each other's anchor with an older head: still a valid prefix.
    """
    key_id, mac = ring.current, ring.mac(ring.current, _anchor_message(seq, row_hash))
    body = (
        json.dumps(
            {"seq": seq, "row_hash": row_hash, "key_id": key_id, "mac": mac, "at": datetime.now(UTC).isoformat()}
        )
        + "\n"
    )
    write_atomically(path, body, durable=False)


def _read_raw(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_anchor(path: Path, ring: AuditKeyring | None) -> SignedAnchor | None:
    """The anchor in ``path`` (None if absent), its HMAC checked when a keyring is given.

    Raises:
        ConfigError: malformed, or its HMAC does not match (the anchor file was forged).
    """
    raw = _read_raw(path)
    if raw is None:
        return None
    try:
        anchor = SignedAnchor(
            seq=int(raw["seq"]),
            row_hash=str(raw["row_hash"]),
            key_id=str(raw["key_id"]),
            mac=str(raw["mac"]),
            at=str(raw.get("at", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"audit anchor {path}: malformed ({exc})") from exc
    if ring is not None:
        ok = ring.check(anchor.key_id, _anchor_message(anchor.seq, anchor.row_hash), anchor.mac)
        if ok is None:
            raise ConfigError(f"audit anchor {path}: signed with key {anchor.key_id!r}, not in the audit key file")
        if not ok:
            raise ConfigError(f"audit anchor {path}: HMAC does not match (the anchor file was forged or edited)")
    return anchor


class AnchorWriter:
    """Writes the newest committed head to the anchor file off the commit path.

    ``offer`` (called after each commit) only records the head and wakes a daemon thread, which
    rewrites the file at most every ``min_interval_s`` (a rename costs milliseconds on some file
    systems; the commit path must not wait for it). ``flush`` writes a pending head now; it runs
    at interpreter exit too, so a process that stops normally leaves its last head anchored.
    """

    def __init__(self, path: Path, ring: AuditKeyring, *, min_interval_s: float = 0.1) -> None:
        self.path = path
        self._ring = ring
        self._min_interval_s = min_interval_s
        self._cond = threading.Condition()
        self._pending: tuple[int, str] | None = None
        self._written = 0
        self._thread: threading.Thread | None = None
        _WRITERS.add(self)

    def offer(self, *, seq: int, row_hash: str) -> None:
        with self._cond:
            if seq <= self._written or (self._pending is not None and seq <= self._pending[0]):
                return
            self._pending = (seq, row_hash)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-anchor", daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self) -> None:
        with self._cond:
            self._write_pending()

    def _write_pending(self) -> None:  # holds the condition
        if self._pending is None:
            return
        seq, row_hash = self._pending
        self._pending = None
        try:
            write_anchor(self.path, self._ring, seq=seq, row_hash=row_hash)
            self._written = seq
        except OSError:  # the records are committed; a stale anchor is an older, still valid prefix
            logger.warning("writing the audit anchor %s failed", self.path, exc_info=True)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None:
                    self._cond.wait()
                self._write_pending()
            time.sleep(self._min_interval_s)


_WRITERS: weakref.WeakSet[AnchorWriter] = weakref.WeakSet()


def flush_anchors() -> None:
    """Write every pending anchor now (at exit; tests that read the file right after a commit)."""
    for writer in list(_WRITERS):
        writer.flush()


atexit.register(flush_anchors)


@dataclass(slots=True)
class Keying:
    """What an engine signs audit rows with, and who writes its anchor."""

    ring: AuditKeyring
    anchor: AnchorWriter | None = field(default=None)


_KEYINGS: weakref.WeakKeyDictionary[Any, Keying] = weakref.WeakKeyDictionary()


def attach(engine: Any, ring: AuditKeyring, *, anchor_path: Path | None) -> None:
    """Sign every audit row appended through ``engine`` (and engines derived from it)."""
    writer = None if anchor_path is None else AnchorWriter(anchor_path, ring)
    _KEYINGS[engine.pool] = Keying(ring=ring, anchor=writer)


def keying_for(bind: Any) -> Keying | None:
    """The keying attached to the engine behind a session's bind, if any."""
    pool = getattr(bind, "pool", None)
    return None if pool is None else _KEYINGS.get(pool)
