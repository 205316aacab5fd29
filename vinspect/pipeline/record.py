"""Where inspections go after the line has been told: the InspectionSink protocol and sinks.

Sinks run on the record thread, never on the inspection thread, each isolated from the others
(see :mod:`vinspect.pipeline.runner`). The record thread hands over whatever has queued up since
its last write: a sink that also implements ``write_batch`` (a :class:`BatchSink`, e.g. the NCR
store's group commit) gets the whole run at once, any other sink one inspection at a time
(:func:`deliver`). ``JsonlSink`` appends and flushes one line per
inspection, so a SIGKILL loses at most the line being written. Every process that opens such a
file (the sink on its first write, :func:`recover_books`) first truncates a torn last line
(:func:`truncate_torn_tail`, logged with its count), so a new run never appends to a fragment.
When the station also has a store, the store is the truth and the JSONL file a convenience copy:
records committed to the store but missing from the file are re-derived and appended
(:func:`append_records`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol, Self, runtime_checkable

from vinspect.crashpoints import armed, crash_point
from vinspect.pipeline.books import BookKeeper
from vinspect.types import Books, Decision, Inspection, Verdict

__all__ = [
    "RECORD_BATCH",
    "BatchSink",
    "FlushingSink",
    "InspectionSink",
    "JsonlSink",
    "ListSink",
    "NullSink",
    "append_records",
    "deliver",
    "inspection_to_dict",
    "model_sha256_of",
    "recover_books",
    "take_run",
    "truncate_torn_tail",
]

logger = logging.getLogger(__name__)
RECORD_BATCH = 32  # largest run the record thread hands a sink at once (one group commit)
SCHEMA_VERSION = 1


class InspectionSink(Protocol):
    """Receives every inspection once, after the line was signalled."""

    name: str

    def write(self, inspection: Inspection) -> None:
        """Persist or forward one inspection; raising marks this sink failed for this part."""
        ...


@runtime_checkable
class BatchSink(InspectionSink, Protocol):
    """A sink that can take several inspections at once (one transaction, one fsync)."""

    def write_batch(self, inspections: Sequence[Inspection]) -> list[Exception | None]:
        """Persist every inspection; returns, per inspection and in order, the error that lost it or None.

        Must not raise for a single bad inspection: the others still count as written.
        """
        ...


@runtime_checkable
class FlushingSink(InspectionSink, Protocol):
    """A sink holding work back (e.g. NCRs waiting for their batch) until ``flush``; the station
    flushes it once when it stops."""

    def flush(self) -> object:
        """Finish everything held back; raising counts a sink error."""
        ...


def deliver(sink: InspectionSink, inspections: Sequence[Inspection]) -> list[Exception | None]:
    """Write inspections to one sink; per inspection, the exception that failed it or None.

    Uses ``write_batch`` when the sink has one, else ``write`` per inspection, each isolated.
    """
    if isinstance(sink, BatchSink) and len(inspections) > 1:
        try:
            errors: list[Exception | None] = list(sink.write_batch(inspections))
            if len(errors) != len(inspections):
                raise ValueError(
                    f"sink {sink.name}: write_batch returned {len(errors)} results for {len(inspections)} inspections"
                )
        except Exception as exc:  # a batch sink that broke its contract: the whole run counts as failed
            return [exc] * len(inspections)
        return errors
    results: list[Exception | None] = []
    for inspection in inspections:
        try:
            sink.write(inspection)
        except Exception as exc:
            results.append(exc)
        else:
            results.append(None)
    return results


def take_run(records: queue.Queue[Inspection | None], *, limit: int) -> tuple[list[Inspection], bool]:
    """Block for one record, then take what else is queued, up to ``limit``; True once ``None`` (the end) came."""
    batch: list[Inspection] = []
    item = records.get()
    while item is not None:
        batch.append(item)
        if len(batch) >= limit:
            return batch, False
        try:
            item = records.get_nowait()
        except queue.Empty:
            return batch, False
    return batch, True


class NullSink:
    """Discards everything."""

    name = "null"

    def write(self, inspection: Inspection) -> None:
        return None


@dataclass
class ListSink:
    """The fake sink: keeps every inspection in memory (tests, notebooks)."""

    name: str = "list"
    items: list[Inspection] = field(default_factory=list)

    def write(self, inspection: Inspection) -> None:
        self.items.append(inspection)


def model_sha256_of(inspection: Inspection) -> str | None:
    """The sha256 of the model in force for this part, also when inference produced nothing."""
    return inspection.model.sha256 if inspection.model is not None else None


def _decision_dict(decision: Decision) -> dict[str, Any]:
    return {
        "verdict": str(decision.verdict),
        "reasons": list(decision.reasons),
        "policy_id": decision.policy_id,
        "fail_at": decision.fail_at,
        "review_at": decision.review_at,
    }


def inspection_to_dict(inspection: Inspection) -> dict[str, Any]:
    """A JSON-ready record (no pixels): ids, frame metadata, verdict, score, model, timings."""
    frame, pred, t = inspection.frame, inspection.prediction, inspection.timings
    return {
        "schema_version": SCHEMA_VERSION,
        "inspection_id": inspection.inspection_id,
        "station_id": inspection.station_id,
        "part_seq": inspection.part_seq,
        "frame": None
        if frame is None
        else {
            "source_id": frame.source_id,
            "frame_id": frame.frame_id,
            "origin": frame.origin,
            "captured_at": frame.captured_at.isoformat(),
            "pixel_format": frame.pixel_format,
            "shape": list(frame.image.shape),
            "part_id": frame.part_id,
            "label": frame.label,
        },
        **_decision_dict(inspection.decision),
        "score": None if pred is None or not math.isfinite(pred.score) else pred.score,  # JSON has no NaN
        "defect_code": None if pred is None else pred.defect_code,
        "model_sha256": model_sha256_of(inspection),
        "model": None
        if inspection.model is None
        else {"name": inspection.model.name, "version": inspection.model.version},
        "timings_ns": {
            "triggered": t.triggered_ns,
            "acquired": t.acquired_ns,
            "started": t.started_ns,
            "preprocessed": t.preprocessed_ns,
            "inferred": t.inferred_ns,
            "decided": t.decided_ns,
            "signalled": t.signalled_ns,
        },
        "error": inspection.error,
        "config_sha256": inspection.config_sha256,
    }


class JsonlSink:
    """Appends one JSON line per inspection, unbuffered, before returning (optionally fsynced).

    Writes go straight to the file (no userspace buffer), so a failed write (disk full) leaves
    nothing pending to fail again at close; the next write starts on a fresh line, so a torn
    fragment never merges with a good record.

    Args:
        path: the file; its folder is created. Opened in append mode on first use.
        name: sink name for counters and logs.
        fsync: also ``os.fsync`` every line (durable against power loss, slower).
    """

    def __init__(self, path: Path, *, name: str = "jsonl", fsync: bool = False) -> None:
        self.name = name
        self.path = path
        self._fsync = fsync
        self._fh: BinaryIO | None = None
        self._torn = False
        self._lock = threading.Lock()

    def write(self, inspection: Inspection) -> None:
        line = json.dumps(inspection_to_dict(inspection), separators=(",", ":"), allow_nan=False) + "\n"
        data = line.encode("utf-8")
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                truncate_torn_tail(self.path)
                self._fh = self.path.open("ab", buffering=0)
            if self._torn:
                data = b"\n" + data
            self._torn = True  # until the whole line is down
            view = memoryview(data)
            if armed("jsonl.mid_line"):  # test-only: die with half a line down
                view = view[self._fh.write(view[: len(view) // 2]) or 0 :]
                crash_point("jsonl.mid_line")
            while view:
                written = self._fh.write(view)
                if not written:
                    raise OSError(f"{self.path}: short write")
                view = view[written:]
            self._torn = False
            if self._fsync:
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file (a later write reopens it)."""
        with self._lock:
            if self._fh is not None:
                fh, self._fh = self._fh, None
                fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def truncate_torn_tail(path: Path) -> int:
    """Cut a torn last line (bytes after the last newline) off a JSONL file; returns 0 or 1.

    Only a process that appends to the file may call this (the station at start, its sink on
    first write): a reader would cut a line the writer is still writing.

    A record line is written whole, newline last, so bytes after the last newline are a write
    a kill or power cut interrupted. They are removed (and the removal fsynced) before anyone
    appends, so the next record starts on a line of its own; the count is logged.
    """
    try:
        fh = path.open("r+b")
    except FileNotFoundError:
        return 0
    with fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            chunk = fh.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return 0
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        fh.truncate(end)
        fh.flush()
        os.fsync(fh.fileno())
    logger.warning(
        "truncated 1 torn record line (%d bytes) at the end of %s",
        size - end,
        path,
        extra={"path": str(path), "torn_lines": 1, "bytes": size - end},
    )
    return 1


