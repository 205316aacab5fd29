"""PipelineStatus, the station's snapshot, and StatusFile, which rewrites ``status.json``.

The runtime and the web app are separate processes (architecture §2): the runtime rewrites
``<data_dir>/status.json`` atomically (temp file + ``os.replace``) every second and the API only
reads it, so a reader sees the previous or the next snapshot, never a torn one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from vinspect.files import write_atomically
from vinspect.types import Books, ModelRef, StationState

__all__ = ["PipelineStatus", "StatusFile", "read_status"]

logger = logging.getLogger(__name__)


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the status.json schema)."""
        b = self.books
        return {
            "schema_version": 1, "station_id": self.station_id, "state": str(self.state), "reason": self.reason,
            "state_since": self.state_since.isoformat(), "at": self.at.isoformat(),
            "books": {"triggers": b.triggers, "passed": b.passed, "review": b.review,
                      "failed_defect": b.failed_defect, "failed_fault": dict(b.failed_fault),
                      "discrepancy": b.discrepancy},
            "in_flight": self.in_flight,
            "model": None if self.model is None else asdict(self.model),
            "latency_ms": dict(self.latency_ms), "stages_ms": {k: dict(v) for k, v in self.stages_ms.items()},
            "extras": dict(self.extras), "queue_depth": self.queue_depth,
            "record_queue_depth": self.record_queue_depth, "line_stopped": self.line_stopped,
        }


class StatusFile:
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


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status the runtime wrote, or None when there is none (yet)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None
