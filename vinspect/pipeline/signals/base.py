"""The Signaller protocol (the line output) with its Null, Log and Recording implementations.

The line rejects by default (positive accept, ``line-integration.md`` §7): a signaller turns a
PASS into an accept for that one part and reports everything else as a reject. ``signal`` is
called from one thread at a time, at once after the decision and before any disk I/O.
``heartbeat`` is called from the inspection loop itself, so a blocked loop stops the heartbeat.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from vinspect.types import Disposition, Inspection, StationState, Verdict

__all__ = [
    "AlarmSignaller",
    "LockedSignaller",
    "LogSignaller",
    "NullSignaller",
    "RecordingSignaller",
    "Signalled",
    "Signaller",
    "verdict_code",
]

logger = logging.getLogger(__name__)

ACCEPT, REJECT_DEFECT, REJECT_FAULT, REJECT_REVIEW = 1, 2, 3, 4


_CODES = {
    Disposition.PASS: ACCEPT,
    Disposition.DEFECT: REJECT_DEFECT,
    Disposition.FAULT: REJECT_FAULT,
    Disposition.REVIEW: REJECT_REVIEW,
}


def verdict_code(inspection: Inspection) -> int:
    """The §7 verdict register value of the part's disposition: 1 accept, 2 defect, 3 fault, 4 review.

    A fault is 3 whatever the verdict (also under ``on_error: review``), as the books count it.
    """
    return _CODES[inspection.decision.disposition]


class Signaller(Protocol):
    """A line output: one disposition per part, a heartbeat and the station state."""

    def signal(self, inspection: Inspection) -> None:
        """Report the part's disposition; only a PASS may ever become an accept."""
        ...

    def heartbeat(self) -> None:
        """Advance the changing value the line watches to know the station is alive."""
        ...

    def publish_state(self, state: StationState) -> None:
        """Tell the line the station's state (written on every transition)."""
        ...


@runtime_checkable
class AlarmSignaller(Signaller, Protocol):
    """A line output that can also publish an alarm (MQTT); the station publishes each alarm to it."""

    def alarm(self, message: str) -> None:
        """Publish one alarm message."""
        ...


class NullSignaller:
    """Signals nothing (the line then rejects every part by default)."""

    def signal(self, inspection: Inspection) -> None:
        return None

    def heartbeat(self) -> None:
        return None

    def publish_state(self, state: StationState) -> None:
        return None


class LogSignaller:
    """Logs each disposition at INFO (development and demos)."""

    def signal(self, inspection: Inspection) -> None:
        d = inspection.decision
        logger.info(
            "part %d %s %s",
            inspection.part_seq,
            d.verdict,
            ",".join(d.reasons),
            extra={"inspection_id": inspection.inspection_id, "accept": d.disposition is Disposition.PASS},
        )

    def heartbeat(self) -> None:
        return None

    def publish_state(self, state: StationState) -> None:
        logger.info("station state %s", state)


class LockedSignaller:
    """Serialises calls to a signaller used from several threads (a Modbus client is not
    thread-safe; overflow rejects come from the acquisition thread)."""

    def __init__(self, inner: Signaller) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def signal(self, inspection: Inspection) -> None:
        with self.lock:
            self.inner.signal(inspection)

    def heartbeat(self) -> None:
        with self.lock:
            self.inner.heartbeat()

    def publish_state(self, state: StationState) -> None:
        with self.lock:
            self.inner.publish_state(state)


@dataclass(frozen=True, slots=True, kw_only=True)
class Signalled:
    """One output the RecordingSignaller saw."""

    part_seq: int
    verdict: Verdict
    accept: bool
    reasons: tuple[str, ...]
    model_sha256: str | None


@dataclass
class RecordingSignaller:
    """The fake line: records every output; ``fail_with`` makes ``signal`` raise (fault tests)."""

    signals: list[Signalled] = field(default_factory=list)
    heartbeats: int = 0
    states: list[StationState] = field(default_factory=list)
    fail_with: Exception | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def signal(self, inspection: Inspection) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        model = inspection.model
        with self._lock:
            self.signals.append(
                Signalled(
                    part_seq=inspection.part_seq,
                    verdict=inspection.decision.verdict,
                    accept=verdict_code(inspection) == ACCEPT,
                    reasons=inspection.decision.reasons,
                    model_sha256=None if model is None else model.sha256,
                )
            )

    def heartbeat(self) -> None:
        with self._lock:
            self.heartbeats += 1

    def publish_state(self, state: StationState) -> None:
        with self._lock:
            self.states.append(state)

    @property
    def accepts(self) -> list[Signalled]:
        """Every part signalled as accepted."""
        with self._lock:
            return [s for s in self.signals if s.accept]
