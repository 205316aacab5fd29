"""File permissions of the station's data: nobody outside the service's group reads it.

The data directory holds the database (password hashes, every quality record), evidence images
and the bootstrap secret. The station and web processes start with umask 027 (files 0640,
directories 0750); the data directory itself is made 0750 and secrets 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DIR_MODE", "SECRET_MODE", "UMASK", "private_dir", "restrict_umask"]

UMASK = 0o027
DIR_MODE = 0o750
SECRET_MODE = 0o600


def restrict_umask() -> int:
    """Set the process umask to at least 027 (keeps stricter bits); returns the previous one."""
    previous = os.umask(UMASK)
    os.umask(previous | UMASK)
    return previous


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0750 when this process owns it."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_uid == os.getuid():
        path.chmod(DIR_MODE)
    return path
