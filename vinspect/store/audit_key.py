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

import hashlib
import hmac
import json
import os
import secrets
import stat
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vinspect.errors import ConfigError

__all__ = [
    "ANCHOR_FILE",
    "KEY_FILE",
    "AuditKeyring",
    "Keying",
    "SignedAnchor",
    "attach",
    "keying_for",
    "load_keyring",
    "open_keyring",
    "read_anchor",
    "rotate_key",
    "write_anchor",
]

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
        raise ConfigError(f"audit key {path}: mode {stat.S_IMODE(mode):04o} lets others read or write it; "
                          f"run: chmod 600 {path}")


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
    body = json.dumps({"current": ring.current, "keys": {k: v.hex() for k, v in ring.keys.items()}},
                      indent=1, sort_keys=True) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, body.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
    """Replace the anchor file with this head unless it already holds a newer one.

    Not fsynced: the anchor guards against tampering, not power loss (the database is durable at
    commit; an anchor lost in a power cut is an older, still valid, prefix).
    """
    current = _read_raw(path)
    if current is not None and int(current.get("seq", 0)) >= seq:
        return
    key_id, mac = ring.current, ring.mac(ring.current, _anchor_message(seq, row_hash))
    body = json.dumps({"seq": seq, "row_hash": row_hash, "key_id": key_id, "mac": mac,
                       "at": datetime.now(UTC).isoformat()}) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(body, "utf-8")
    os.replace(tmp, path)


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
        anchor = SignedAnchor(seq=int(raw["seq"]), row_hash=str(raw["row_hash"]), key_id=str(raw["key_id"]),
                              mac=str(raw["mac"]), at=str(raw.get("at", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"audit anchor {path}: malformed ({exc})") from exc
    if ring is not None:
        ok = ring.check(anchor.key_id, _anchor_message(anchor.seq, anchor.row_hash), anchor.mac)
        if ok is None:
            raise ConfigError(f"audit anchor {path}: signed with key {anchor.key_id!r}, not in the audit key file")
        if not ok:
            raise ConfigError(f"audit anchor {path}: HMAC does not match (the anchor file was forged or edited)")
    return anchor


@dataclass(slots=True)
class Keying:
    """What an engine signs audit rows with, and where it writes the anchor."""

    ring: AuditKeyring
    anchor_path: Path | None
    last_anchor: int = field(default=0)


_KEYINGS: weakref.WeakKeyDictionary[Any, Keying] = weakref.WeakKeyDictionary()


def attach(engine: Any, ring: AuditKeyring, *, anchor_path: Path | None) -> None:
    """Sign every audit row appended through ``engine`` (and engines derived from it)."""
    _KEYINGS[engine.pool] = Keying(ring=ring, anchor_path=anchor_path)


def keying_for(bind: Any) -> Keying | None:
    """The keying attached to the engine behind a session's bind, if any."""
    pool = getattr(bind, "pool", None)
    return None if pool is None else _KEYINGS.get(pool)
