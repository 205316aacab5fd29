"""Shadow mode: a candidate model judges live parts beside the active one, without signalling.

The shadow is a record sink (:class:`~vinspect.pipeline.record.InspectionSink`): it receives each
inspection on the record thread, *after* the line was signalled, so it cannot delay the active
verdict by construction. It hands the frame to its own worker thread through a small bounded
queue; when the worker is still busy (the queue is full) the part is **dropped and counted**
(``dropped_busy``) instead of queuing work that would compete with later verdicts for the CPU.
A part judged later than the station's deadline after capture is counted ``late`` (it is still
compared: lateness only says the shadow could not have run on the line in time).

Statistics (parts judged, agreements, each kind of disagreement, shadow latency percentiles) go
to ``<out>/stats.json`` (replaced atomically, at most once a second and at close); every
disagreement is appended to ``<out>/disagreements.jsonl`` with the frame saved as
``<out>/images/<inspection id>.png``, a review set for the people who will sign the promotion.
The promotion's ``min_shadow_parts`` criterion reads ``stats.json``.

A store-backed station passes a :class:`ShadowRecorder` instead
(:class:`vinspect.store.shadow_records.StoreShadowRecorder`): the statistics and disagreements
(frames in the evidence store) then go to the store, where a plant's central reviewer app sees
every station's shadows, and nothing is written under ``out``. A recorder failure is logged and
counted (``record_errors``), never raised: the shadow must not reach the line.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np

from vinspect.errors import ConfigError
from vinspect.files import write_atomically
from vinspect.imaging import encode_png
from vinspect.models.runtime import Bundle
from vinspect.pipeline.decide import DecisionPolicy
from vinspect.pipeline.judge import judge_image
from vinspect.types import Inspection, Verdict

__all__ = ["STATS_FILE", "ShadowRecorder", "ShadowSink", "read_shadow_stats"]

logger = logging.getLogger(__name__)
STATS_FILE = "stats.json"
_WRITE_EVERY_S = 1.0


def read_shadow_stats(out: Path) -> dict[str, Any] | None:
    """The statistics a shadow run left in ``out`` (None when there are none)."""
    try:
        doc = json.loads((out / STATS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{out / STATS_FILE}: unreadable shadow statistics ({exc})") from exc
    return doc if isinstance(doc, dict) else None


class ShadowRecorder(Protocol):
    """Where a store-backed station's shadow keeps its statistics and disagreements."""

    def stats(self, doc: dict[str, Any]) -> None: ...

    def disagreement(self, candidate: str, row: dict[str, Any], png: bytes | None) -> None: ...

    def close(self) -> None: ...


