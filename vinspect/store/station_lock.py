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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from vinspect.errors import StoreError

__all__ = ["lock_path", "station_lock"]


def lock_path(database: Path) -> Path:
    """The lock file of a SQLite database file."""
    return database.with_name(database.name + ".station-lock")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"station {info['station_id']!r} (pid {info['pid']} on {info['host']}, "
                f"since {info['started_at']})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another station (its lock file names no holder)"


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
                "several stations)") from None
        record = {"station_id": station_id, "pid": os.getpid(), "host": socket.gethostname(),
                  "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8") + b"\n", 0)
        os.fsync(fd)
        yield path
    finally:
        os.close(fd)  # releases the flock
