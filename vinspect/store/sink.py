"""StoreSink: the pipeline's record sink for the database (satisfies ``InspectionSink``).

PASS inspections (and REVIEW ones when no NCR is opened for them) are batched and written by
``batch_size`` or after ``flush_interval_s``; a crash may lose an unflushed batch, which is why
nothing acknowledges a plain inspection row. Every FAIL (and REVIEW, unless disabled) opens an
NCR: the frame image and the anomaly heatmap are written to the evidence store first (fsynced),
then one transaction commits any pending plain rows, the inspection row, the NCR, its evidence
references, event, audit links and outbox row. ``write`` returns only after that commit, so an
NCR id the caller sees is durable. ``write`` raises StoreError when it cannot be committed: the
part was already rejected by then, and the runner's sink boundary raises the alarm / line stop.

``write_batch`` is the group commit the record thread uses when inspections have queued up: the
evidence of every reject in the run is encoded and written in parallel, then one transaction
holds all their rows and NCRs, one ``COMMIT`` (one WAL fsync) makes them durable together, and
only then is each NCR acknowledged. If that transaction fails, nothing of it is visible and each
inspection is retried alone, so one bad record costs only itself.

Records are idempotent: an inspection already stored (same inspection id, e.g. delivered again
after a crash) is not stored twice, and a reject whose NCR exists is acknowledged with that NCR
instead of opening a second one. A part number stored under another inspection id is refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from vinspect.crashpoints import crash_point
from vinspect.imaging import encode_png
from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceBlob, EvidenceStore, PendingEvidence, StoredEvidence, heatmap_png
from vinspect.store.ncr import NcrDefaults, NcrRef
from vinspect.store.pass_evidence import record_pass_evidence
from vinspect.store.repository import add_inspections, finish_ncrs, recorded_ncrs, split_recorded, start_ncrs
from vinspect.store.review_queries import is_sampled
from vinspect.types import Inspection, Verdict

__all__ = ["StoreSink"]

_T = TypeVar("_T")


class StoreSink:
    """Writes inspections and opens NCRs; one instance per process, thread-safe."""

    name = "store"

    def __init__(
        self,
        engine: Engine,
        evidence: EvidenceStore,
        *,
        defaults: NcrDefaults,
        ncr_on_review: bool = True,
        batch_size: int = 200,
        flush_interval_s: float = 1.0,
        on_ncr: Callable[[NcrRef], None] | None = None,
        pass_sample_rate: float = 0.0,
    ) -> None:
        """Args:
        engine: from ``make_engine`` (schema already upgraded).
        evidence: where images and heatmaps go.
        defaults: product and plant identification for new NCRs.
        ncr_on_review: open NCRs for REVIEW verdicts too.
        batch_size: plain inspection rows per write transaction.
        flush_interval_s: longest a plain row waits for its batch (checked on each write).
        on_ncr: called with each NCR after its commit (acknowledgement hook).
        pass_sample_rate: the blind PASS-audit sample rate of the reviewer app; the image and
            heatmap of each sampled PASS part are kept (0 keeps none).
        """
        self._engine = engine
        self._evidence = evidence
        self._defaults = defaults
        self._ncr_on_review = ncr_on_review
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._on_ncr = on_ncr
        self._pass_sample_rate = pass_sample_rate
        self._pass_files: dict[str, list[StoredEvidence]] = {}  # sampled PASS parts' evidence, until committed
        self._pending: list[Inspection] = []
        self._oldest = 0.0
        self._lock = threading.Lock()

    def _opens_ncr(self, inspection: Inspection) -> bool:
        verdict = inspection.decision.verdict
        return verdict is Verdict.FAIL or (verdict is Verdict.REVIEW and self._ncr_on_review)

    def _keep_pass_evidence(self, inspections: Sequence[Inspection]) -> None:
        """Store (durably) the evidence of PASS parts drawn into the blind audit sample."""
        if self._pass_sample_rate <= 0.0:
            return
        for inspection in inspections:
            if (
                inspection.decision.verdict is Verdict.PASS
                and inspection.inspection_id not in self._pass_files
                and is_sampled(inspection.inspection_id, self._pass_sample_rate)
            ):
                blobs = self._evidence_blobs(inspection)
                if blobs:
                    self._pass_files[inspection.inspection_id] = self._evidence.put_all(blobs)

    def _record_pass_evidence(self, inspections: Sequence[Inspection], *, session: Session, now: datetime) -> list[str]:
        kept = {
            i.inspection_id: self._pass_files[i.inspection_id]
            for i in inspections
            if i.inspection_id in self._pass_files
        }
        if kept:
            record_pass_evidence(kept, session=session, station_id=inspections[0].station_id, now=now)
        return list(kept)

    def write(self, inspection: Inspection) -> None:
        """Record one inspection; for a reject, return only once its NCR is committed."""
        with self._lock:
            self._keep_pass_evidence([inspection])
        if self._opens_ncr(inspection):
            ref = self.open(inspection)
            if self._on_ncr is not None:
                self._on_ncr(ref)
            return
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(inspection)
            due = len(self._pending) >= self._batch_size or time.monotonic() - self._oldest >= self._flush_interval_s
        if due:
            self.flush()

    def write_batch(self, inspections: Sequence[Inspection]) -> list[Exception | None]:
        """Record a run of inspections with one commit; per inspection, the error that lost it or None.

        NCRs are acknowledged (``on_ncr``) only after the group's commit. A failed group commit is
        retried inspection by inspection (nothing of it was committed), so a bad record fails alone.
        """
        if not any(self._opens_ncr(i) for i in inspections):
            return [self._guarded(self.write, i) for i in inspections]
        try:
            refs = self._commit(inspections)
        except Exception:  # rolled back as a whole: retry each alone so that only a bad one fails
            return [self._guarded(self.write, i) for i in inspections]
        results: list[Exception | None] = []
        for inspection in inspections:
            ref = refs.get(inspection.inspection_id)
            results.append(None if ref is None or self._on_ncr is None else self._guarded(self._on_ncr, ref))
        return results

    @staticmethod
    def _guarded(call: Callable[[_T], object], arg: _T) -> Exception | None:
        try:
            call(arg)
        except Exception as exc:
            return exc
        return None

    def open(self, inspection: Inspection) -> NcrRef:
        """Store evidence and commit the NCR (with any pending plain rows); returns its identity."""
        return self._commit([inspection])[inspection.inspection_id]

    def _commit(self, inspections: Sequence[Inspection]) -> dict[str, NcrRef]:
        """One transaction: pending and given inspection rows, an NCR per reject; refs by inspection id.

        Images are encoded, written and fsynced in helper threads while the statements run; the
        commit waits until every file is durable.
        """
        rejects = list({i.inspection_id: i for i in inspections if self._opens_ncr(i)}.values())
        with ExitStack() as stack:
            files: list[PendingEvidence] = [
                stack.enter_context(self._evidence.submit(partial(self._evidence_blobs, i))) for i in rejects
            ]
            if self._engine.dialect.name == "postgresql":
                # A shared store: every station's writer waits for the plant-wide writer lock this
                # transaction takes, so hold it for the statements only, not for the evidence fsyncs.
                for stored in files:
                    stored.wait()
            stack.enter_context(self._lock)
            self._keep_pass_evidence(inspections)
            pending, self._pending = self._pending, []
            try:
                with session_scope(self._engine) as session:
                    now = datetime.now(UTC)
                    rows, recorded = split_recorded([*pending, *inspections], session=session)
                    retried = [i.inspection_id for i in rejects if i.inspection_id in recorded]
                    known = recorded_ncrs(retried, session=session) if retried else {}
                    fresh = [(i, f) for i, f in zip(rejects, files, strict=True) if i.inspection_id not in known]
                    add_inspections(
                        rows, session=session, now=now, checked=True, part_number=self._defaults.part_number
                    )
                    kept = self._record_pass_evidence(rows, session=session, now=now)
                    drafts = start_ncrs(
                        [i for i, _ in fresh],
                        session=session,
                        defaults=self._defaults,
                        now=now,
                        inspections_recorded=True,
                    )
                    made = finish_ncrs(drafts, session=session, evidence=[f.stored for _, f in fresh])
                    for stored in files:
                        stored.wait()  # evidence durable before the NCRs that reference it commit
                    crash_point("store.before_commit")
                crash_point("store.after_commit")
                for inspection_id in kept:
                    self._pass_files.pop(inspection_id, None)
                return known | {i.inspection_id: ref for (i, _), ref in zip(fresh, made, strict=True)}
            except BaseException:
                self._pending = pending + self._pending
                raise

    def flush(self) -> int:
        """Commit pending plain inspection rows now; returns how many were written."""
        with self._lock:
            pending, self._pending = self._pending, []
            if not pending:
                return 0
            try:
                with session_scope(self._engine) as session:
                    now = datetime.now(UTC)
                    rows, _ = split_recorded(pending, session=session)
                    written = add_inspections(
                        rows, session=session, now=now, checked=True, part_number=self._defaults.part_number
                    )
                    kept = self._record_pass_evidence(rows, session=session, now=now)
                for inspection_id in kept:
                    self._pass_files.pop(inspection_id, None)
                return written
            except BaseException:
                self._pending = pending + self._pending
                raise

    def close(self) -> None:
        """Flush what is pending."""
        self.flush()

    def __enter__(self) -> StoreSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _evidence_blobs(self, inspection: Inspection) -> list[EvidenceBlob]:
        blobs: list[EvidenceBlob] = []
        frame = inspection.frame
        if frame is not None:
            captured = frame.captured_at if frame.captured_at.tzinfo else frame.captured_at.replace(tzinfo=UTC)
            blobs.append(
                EvidenceBlob(
                    data=encode_png(frame.image, pixel_format=frame.pixel_format),
                    kind="image",
                    captured_at=captured,
                    camera_settings={"pixel_format": frame.pixel_format},
                )
            )
        prediction = inspection.prediction
        if prediction is not None and prediction.anomaly_map is not None:
            # Fixed colour scale from the fail threshold (heatmaps of different parts compare),
            # at the image's resolution, defect regions outlined.
            size_hw = (int(frame.image.shape[0]), int(frame.image.shape[1])) if frame is not None else None
            blobs.append(
                EvidenceBlob(
                    kind="heatmap",
                    data=heatmap_png(
                        prediction.anomaly_map,
                        fail_at=inspection.decision.fail_at,
                        size_hw=size_hw,
                        boxes=[region.box_xyxy for region in prediction.regions],
                    ),
                )
            )
        return blobs
