"""File helpers every layer shares (stdlib only): a file's sha256 and atomic replacement.

Atomic replacement writes a temporary sibling (``.<name>.<pid>.<thread>.tmp``, so two writers
never share one) and renames it over the target. What it guarantees:

- a reader sees the old file or the new one, never a torn or partial one, and a failed or
  interrupted write leaves the old file as it was and no temporary behind (a kill between
  write and rename can leave the temporary; it never replaces the target);
- ``durable=True`` also fsyncs the file before the rename and the directory after it, so once
  the call returns the new content survives a power cut; ``durable=False`` suits files rewritten
  often that only need to be whole (the station's status file, the audit anchor, statistics);
- ``mode`` (e.g. ``0o600`` for secrets) is set on the temporary before any byte is written, so
  the content is never readable with wider permissions, and the target keeps that mode.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["fsync_dir", "replace_atomically", "sha256_file", "write_atomically"]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (streamed)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replace_atomically(path: Path, *, durable: bool, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on a clean exit it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. With ``mode``
    the temporary already exists, empty, with that mode when it is yielded (write it in place).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        if mode is not None:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            try:
                os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask; and a stale file keeps its own
            finally:
                os.close(fd)
        yield tmp
        if durable:
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_atomically(path: Path, data: bytes | str, *, durable: bool, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (str is written as UTF-8) as :func:`replace_atomically` does."""
    blob = data.encode("utf-8") if isinstance(data, str) else data
    with replace_atomically(path, durable=durable, mode=mode) as tmp:
        tmp.write_bytes(blob)