class ShadowSink:
    """Judge every inspected frame with ``bundle`` off the line; see the module doc."""

    name = "shadow"

    def __init__(
        self,
        bundle: Bundle,
        *,
        policy: DecisionPolicy,
        out: Path,
        deadline_ms: float | None,
        queue_size: int = 2,
        active_model: str | None = None,
        recorder: ShadowRecorder | None = None,
    ) -> None:
        self._bundle, self._policy, self._out, self._recorder = bundle, policy, out, recorder
        self._deadline_s = None if deadline_ms is None else deadline_ms / 1e3
        self._queue: queue.Queue[Inspection | None] = queue.Queue(maxsize=max(1, queue_size))
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=2000)
        m = bundle.manifest
        self._stats: dict[str, Any] = {
            "candidate": {"name": m.name, "version": m.version, "sha256": m.sha256},
            "active_model": active_model,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "parts": 0,
            "agree": 0,
            "disagree": {},
            "dropped_busy": 0,
            "no_frame": 0,
            "late": 0,
            "errors": 0,
        }
        if recorder is not None:
            self._stats["record_errors"] = 0
        self._written_at = 0.0
        if recorder is None:
            (out / "images").mkdir(parents=True, exist_ok=True)
        self._worker = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ sink side (record thread)

    def write(self, inspection: Inspection) -> None:
        """Offer a part to the shadow; never blocks (a busy shadow drops and counts it)."""
        if inspection.frame is None:
            with self._lock:
                self._stats["no_frame"] += 1
            return
        try:
            self._queue.put_nowait(inspection)
        except queue.Full:
            with self._lock:
                self._stats["dropped_busy"] += 1

    # ------------------------------------------------------------------ worker side

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._judge(item)
            except Exception:  # a shadow failure must never reach the line; it is counted and logged
                logger.exception("shadow judgement failed")
                with self._lock:
                    self._stats["errors"] += 1
            self._maybe_write()

    def _judge(self, inspection: Inspection) -> None:
        frame = inspection.frame
        assert frame is not None
        judged = judge_image(frame.image, bundle=self._bundle, policy=self._policy, pixel_format=frame.pixel_format)
        lag_s = (datetime.now(UTC) - frame.captured_at).total_seconds()
        active, shadow = inspection.decision.verdict, judged.decision.verdict
        with self._lock:
            s = self._stats
            s["parts"] += 1
            self._latencies.append(judged.latency_ms)
            if self._deadline_s is not None and lag_s > self._deadline_s:
                s["late"] += 1
            if active is shadow:
                s["agree"] += 1
                return
            kind = f"{active.value}->{shadow.value}"
            s["disagree"][kind] = s["disagree"].get(kind, 0) + 1
        self._record_disagreement(
            inspection, judged.decision.verdict, judged.prediction.score if judged.prediction is not None else None
        )

    def _record_disagreement(self, inspection: Inspection, verdict: Verdict, score: float | None) -> None:
        frame = inspection.frame
        assert frame is not None
        name = f"{inspection.inspection_id}.png"
        png: bytes | None = None
        try:
            png = encode_png(frame.image, pixel_format=frame.pixel_format)
            if self._recorder is None:
                (self._out / "images" / name).write_bytes(png)
        except (OSError, ValueError):  # the row is still recorded; the statistics matter more than the picture
            logger.warning("shadow: cannot write %s", name, exc_info=True)
            png = None
        active_score = inspection.prediction.score if inspection.prediction is not None else None
        row = {
            "inspection_id": inspection.inspection_id,
            "station_id": inspection.station_id,
            "part_seq": inspection.part_seq,
            "part_id": frame.part_id,
            "captured_at": frame.captured_at.isoformat(),
            "active": {
                "verdict": inspection.decision.verdict.value,
                "score": active_score,
                "reasons": list(inspection.decision.reasons),
            },
            "shadow": {"verdict": verdict.value, "score": score},
            "image": f"images/{name}",
            "active_model": self._stats["active_model"],
        }
        if self._recorder is not None:
            m = self._bundle.manifest
            try:
                self._recorder.disagreement(f"{m.name}@{m.version}", row, png)
            except Exception:  # counted and logged; never reaches the line
                logger.exception("shadow: cannot record the disagreement about %s", inspection.inspection_id)
                with self._lock:
                    self._stats["record_errors"] += 1
            return
        with (self._out / "disagreements.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ statistics

    def stats(self) -> dict[str, Any]:
        """A snapshot of the statistics (latency percentiles over the last 2,000 parts)."""
        with self._lock:
            doc: dict[str, Any] = json.loads(json.dumps(self._stats))
            lat = np.array(self._latencies, dtype=np.float64)
        doc["agreement"] = doc["agree"] / doc["parts"] if doc["parts"] else None
        doc["latency_ms"] = (
            {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}
            if lat.size
            else {"p50": None, "p99": None}
        )
        doc["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        return doc

    def _maybe_write(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written_at < _WRITE_EVERY_S:
            return
        self._written_at = now
        if self._recorder is not None:
            try:
                self._recorder.stats(self.stats())
            except Exception:  # counted and logged; never reaches the line
                logger.exception("shadow: cannot record the statistics")
                with self._lock:
                    self._stats["record_errors"] += 1
            return
        write_atomically(
            self._out / STATS_FILE, json.dumps(self.stats(), indent=2, sort_keys=True) + "\n", durable=False
        )

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Let the worker finish what is queued, then write the final statistics."""
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=30)
        self._maybe_write(force=True)
        if self._recorder is not None:
            self._recorder.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
