"""One station per SQLite database: an exclusive lock file beside the database, naming its holder.

SQLite serialises writers, but two stations on one file would interleave their part numbers'
recovery and fight over the write lock at line rate; a plant with several stations uses
PostgreSQL. ``<database>.station-lock`` is held with ``flock`` for the life of ``vinspect run``
(the kernel drops it when the process dies, even on SIGKILL) and holds the holder's station id,
pid, host and start time, so a second station is refused with a message that names the first.
The reviewer app and the store CLI do not take it: they share the file with the station.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from vinspect.errors import StoreError

__all__ = ["lock_path", "station_lock"]


def lock_path(database: Path) -> Path:
    """The lock file of a SQLite database file."""
    return database.with_name(database.name + ".station-lock")


def _alive_here(info: dict[str, object]) -> bool:
    """False only when the record names a process on this host that no longer exists (a stale record)."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(str(info["pid"])), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True
    return True


def _holder(path: Path, *, wait_s: float = 2.0) -> str:
    """Who holds the lock. The holder writes its record just after taking the lock, so a second
    station arriving in that instant reads an empty or stale file: it re-reads for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            if _alive_here(info):
                return (
                    f"station {info['station_id']!r} (pid {info['pid']} on {info['host']}, since {info['started_at']})"
                )
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if time.monotonic() >= deadline:
            return "another station (its lock file names no holder)"
        time.sleep(0.05)


@contextmanager
def station_lock(database: Path, station_id: str) -> Iterator[Path]:
    """Hold the station lock of a SQLite database for the duration of the block.

    Raises:
        StoreError: another live process holds it (named), or the lock file cannot be created.
    """
    path = lock_path(database)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the station lock file: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"{database}: {_holder(path)} already writes to this SQLite database; station {station_id!r} "
                "cannot share it (give each station its own data directory, or use one PostgreSQL for "
                "several stations)"
            ) from None
        record = {
            "station_id": station_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        data = json.dumps(record).encode("utf-8") + b"\n"
        os.pwrite(fd, data, 0)  # overwrite first, then cut: a reader never sees an empty file
        os.ftruncate(fd, len(data))
        os.fsync(fd)
        yield path
    finally:
        os.close(fd)  # releases the flock
