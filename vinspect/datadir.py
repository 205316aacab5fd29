"""The data directory a station (or the web app) writes to, checked before anything opens in it.

Rule: a missing data directory is created when its parent exists (a fresh install), and refused
with its name when the parent is missing too (a mistyped path must not silently start a new,
empty store). It must then be a writable directory with at least :data:`MIN_FREE_BYTES` free;
a probe file is written and fsynced to prove it (a full disk, a read-only mount or missing
permissions are each reported with the folder's name, before the database or a sink opens).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from pathlib import Path

from vinspect.errors import ConfigError

__all__ = ["MIN_FREE_BYTES", "prepare_data_dir"]

logger = logging.getLogger(__name__)
MIN_FREE_BYTES = 32 * 1024 * 1024  # room for the SQLite WAL, a checkpoint and a run's evidence
_PROBE = ".vinspect-write-probe"
_PROBE_BYTES = 4096


def prepare_data_dir(path: Path, *, min_free_bytes: int = MIN_FREE_BYTES) -> bool:
    """Check (and, if only it is missing, create) the data directory; True when it was created.

    Raises:
        ConfigError: naming the folder: missing with its parent, not a directory, not writable,
            or full (less than ``min_free_bytes`` free, or the probe write fails for lack of space).
    """
    created = False
    if not path.exists():
        if not path.parent.is_dir():
            raise ConfigError(
                f"data directory {path} does not exist, nor its parent {path.parent}: "
                "create it (mkdir -p) or fix --data-dir / VINSPECT_DATA_DIR"
            )
        try:
            path.mkdir(mode=0o750)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(f"data directory {path} does not exist and cannot be created: {exc.strerror}") from exc
        else:
            created = True
            logger.info("created data directory %s", path)
    if not path.is_dir():
        raise ConfigError(f"data directory {path} is not a directory")
    _probe(path)
    free = shutil.disk_usage(path).free
    if free < min_free_bytes:
        raise ConfigError(
            f"data directory {path}: disk full ({free / 2**20:.1f} MiB free, need at least "
            f"{min_free_bytes / 2**20:.0f} MiB); free space before starting"
        )
    return created


def _probe(path: Path) -> None:
    probe = path / _PROBE
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * _PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            reason = "disk full (or a file size limit): free space before starting"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = f"not writable by this user (uid {os.getuid()}): {exc.strerror}"
        else:
            reason = exc.strerror or str(exc)
        raise ConfigError(f"data directory {path}: {reason}") from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
