"""``status.json``, one schema with its writer and its reader.

:class:`PipelineStatus` is the station's snapshot and :meth:`PipelineStatus.to_dict` the file's
schema (``schema_version`` :data:`STATUS_SCHEMA_VERSION`). The runtime and the web app are
separate processes (architecture §2): the runtime's :class:`StatusWriter` rewrites
``<data_dir>/status.json`` (:func:`status_path`) atomically every second and the web app's
:class:`StatusReader` only reads it, so it sees the previous or the next snapshot, never a torn
one; a missing, stale, torn, foreign or other-schema file reads as "station not running".
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from vinspect.files import write_atomically
from vinspect.types import Books, ModelRef, StationState

__all__ = [
    "STATUS_SCHEMA_VERSION",
    "PipelineStatus",
    "StationSnapshot",
    "StatusReader",
    "StatusWriter",
    "status_path",
]

logger = logging.getLogger(__name__)

STATUS_FILE = "status.json"
STATUS_SCHEMA_VERSION = 1
_MAX_BYTES = 1 << 20


def status_path(data_dir: Path) -> Path:
    """Where the station writes, and the web app reads, the status of the station using ``data_dir``."""
    return data_dir / STATUS_FILE


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineStatus:
    """Everything an operator screen or a scrape needs, at one instant.

    ``in_flight`` is the number of triggers not yet settled (queued or being judged); the books
    close (``books.discrepancy == 0``) once the pipeline has drained.
    """

    station_id: str
    state: StationState
    reason: str
    state_since: datetime
    books: Books
    in_flight: int
    model: ModelRef | None
    latency_ms: Mapping[str, float]
    stages_ms: Mapping[str, Mapping[str, float]]
    extras: Mapping[str, object]
    queue_depth: int
    record_queue_depth: int
    line_stopped: bool
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    config: Mapping[str, object] | None = None  # the station configuration version (vinspect run adds it)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the status.json schema)."""
        b = self.books
        return {
            "schema_version": STATUS_SCHEMA_VERSION,
            "station_id": self.station_id,
            "state": str(self.state),
            "reason": self.reason,
            "state_since": self.state_since.isoformat(),
            "at": self.at.isoformat(),
            "books": {
                "triggers": b.triggers,
                "passed": b.passed,
                "review": b.review,
                "failed_defect": b.failed_defect,
                "failed_fault": dict(b.failed_fault),
                "discrepancy": b.discrepancy,
            },
            "in_flight": self.in_flight,
            "model": None if self.model is None else asdict(self.model),
            "latency_ms": dict(self.latency_ms),
            "stages_ms": {k: dict(v) for k, v in self.stages_ms.items()},
            "extras": dict(self.extras),
            "queue_depth": self.queue_depth,
            "record_queue_depth": self.record_queue_depth,
            "line_stopped": self.line_stopped,
            "config": None if self.config is None else dict(self.config),
        }


class StatusWriter:
    """Rewrites ``path`` from ``snapshot()`` every ``period_s`` on its own thread, and at exit.

    A failing write (disk full) is logged and counted, never raised into the line.
    """

    def __init__(self, path: Path, *, snapshot: Callable[[], PipelineStatus], period_s: float = 1.0) -> None:
        self.path = path
        self.write_errors = 0
        self._snapshot = snapshot
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vinspect-status", daemon=True)

    def write_now(self) -> None:
        """Write one snapshot immediately."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, json.dumps(self._snapshot().to_dict(), indent=1, default=str), durable=False)
        except Exception:  # status boundary: a full disk must not take the line down
            self.write_errors += 1
            logger.exception("status.json write failed", extra={"path": str(self.path)})

    def _loop(self) -> None:
        while not self._stop.wait(self._period_s):
            self.write_now()

    def __enter__(self) -> Self:
        self.write_now()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.write_now()


@dataclass(frozen=True, slots=True, kw_only=True)
class StationSnapshot:
    """What a status page shows; ``data`` is the runtime's own JSON object (see ``to_dict``)."""

    running: bool
    state: str
    stale: bool
    age_s: float | None
    data: dict[str, Any]


class StatusReader:
    """Reads what a :class:`StatusWriter` wrote, defensively; stale after ``stale_after_s``
    without a rewrite."""

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
        if raw.get("schema_version") != STATUS_SCHEMA_VERSION:
            return _not_running(
                f"status file schema {raw.get('schema_version')!r}; this version reads {STATUS_SCHEMA_VERSION}"
            )
        age_s = max(0.0, time.time() - stat.st_mtime)
        stale = age_s > self.stale_after_s
        state = raw.get("state")
        shown = state if isinstance(state, str) and state else "UNKNOWN"
        return StationSnapshot(running=not stale, state=shown, stale=stale, age_s=round(age_s, 3), data=raw)


def _not_running(reason: str) -> StationSnapshot:
    return StationSnapshot(running=False, state="NOT RUNNING", stale=True, age_s=None, data={"note": reason})
