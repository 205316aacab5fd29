"""Alarms as data arrives: the reviewer app rolls up and evaluates every station's closed subgroups each minute.

**Where, and why here.** The line's verdict path (camera -> model -> accept/reject) must not wait
for statistics, and a plant has several stations but one reviewer app over one database: so the
app, not each station, runs one background thread that every ``interval_s`` seconds

1. rolls the new inspection rows into the hourly counts (:func:`vinspect.store.analytics_rollup.roll_up`),
2. evaluates Nelson rules 1-4 on every station's frozen p-chart since its baseline, over the
   subgroups closed by then (the hours before the current one, or whole part subgroups), and the
   score drift (:func:`vinspect.quality.alarms.check_alarms`), so an alarm is raised within about a
   minute of its subgroup closing.

A violation is stored once per rule per run (the ``quality_alarms`` unique key: a second app
process or a repeated pass finds it there and raises nothing), logged at WARNING, shown on the
dashboard and counted on ``/metrics``, and published on MQTT when a broker is configured (the same
:class:`~vinspect.quality.alarms.MqttAlarmPublisher` as ``vinspect spc check``). A failing pass
(database away) is logged and counted and the next pass tries again; it never stops the app.
``vinspect spc check`` remains for a plant without a running reviewer app.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vinspect.quality.alarms import Publish, check_alarms
from vinspect.store.analytics_rollup import roll_up
from vinspect.store.review_queries import StoreHandle

__all__ = ["AlarmEvaluator", "EvaluatorState"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class EvaluatorState:
    """What ``/metrics`` and the dashboard show about the evaluator."""

    interval_s: float
    passes: int = 0
    failures: int = 0
    alarms_raised: int = 0
    last_pass_at: datetime | None = None
    last_error: str | None = None
    last_duration_s: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class AlarmEvaluator:
    """A daemon thread: :meth:`run_once` now and then every ``interval_s`` seconds until :meth:`stop`."""

    def __init__(
        self,
        store: StoreHandle,
        *,
        interval_s: float = 60.0,
        validation_scores: Callable[[], dict[str, Sequence[float]]] | None = None,
        publish: Publish | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"alarm evaluation interval {interval_s} s: must be > 0")
        self._store = store
        self._scores = validation_scores or dict
        self._publish = publish
        self._clock = clock or (lambda: datetime.now(UTC))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = EvaluatorState(interval_s=interval_s)

    def run_once(self) -> int:
        """One pass: roll up, evaluate, raise; returns the number of new alarms (0 after a failure)."""
        start = time.monotonic()
        try:
            roll_up(self._store.engine)
            new = check_alarms(self._store, now=self._clock(), validation_scores=self._scores(), publish=self._publish)
        except Exception as exc:  # boundary: a database outage must not end the evaluator (or the app)
            logger.error("quality alarm evaluation failed: %s", exc)
            with self.state.lock:
                self.state.failures += 1
                self.state.last_error = str(exc)[:500]
            return 0
        with self.state.lock:
            self.state.passes += 1
            self.state.alarms_raised += len(new)
            self.state.last_pass_at = self._clock()
            self.state.last_error = None
            self.state.last_duration_s = time.monotonic() - start
        return len(new)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.state.interval_s)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="vinspect-alarm-evaluator", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
