"""The station state machine (OPC 40100 vocabulary) with its allowed transitions.

A station starts PREOPERATIONAL and becomes OPERATIONAL only with a gated model
(:mod:`vinspect.pipeline.gating`); faults make it DEGRADED, a stopped line ERROR.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from vinspect.errors import StateError
from vinspect.types import StationState

__all__ = ["StationStateMachine", "Transition"]

logger = logging.getLogger(__name__)

S = StationState
_ALLOWED: dict[StationState, frozenset[StationState]] = {
    S.PREOPERATIONAL: frozenset({S.OPERATIONAL, S.ERROR, S.STOPPED}),
    S.OPERATIONAL: frozenset({S.DEGRADED, S.ERROR, S.STOPPED}),
    S.DEGRADED: frozenset({S.OPERATIONAL, S.ERROR, S.STOPPED}),
    S.ERROR: frozenset({S.PREOPERATIONAL, S.STOPPED}),
    S.STOPPED: frozenset(),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One state change, with why and when."""

    state: StationState
    reason: str
    at: datetime


class StationStateMachine:
    """The station's lifecycle with allowed transitions; listeners hear every change.

    Listeners run on the thread that made the transition and must not block (the Modbus
    signaller writes its ``station_state`` register from one).
    """

    def __init__(self, station_id: str, *, reason: str = "starting") -> None:
        self.station_id = station_id
        self._lock = threading.Lock()
        self._current = Transition(state=S.PREOPERATIONAL, reason=reason, at=datetime.now(UTC))
        self._listeners: list[Callable[[StationState], None]] = []

    @property
    def state(self) -> StationState:
        return self._current.state

    @property
    def reason(self) -> str:
        return self._current.reason

    @property
    def current(self) -> Transition:
        return self._current

    def listen(self, listener: Callable[[StationState], None]) -> None:
        """Call ``listener(state)`` after every transition."""
        self._listeners.append(listener)

    def enter(self, to: StationState, *, reason: str) -> None:
        """Move to ``to``; same-state calls only update the reason.

        Raises:
            StateError: the transition is not allowed (e.g. ERROR -> OPERATIONAL).
        """
        with self._lock:
            if to is self._current.state:
                self._current = Transition(state=to, reason=reason, at=self._current.at)
                return
            if to not in _ALLOWED[self._current.state]:
                raise StateError(f"{self.station_id}: {self._current.state} -> {to} not allowed")
            self._current = Transition(state=to, reason=reason, at=datetime.now(UTC))
        level = logging.WARNING if to in (S.DEGRADED, S.ERROR) else logging.INFO
        logger.log(level, "station %s: %s (%s)", self.station_id, to, reason)
        for listener in self._listeners:
            listener(to)

    def try_enter(self, to: StationState, *, reason: str) -> bool:
        """Like :meth:`enter` but returns False instead of raising for a refused transition."""
        try:
            self.enter(to, reason=reason)
        except StateError:
            return False
        return True
