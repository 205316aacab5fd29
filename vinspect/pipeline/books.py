"""Thread-safe counting of dispositions into :class:`vinspect.types.Books`, plus latency windows.

Every trigger gets exactly one disposition: ``triggers == passed + review + failed_defect +
Σ failed_fault[reason]`` once nothing is in flight. The rule is :class:`vinspect.types.Disposition`
(the same one the store and the line signals follow): a part with any fault reason is booked
under that reason (the first one), whatever its verdict, so faults stay visible even when the
policy maps errors to REVIEW; otherwise PASS → passed, REVIEW → review, FAIL → failed_defect.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from vinspect.types import Books, Disposition, Inspection, Verdict, books_key

__all__ = ["STAGES", "BookKeeper", "Extras", "LatencyWindow", "disposition_of"]

STAGES = ("wait", "preprocess", "infer", "decide", "signal")
"""Stage windows (ms): ``wait`` from the frame's acquisition to the inspection thread taking it up
(the hand-over from the source, admission and the queue), then ``preprocess`` (pixel container
only), ``infer`` (the model), ``decide`` (postprocess and decision), ``signal`` (the line output)."""


def disposition_of(*, verdict: Verdict, reasons: tuple[str, ...]) -> str:
    """``pass``, ``review``, ``defect`` or the fault reason the part is booked under."""
    return books_key(verdict, reasons)


class LatencyWindow:
    """The last ``size`` samples (ms) with p50/p99/max; thread-safe."""

    def __init__(self, *, size: int = 4096) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._samples.append(value_ms)

    def summary(self) -> dict[str, float]:
        """``{"n", "p50_ms", "p99_ms", "max_ms"}``; zeros when empty."""
        with self._lock:
            data = np.fromiter(self._samples, dtype=np.float64, count=len(self._samples))
        if data.size == 0:
            return {"n": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        p50, p99 = np.percentile(data, [50, 99])
        return {"n": float(data.size), "p50_ms": float(p50), "p99_ms": float(p99), "max_ms": float(data.max())}


@dataclass
class Extras:
    """Counters beside the books: nothing here is a part disposition."""

    sink_errors: Counter[str] = field(default_factory=Counter)
    signal_errors: int = 0
    record_dropped: int = 0
    source_faults: Counter[str] = field(default_factory=Counter)
    alarms: int = 0
    swaps: int = 0
    swaps_refused: int = 0


class BookKeeper:
    """Counts triggers and dispositions; ``books()`` is a consistent snapshot.

    Args:
        opening: books carried over from a previous run (lifetime counters after a restart).
    """

    def __init__(self, *, opening: Books | None = None) -> None:
        base = opening or Books()
        self._lock = threading.Lock()
        self._triggers = base.triggers
        d = Disposition
        self._counts: Counter[str] = Counter(
            {d.PASS.value: base.passed, d.REVIEW.value: base.review, d.DEFECT.value: base.failed_defect}
        )
        self._counts.update(dict(base.failed_fault))
        self.extras = Extras()
        self.e2e = LatencyWindow()
        self.stages = {name: LatencyWindow(size=1024) for name in STAGES}

    def trigger(self) -> None:
        """One more part entered the station (a frame, or a fault that stands for a part)."""
        with self._lock:
            self._triggers += 1

    def settle(self, *, verdict: Verdict, reasons: tuple[str, ...]) -> str:
        """Book one disposition; returns the key it was booked under."""
        key = disposition_of(verdict=verdict, reasons=reasons)
        with self._lock:
            self._counts[key] += 1
        return key

    def settle_inspection(self, inspection: Inspection) -> str:
        """Book an inspection's disposition and its stage timings (ms)."""
        key = inspection.decision.books_key
        with self._lock:
            self._counts[key] += 1
        t = inspection.timings
        if t.signalled_ns and t.acquired_ns:
            self.e2e.add((t.signalled_ns - t.acquired_ns) / 1e6)
        if t.decided_ns and t.preprocessed_ns:
            start = t.started_ns or t.acquired_ns  # without a start stamp, preprocess keeps the wait
            stamps = (
                t.acquired_ns,
                t.started_ns,
                start,
                t.preprocessed_ns,
                t.inferred_ns,
                t.decided_ns,
                t.signalled_ns,
            )
            bounds = ((0, 1), (2, 3), (3, 4), (4, 5), (5, 6))
            for name, (i, j) in zip(STAGES, bounds, strict=True):
                a, b = stamps[i], stamps[j]
                if a and b >= a:
                    self.stages[name].add((b - a) / 1e6)
        return key

    def count(self, what: str, *, key: str | None = None) -> None:
        """Bump an extra counter (``sink_errors``/``source_faults`` take a key)."""
        with self._lock:
            value = getattr(self.extras, what)
            if isinstance(value, Counter):
                value[key or "?"] += 1
            else:
                setattr(self.extras, what, value + 1)

    def books(self) -> Books:
        """A consistent snapshot of the books."""
        with self._lock:
            counts = dict(self._counts)
            triggers = self._triggers
        return Books.from_keys(triggers=triggers, counts=counts)

    def extras_dict(self) -> dict[str, object]:
        """The extra counters as plain JSON-ready values."""
        with self._lock:
            e = self.extras
            return {
                "sink_errors": dict(e.sink_errors),
                "signal_errors": e.signal_errors,
                "record_dropped": e.record_dropped,
                "source_faults": dict(e.source_faults),
                "alarms": e.alarms,
                "swaps": e.swaps,
                "swaps_refused": e.swaps_refused,
            }
