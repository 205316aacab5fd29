"""Clock: the time a source paces, waits and stamps by, injectable so tests need no wall clock.

:data:`SYSTEM_CLOCK` is ``time.monotonic`` / ``time.sleep`` / ``Event.wait`` on the host's
CLOCK_MONOTONIC, the clock the pipeline times parts on (``time.perf_counter_ns`` is the same clock
on Linux), so ``Frame.acquired_ns`` stamped by a source, even in another process, and the
pipeline's stage stamps can be subtracted. :class:`ManualClock` is the fake shipped beside the
seam: sleeping and waiting advance it at once and are recorded, so a test asserts the exact
schedule a source kept instead of timing it.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Monotonic time in seconds (and ns), and the ways a source may wait on it."""

    def monotonic(self) -> float: ...

    def monotonic_ns(self) -> int: ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait for ``event`` at most ``seconds``; True when it is set."""
        ...


class SystemClock:
    """The host's CLOCK_MONOTONIC."""

    def monotonic(self) -> float:
        return time.monotonic()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(seconds, 0.0))


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """A clock that moves only when slept on, waited on or :meth:`advance` d; thread-safe.

    ``sleeps`` and ``waits`` record every requested duration, in order.
    """

    def __init__(self, start_s: float = 1000.0) -> None:
        self._now = start_s
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        self.waits: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def monotonic_ns(self) -> int:
        return round(self.monotonic() * 1e9)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        with self._lock:
            self._now += max(seconds, 0.0)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.waits.append(seconds)
        self.advance(seconds)
        return event.is_set()
