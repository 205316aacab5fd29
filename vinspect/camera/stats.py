"""Per-source accounting: counters, frame-id bookkeeping and the observable lifecycle.

* :class:`SourceCounters` satisfies :class:`vinspect.camera.base.SourceStats`. ``gaps`` counts
  missing frame *ids* (a jump from 4 to 8 adds 3), not gap events.
* :class:`FrameLedger` turns producer frame ids (which restart after a reconnect, and may skip)
  into per-source ids that strictly increase, and reports the ids that went missing.
* :class:`Lifecycle` holds a source's :class:`SourceState`, refuses transitions not in the table
  and tells listeners about every change (the supervisor's FAILED / OPENING / STREAMING cycle).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vinspect.camera.base import SourceState
from vinspect.errors import StateError

__all__ = ["FrameLedger", "Lifecycle", "SourceCounters", "StateChange", "StateListener", "utc_now"]

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    """Host wall-clock time in UTC (the capture time of frames without a device timestamp)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class SourceCounters:
    """Frame accounting for one source; every fault is counted, none is hidden."""

    frames: int = 0
    timeouts: int = 0
    incomplete: int = 0
    gaps: int = 0
    reconnects: int = 0
    disconnects: int = 0
    decode_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to the named counter (thread-safe)."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)

    def snapshot(self) -> Mapping[str, int]:
        """A consistent copy of every counter."""
        with self._lock:
            return {
                name: getattr(self, name)
                for name in ("frames", "timeouts", "incomplete", "gaps", "reconnects", "disconnects", "decode_errors")
            }


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """What :meth:`FrameLedger.admit` decided for one delivered buffer."""

    frame_id: int
    missing: tuple[int, ...] = ()


class FrameLedger:
    """Maps producer frame ids onto one strictly increasing id sequence per source.

    Missing producer ids are reported, except as many as the incomplete buffers seen since the
    last good frame (those were already delivered as ``incomplete`` faults). A producer id that
    goes backwards (a restart, a 16-bit wrap) starts a new run without counting a gap.
    """

    def __init__(self, counters: SourceCounters | None = None) -> None:
        self.counters = counters if counters is not None else SourceCounters()
        self._last_id = 0
        self._last_raw: int | None = None
        self._base = 0
        self._pending_incomplete = 0

    @property
    def last_id(self) -> int:
        """The last source frame id handed out (0 before the first)."""
        return self._last_id

    def restart(self) -> None:
        """Producer ids start over (a new acquirer after a reconnect): no gap across the outage."""
        self._last_raw = None
        self._pending_incomplete = 0

    def incomplete(self) -> None:
        """Record one incomplete buffer the producer discarded."""
        self._pending_incomplete += 1
        self.counters.add("incomplete")

    def admit(self, raw_id: int) -> Admission:
        """Give the source id for producer id ``raw_id`` and the source ids that went missing."""
        if self._new_run(raw_id):
            missing: tuple[int, ...] = ()
        else:
            jump = raw_id - (self._last_raw or 0) - 1
            explained = min(jump, self._pending_incomplete)
            first = self._last_id + 1 + explained
            missing = tuple(range(first, self._base + raw_id))
        self._pending_incomplete = 0
        frame_id = self._take(raw_id)
        self.counters.add("frames")
        if missing:
            self.counters.add("gaps", len(missing))
        return Admission(frame_id=frame_id, missing=missing)

    def renumber(self, raw_id: int) -> int:
        """The source id for an id another ledger already accounted for (a process source's
        child numbers its frames and faults itself): the same runs, no counting."""
        self._new_run(raw_id)
        return self._take(raw_id)

    def _new_run(self, raw_id: int) -> bool:
        """Start a new run when ``raw_id`` does not move forward (first id, restart, wrap)."""
        if self._last_raw is not None and raw_id > self._last_raw:
            return False
        if self._last_raw is not None:
            logger.warning("producer frame id went back from %d to %d; starting a new run", self._last_raw, raw_id)
        self._base = self._last_id + 1 - raw_id
        return True

    def _take(self, raw_id: int) -> int:
        self._last_raw = raw_id
        self._last_id = self._base + raw_id
        return self._last_id

    def next_id(self) -> int:
        """A fresh source id for a source without producer ids (folders, replays)."""
        self._last_id += 1
        self.counters.add("frames")
        return self._last_id


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChange:
    """One lifecycle transition of a source."""

    source_id: str
    old: SourceState
    new: SourceState
    at: datetime
    reason: str = ""


StateListener = Callable[[StateChange], None]

_ALLOWED: Mapping[SourceState, frozenset[SourceState]] = {
    SourceState.CLOSED: frozenset({SourceState.OPENING}),
    SourceState.OPENING: frozenset({SourceState.STREAMING, SourceState.FAILED, SourceState.CLOSED}),
    SourceState.STREAMING: frozenset({SourceState.FAILED, SourceState.EXHAUSTED, SourceState.CLOSED}),
    SourceState.FAILED: frozenset({SourceState.OPENING, SourceState.CLOSED}),
    SourceState.EXHAUSTED: frozenset({SourceState.CLOSED}),
}


class Lifecycle:
    """A source's state with a transition guard, a short history and listeners."""

    def __init__(self, source_id: str, *, listeners: tuple[StateListener, ...] = ()) -> None:
        self.source_id = source_id
        self._state = SourceState.CLOSED
        self._lock = threading.Lock()
        self._listeners = list(listeners)
        self.history: collections.deque[StateChange] = collections.deque(maxlen=64)

    @property
    def state(self) -> SourceState:
        """The current state."""
        return self._state

    def subscribe(self, listener: StateListener) -> None:
        """Call ``listener`` (on the thread making the change) after every transition."""
        self._listeners.append(listener)

    def enter(self, new: SourceState, *, reason: str = "") -> None:
        """Move to ``new``; re-entering the current state is a no-op.

        Raises:
            StateError: the transition is not allowed from the current state.
        """
        with self._lock:
            old = self._state
            if new == old:
                return
            if new not in _ALLOWED[old]:
                raise StateError(f"{self.source_id}: {old} -> {new} not allowed")
            self._state = new
            change = StateChange(source_id=self.source_id, old=old, new=new, at=utc_now(), reason=reason)
            self.history.append(change)
        logger.info("source state %s -> %s", old, new, extra={"source_id": self.source_id, "reason": reason})
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # listener boundary: a broken observer must not stop acquisition
                logger.exception("state listener failed", extra={"source_id": self.source_id})
