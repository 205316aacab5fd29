"""Read the station runtime's ``status.json`` snapshot defensively (plain JSON, any shape).

The runtime rewrites the file every second (atomic replace); the web tier only reads it, so a
missing, torn or foreign file shows as "station not running" instead of an error.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["StationSnapshot", "StatusFile", "StatusSource"]

_MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class StationSnapshot:
    """What the status page shows; ``data`` is the runtime's own JSON object."""

    running: bool
    state: str
    stale: bool
    age_s: float | None
    data: dict[str, Any]


class StatusSource(Protocol):
    """Where the API reads the station's status from."""

    def read(self) -> StationSnapshot: ...


class StatusFile:
    """``<data_dir>/status.json``; stale after ``stale_after_s`` without a rewrite."""

    def __init__(self, path: Path, *, stale_after_s: float = 5.0) -> None:
        self.path = path
        self.stale_after_s = stale_after_s

    def read(self) -> StationSnapshot:
        try:
            stat = self.path.stat()
            if stat.st_size > _MAX_BYTES:
                return _not_running("status file too large")
            raw = json.loads(self.path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return _not_running("station not running")
        if not isinstance(raw, dict):
            return _not_running("status file is not a JSON object")
        age_s = max(0.0, time.time() - stat.st_mtime)
        stale = age_s > self.stale_after_s
        state = raw.get("state")
        shown = state if isinstance(state, str) and state else "UNKNOWN"
        return StationSnapshot(running=not stale, state=shown, stale=stale, age_s=round(age_s, 3), data=raw)


def _not_running(reason: str) -> StationSnapshot:
    return StationSnapshot(running=False, state="NOT RUNNING", stale=True, age_s=None, data={"note": reason})


class FixedStatus:
    """A fake status source for tests and screenshots."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def read(self) -> StationSnapshot:
        state = self.data.get("state")
        return StationSnapshot(running=True, state=state if isinstance(state, str) else "UNKNOWN", stale=False,
                               age_s=0.0, data=dict(self.data))
