"""SupervisedSource: device loss detection and reconnect with capped backoff, observable.

Wraps a ``connect(ledger) -> FrameSource`` factory. Device loss is a CameraError from ``read``
(InvalidHandle, producer errors) or, when ``silence_limit_ms`` is set, no frame for that long.
On loss the source enters FAILED, returns a ``disconnected`` fault for every read until it is
back, and a worker thread closes the dead source (which can block for seconds on some
producers) and reconnects: backoff ``initial_backoff_ms``, times ``multiplier`` per failed
attempt, capped at ``max_backoff_ms``. Each attempt re-runs ``connect``, so the configuration is
re-applied. The new source receives the same :class:`FrameLedger`: frame ids keep increasing and
counters keep adding up. States (``FAILED -> OPENING -> STREAMING | FAILED``) go to listeners.

The first open is not retried: a start-up failure (missing feature, wrong serial) raises from
``__enter__`` so the station stays PREOPERATIONAL. ``read`` never blocks longer than
``timeout_s`` while reconnecting. ``clock`` times the backoff waits and the silence limit
(a :class:`~vinspect.camera.clock.ManualClock` in tests). Producers that recover only by a
process restart (pitfall 13), and fetches that never return, need the outer watchdog of
:class:`~vinspect.camera.process.ProcessSource` around this.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from vinspect.camera.base import FrameSource, SourceState
from vinspect.camera.clock import SYSTEM_CLOCK, Clock
from vinspect.camera.config import ReconnectConfig
from vinspect.camera.stats import FrameLedger, Lifecycle, SourceCounters, StateListener, utc_now
from vinspect.errors import CameraError, StateError
from vinspect.types import Frame, FrameFault

__all__ = ["Connect", "SupervisedSource"]

logger = logging.getLogger(__name__)

Connect = Callable[[FrameLedger], FrameSource]
"""Builds a new, not yet entered source that counts into the given ledger."""

_JOIN_TIMEOUT_S = 10.0


class SupervisedSource:
    """A :class:`~vinspect.camera.base.FrameSource` that survives device loss."""

    def __init__(
        self,
        connect: Connect,
        *,
        source_id: str,
        policy: ReconnectConfig,
        listeners: tuple[StateListener, ...] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.source_id = source_id
        self._clock = clock
        self._connect = connect
        self._policy = policy
        self._ledger = FrameLedger()
        self._lifecycle = Lifecycle(source_id, listeners=listeners)
        self._inner: FrameSource | None = None
        self._recovered = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._last_frame = 0.0

    @property
    def state(self) -> SourceState:
        """STREAMING, or FAILED / OPENING while reconnecting."""
        return self._lifecycle.state

    @property
    def lifecycle(self) -> Lifecycle:
        """State, history and :meth:`~vinspect.camera.stats.Lifecycle.subscribe`."""
        return self._lifecycle

    @property
    def stats(self) -> SourceCounters:
        """Counters over every connection (``reconnects``, ``disconnects`` included)."""
        return self._ledger.counters

    @property
    def inner(self) -> FrameSource | None:
        """The connected source, None while reconnecting (for fault injection and diagnostics)."""
        return self._inner

    def __enter__(self) -> Self:
        self._lifecycle.enter(SourceState.OPENING)
        self._stop.clear()
        try:
            inner = self._connect(self._ledger)
            inner.__enter__()
        except BaseException as exc:
            self._lifecycle.enter(SourceState.FAILED, reason=repr(exc))
            self._lifecycle.enter(SourceState.CLOSED)
            raise
        self._install(inner)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        worker = self._worker
        if worker is not None:
            worker.join(_JOIN_TIMEOUT_S)
            if worker.is_alive():
                logger.error("reconnect worker did not stop", extra={"source_id": self.source_id})
        inner, self._inner = self._inner, None
        self._recovered.clear()
        if inner is not None:
            self._close_quietly(inner)
        self._lifecycle.enter(SourceState.CLOSED)

    def read(self, *, timeout_s: float) -> Frame | FrameFault | None:
        """The inner source's next item; a ``disconnected`` fault while the device is lost."""
        deadline = time.monotonic() + timeout_s
        if not self._recovered.wait(timeout_s):
            return self._disconnected("reconnecting")
        inner = self._inner
        if inner is None:  # closed between the wait and here
            return self._disconnected("closed")
        try:
            item = inner.read(timeout_s=max(deadline - time.monotonic(), 0.0))
        except CameraError as exc:
            self._lose(f"{exc}")
            return self._disconnected(str(exc))
        if isinstance(item, Frame):
            self._last_frame = self._clock.monotonic()
        elif item is not None and item.reason == "timeout" and self._silent():
            self._lose(f"no frame for {self._policy.silence_limit_ms} ms")
            return self._disconnected(f"no frame for {self._policy.silence_limit_ms} ms")
        return item

    def _silent(self) -> bool:
        limit = self._policy.silence_limit_ms
        return limit is not None and (self._clock.monotonic() - self._last_frame) * 1000 >= limit

    def _disconnected(self, detail: str) -> FrameFault:
        return FrameFault(source_id=self.source_id, frame_id=None, reason="disconnected", at=utc_now(), detail=detail)

    def _install(self, inner: FrameSource) -> None:
        self._inner = inner
        self._last_frame = self._clock.monotonic()
        self._lifecycle.enter(SourceState.STREAMING)
        self._recovered.set()

    def _lose(self, reason: str) -> None:
        logger.warning("device lost: %s", reason, extra={"source_id": self.source_id})
        self._recovered.clear()
        dead, self._inner = self._inner, None
        self._ledger.counters.add("disconnects")
        self._lifecycle.enter(SourceState.FAILED, reason=reason)
        self._worker = threading.Thread(
            target=self._reconnect, args=(dead,), daemon=True, name=f"reconnect-{self.source_id}"
        )
        self._worker.start()

    def _reconnect(self, dead: FrameSource | None) -> None:
        if dead is not None:
            self._close_quietly(dead)
        backoff = self._policy.schedule()
        attempt = 0
        while not self._clock.wait(self._stop, backoff.next()):
            attempt += 1
            try:
                self._lifecycle.enter(SourceState.OPENING, reason=f"reconnect attempt {attempt}")
                inner = self._connect(self._ledger)
                inner.__enter__()
            except Exception as exc:  # reconnect boundary: log, count the attempt, back off, retry
                logger.warning("reconnect attempt %d failed: %r", attempt, exc, extra={"source_id": self.source_id})
                self._enter_quietly(SourceState.FAILED, reason=repr(exc))
                continue
            if self._stop.is_set():
                self._close_quietly(inner)
                return
            self._ledger.counters.add("reconnects")
            self._install(inner)
            logger.info("reconnected after %d attempt(s)", attempt, extra={"source_id": self.source_id})
            return

    def _enter_quietly(self, state: SourceState, *, reason: str) -> None:
        try:
            self._lifecycle.enter(state, reason=reason)
        except StateError:  # closed meanwhile: CLOSED is final for this worker
            logger.debug("state change to %s skipped", state, extra={"source_id": self.source_id})

    def _close_quietly(self, source: FrameSource) -> None:
        try:
            source.__exit__(None, None, None)
        except Exception:  # teardown boundary: a dead device may fail to close; count and go on
            logger.exception("closing the lost source failed", extra={"source_id": self.source_id})