def append_records(path: Path, records: Sequence[dict[str, Any]], *, fsync: bool = False) -> int:
    """Append whole JSON record lines (e.g. re-derived from the store) after truncating a torn tail."""
    if not records:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    truncate_torn_tail(path)
    data = b"".join(json.dumps(r, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n" for r in records)
    with path.open("ab", buffering=0) as fh:
        fh.write(data)
        if fsync:
            os.fsync(fh.fileno())
    return len(records)


def recover_books(path: Path) -> tuple[Books, int, int]:
    """Recount the books from a JSONL record file, e.g. after a SIGKILL.

    Returns:
        (books, next part_seq, torn lines). A torn last line is truncated first
        (:func:`truncate_torn_tail`); an invalid line inside the file (left by an older version
        that appended to a fragment) is counted and skipped, never guessed. Every complete
        record is one trigger with one disposition, so the recovered books close by construction.
    """
    keeper = BookKeeper()
    next_seq = 0
    if not path.is_file():
        return keeper.books(), next_seq, 0
    torn = truncate_torn_tail(path)
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
                verdict, reasons = Verdict(rec["verdict"]), tuple(rec["reasons"])
                seq = int(rec["part_seq"])
            except (ValueError, KeyError, TypeError):
                torn += 1
                logger.warning("skipping a torn or invalid record line", extra={"path": str(path)})
                continue
            keeper.trigger()
            keeper.settle(verdict=verdict, reasons=reasons)
            next_seq = max(next_seq, seq + 1)
    return keeper.books(), next_seq, torn
