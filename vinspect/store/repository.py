"""Store operations: keyword-only ``session`` functions, each inside the caller's transaction.

Writers never UPDATE or DELETE a quality record: an inspection, an NCR, its evidence references,
its events and signatures are inserted once, each covered by an audit link carrying the
record's content hash. Every write starts by taking the writer lock, so NCR numbers and audit
sequence numbers are gap-free. Nothing here commits: use :func:`vinspect.store.db.session_scope`
(an NCR is visible to others, and may be acknowledged, only after that scope commits).

Lifecycle steps (review, disposition, signatures, corrections) live in
:mod:`vinspect.store.lifecycle`, users in :mod:`vinspect.store.users`; both are re-exported here.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from vinspect.errors import StoreError
from vinspect.store.audit import AuditEntry, append_audit, append_audits
from vinspect.store.canonical import canonical_json
from vinspect.store.content import event_sha256, inspection_batch_sha256, ncr_sha256
from vinspect.store.db import lock_writers
from vinspect.store.document import build_document, documents_for, iter_documents, select_ncrs, status_subquery
from vinspect.store.evidence import StoredEvidence
from vinspect.store.lifecycle import (
    add_correction,
    add_disposition,
    add_links,
    add_review,
    add_signature,
    claim_ncr,
    close_ncr,
    record_containment,
    supersede_review,
    verify_signature,
    void_duplicate,
)
from vinspect.store.ncr import SCHEMA_VERSION, NcrDefaults, NcrFilter, NcrRef, NcrStatus
from vinspect.store.outbox import enqueue_many
from vinspect.store.tables import Base, EvidenceRecord, InspectionRecord, NcrEvent, NcrRecord, table_of
from vinspect.store.users import create_user, get_user, list_users, set_user_active
from vinspect.types import Books, Inspection, Verdict, books_key

__all__ = [
    "add_correction",
    "add_disposition",
    "add_inspection",
    "add_inspections",
    "add_links",
    "add_review",
    "add_signature",
    "claim_ncr",
    "close_ncr",
    "count_books",
    "count_ncrs",
    "create_user",
    "finish_ncrs",
    "get_ncr",
    "get_ncr_status",
    "get_user",
    "list_ncrs",
    "list_users",
    "open_ncr",
    "record_containment",
    "recorded_ncrs",
    "resolve_ncr",
    "set_user_active",
    "split_recorded",
    "start_ncrs",
    "supersede_review",
    "verify_signature",
    "void_duplicate",
]

Values = dict[str, Any]  # column values of a row about to be (or just) inserted


def _json(value: object) -> str:
    return canonical_json(value).decode("utf-8")


def _utc(value: datetime) -> datetime:
    # A naive time from a producer is taken as UTC rather than losing the record on the line.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _inspection_values(inspection: Inspection, *, now: datetime, part_number: str | None = None) -> dict[str, Any]:
    prediction, frame, decision, model = inspection.prediction, inspection.frame, inspection.decision, inspection.model
    return {
        "inspection_id": inspection.inspection_id,
        "station_id": inspection.station_id,
        "part_seq": inspection.part_seq,
        "verdict": str(decision.verdict),
        "reasons": _json(list(decision.reasons)),
        "policy_id": decision.policy_id,
        "fail_at": decision.fail_at,
        "review_at": decision.review_at,
        "score": _finite(prediction.score) if prediction is not None else None,
        "model_name": model.name if model else None,
        "model_version": model.version if model else None,
        "model_sha256": model.sha256 if model else None,
        "source_id": frame.source_id if frame else None,
        "frame_id": frame.frame_id if frame else None,
        "captured_at": _utc(frame.captured_at) if frame else None,
        "part_id": frame.part_id if frame else None,
        "error": inspection.error,
        "recorded_at": now,
        "part_number": part_number,
        "config_sha256": inspection.config_sha256,
    }


def _insert(model: type[Base], rows: list[dict[str, Any]], *, session: Session) -> None:
    """Core INSERT on the session's connection; each row dict gets its new ``id`` (hashes include it)."""
    table = table_of(model)
    stmt = table.insert().returning(table.c.id, sort_by_parameter_order=True)
    ids = session.connection().execute(stmt, rows).scalars().all()
    for row, row_id in zip(rows, ids, strict=True):
        row["id"] = row_id


def split_recorded(inspections: Sequence[Inspection], *, session: Session) -> tuple[list[Inspection], set[str]]:
    """(inspections not stored yet, ids of those already stored): a record delivered twice is stored once.

    One indexed query per station on (station, part seq), the record's unique key.

    Raises:
        StoreError: a (station, part sequence) is already stored, or given twice, under another
            inspection id: a part number was reused, and two parts must not share one record key.
    """
    fresh: dict[str, Inspection] = {}
    seqs: dict[str, dict[int, str]] = {}
    for inspection in inspections:
        if inspection.inspection_id in fresh:
            continue
        taken = seqs.setdefault(inspection.station_id, {})
        other = taken.setdefault(inspection.part_seq, inspection.inspection_id)
        if other != inspection.inspection_id:
            raise StoreError(
                f"station {inspection.station_id} part seq {inspection.part_seq}: inspections "
                f"{other} and {inspection.inspection_id} share one part number"
            )
        fresh[inspection.inspection_id] = inspection
    recorded: set[str] = set()
    for station_id, taken in seqs.items():
        rows = session.execute(
            select(InspectionRecord.part_seq, InspectionRecord.inspection_id).where(
                InspectionRecord.station_id == station_id, InspectionRecord.part_seq.in_(list(taken))
            )
        )
        for part_seq, inspection_id in rows:
            if inspection_id != taken[part_seq]:
                raise StoreError(
                    f"station {station_id} part seq {part_seq} is already recorded as inspection "
                    f"{inspection_id}, not {taken[part_seq]}: a part number was reused"
                )
            recorded.add(inspection_id)
            del fresh[inspection_id]
    return list(fresh.values()), recorded


def recorded_ncrs(inspection_ids: Sequence[str], *, session: Session) -> dict[str, NcrRef]:
    """The NCRs already opened for these inspections, by inspection id (a retried record's NCR)."""
    if not inspection_ids:
        return {}
    rows = session.execute(
        select(NcrRecord.inspection_id, NcrRecord.ncr_uuid, NcrRecord.ncr_number).where(
            NcrRecord.inspection_id.in_(list(inspection_ids))
        )
    )
    return {str(iid): NcrRef(ncr_uuid=uid, ncr_number=number, revision=1) for iid, uid, number in rows}


def add_inspections(
    inspections: Sequence[Inspection],
    *,
    session: Session,
    now: datetime | None = None,
    checked: bool = False,
    part_number: str | None = None,
) -> int:
    """Insert a batch of inspection rows covered by one audit link; returns the row count.

    Idempotent: inspections already stored (same station and part seq, same inspection id) are
    skipped, and a part number stored under another inspection id is refused (StoreError), see
    :func:`split_recorded`; ``checked`` says the caller already dropped them with it.
    ``part_number``: the station's product part number, stored on every row (KPIs per part number).
    """
    if not inspections:
        return 0
    lock_writers(session)
    if not checked:
        inspections = split_recorded(inspections, session=session)[0]
    if not inspections:
        return 0
    now = now or datetime.now(UTC)
    rows = [_inspection_values(i, now=now, part_number=part_number) for i in inspections]
    _insert(InspectionRecord, rows, session=session)
    stations = sorted({r["station_id"] for r in rows})
    append_audit(
        AuditEntry(
            actor=f"system:{stations[0]}" if len(stations) == 1 else "system:store",
            action="inspection.batch",
            entity="inspections",
            entity_id=f"{rows[0]['id']}-{rows[-1]['id']}",
            new_value=str(len(rows)),
            record_sha256=inspection_batch_sha256(rows),
        ),
        session=session,
        at=now,
    )
    return len(rows)


def add_inspection(inspection: Inspection, *, session: Session, now: datetime | None = None) -> None:
    """Insert one inspection row (a batch of one)."""
    add_inspections([inspection], session=session, now=now)


def _inference(inspection: Inspection) -> dict[str, Any]:
    prediction, decision, model = inspection.prediction, inspection.decision, inspection.model
    regions = (
        []
        if prediction is None
        else [
            {"label": r.label, "score": _finite(r.score), "box_xyxy": list(r.box_xyxy), "area_px": r.area_px}
            for r in prediction.regions
        ]
    )
    return {
        "model_name": model.name if model else None,
        "model_version": model.version if model else None,
        "model_sha256": model.sha256 if model else None,
        "score": _finite(prediction.score) if prediction is not None else None,
        "threshold": decision.fail_at,
        "review_threshold": decision.review_at,
        "regions": regions,
        "inference_id": inspection.inspection_id,
        "recipe_id": decision.policy_id,
        "reasons": list(decision.reasons),
        "error": inspection.error,
    }


def _describe(inspection: Inspection) -> tuple[str, str, str]:
    """(defect_code, machine_verdict, description) of a rejected inspection: a fault
    (:attr:`~vinspect.types.Decision.fault`) is an ``ERROR_REJECT`` coded by its reason."""
    decision, prediction = inspection.decision, inspection.prediction
    fault = decision.fault
    if fault is not None:
        code, verdict = fault, "ERROR_REJECT"
    else:
        code = (prediction.defect_code if prediction is not None else None) or "anomaly"
        verdict = "REJECT"
    score = _finite(prediction.score) if prediction is not None else None
    shown = "none" if score is None else f"{score:.4f}"
    text = (
        f"{decision.verdict} by {inspection.station_id} (part seq {inspection.part_seq}): "
        f"reasons {', '.join(decision.reasons) or 'none'}; score {shown}, fail_at {decision.fail_at}, "
        f"review_at {decision.review_at}"
    )
    return code, verdict, text + (f"; error: {inspection.error}" if inspection.error else "")


def _next_ncr_seq(session: Session) -> int:
    current = session.connection().execute(select(func.max(NcrRecord.ncr_seq))).scalar()
    return 1 if current is None else int(current) + 1


def _ncr_values(inspection: Inspection, *, defaults: NcrDefaults, seq: int, now: datetime) -> dict[str, Any]:
    frame = inspection.frame
    detected_at = _utc(frame.captured_at) if frame is not None else now
    code, verdict, text = _describe(inspection)
    containment = {
        "action": "SEGREGATED",
        "reject_actuation_confirmed": False,
        "location": defaults.containment_location,
        "suspect_window": None,
    }
    return {
        "ncr_uuid": str(uuid.uuid4()),
        "ncr_seq": seq,
        "ncr_number": f"NCR-{detected_at.year:04d}-{seq:06d}",
        "schema_version": SCHEMA_VERSION,
        "detected_at": detected_at,
        "created_at": now,
        "site_id": defaults.site_id,
        "line_id": defaults.line_id,
        "station_id": inspection.station_id,
        "camera_id": frame.source_id if frame is not None else "unknown",
        "detection_point": "IN_PROCESS",
        "detected_by_kind": "SYSTEM",
        "detected_by_id": f"system:{inspection.station_id}",
        "part_number": defaults.part_number,
        "part_revision": defaults.part_revision,
        "part_name": defaults.part_name,
        "serial_number": frame.part_id if frame is not None else None,
        "lot_number": defaults.lot_number,
        "work_order": defaults.work_order,
        "operation": defaults.operation,
        "quantity_affected": defaults.quantity_affected,
        "uom": defaults.uom,
        "requirement_ref": defaults.requirement_ref,
        "defect_code": code,
        "severity": defaults.severity,
        "description": text,
        "machine_verdict": verdict,
        "inference": _json(_inference(inspection)),
        "containment": _json(containment),
        "related_ncr_uuids": "[]",
        "inspection_id": inspection.inspection_id,
    }


def _evidence_values(ncr_id: int, evidence: Sequence[StoredEvidence]) -> list[dict[str, Any]]:
    return [
        {
            "ncr_id": ncr_id,
            "ordinal": i,
            "kind": e.kind,
            "sha256": e.sha256,
            "media_type": e.media_type,
            "uri": e.uri,
            "size_bytes": e.size_bytes,
            "captured_at": _utc(e.captured_at) if e.captured_at else None,
            "camera_settings": _json(dict(e.camera_settings)),
        }
        for i, e in enumerate(evidence)
    ]


def open_ncr(
    inspection: Inspection,
    *,
    session: Session,
    defaults: NcrDefaults,
    evidence: Sequence[StoredEvidence] = (),
    now: datetime | None = None,
    inspection_recorded: bool = False,
) -> NcrRef:
    """Open the NCR of a rejected part with its inspection row, evidence, audit and outbox rows.

    Args:
        inspection: a FAIL or REVIEW inspection (PASS is refused).
        session: the write transaction; the NCR exists for others once it commits.
        defaults: product and plant identification.
        evidence: files already stored durably (see :class:`~vinspect.store.evidence.EvidenceStore`).
        now: server UTC time; now when omitted.
        inspection_recorded: the caller inserted the inspection row in this transaction already.
    """
    drafts = start_ncrs(
        [inspection], session=session, defaults=defaults, now=now, inspections_recorded=inspection_recorded
    )
    return finish_ncrs(drafts, session=session, evidence=[evidence])[0]


@dataclass(frozen=True, slots=True)
class NcrDraft:
    """An NCR inserted in the open transaction, its evidence not attached yet (see finish_ncrs)."""

    station_id: str
    ncr: Values
    event: Values


def start_ncrs(
    inspections: Sequence[Inspection],
    *,
    session: Session,
    defaults: NcrDefaults,
    now: datetime | None = None,
    inspections_recorded: bool = False,
) -> list[NcrDraft]:
    """First half of opening NCRs: their rows and OPENED events (one INSERT each), while evidence is written.

    Several NCRs opened in one transaction (the sink's group commit) take consecutive numbers.
    """
    for inspection in inspections:
        if inspection.decision.verdict is Verdict.PASS:
            raise StoreError(f"inspection {inspection.inspection_id} passed: no NCR for a PASS")
    if not inspections:
        return []
    lock_writers(session)
    now = now or datetime.now(UTC)
    if not inspections_recorded:
        ids = [i.inspection_id for i in inspections]
        known = set(
            session.scalars(select(InspectionRecord.inspection_id).where(InspectionRecord.inspection_id.in_(ids)))
        )
        add_inspections(
            [i for i in inspections if i.inspection_id not in known],
            session=session,
            now=now,
            part_number=defaults.part_number,
        )
    first = _next_ncr_seq(session)
    ncrs = [
        _ncr_values(inspection, defaults=defaults, seq=first + k, now=now) for k, inspection in enumerate(inspections)
    ]
    _insert(NcrRecord, ncrs, session=session)
    events = [
        {
            "ncr_id": ncr["id"],
            "revision": 1,
            "kind": "OPENED",
            "from_status": None,
            "to_status": str(NcrStatus.OPEN),
            "at": now,
            "actor": f"system:{inspection.station_id}",
            "reason": None,
            "payload": "{}",
            "signature_id": None,
        }
        for ncr, inspection in zip(ncrs, inspections, strict=True)
    ]
    _insert(NcrEvent, events, session=session)
    return [
        NcrDraft(station_id=inspection.station_id, ncr=ncr, event=event)
        for inspection, ncr, event in zip(inspections, ncrs, events, strict=True)
    ]


def finish_ncrs(
    drafts: Sequence[NcrDraft], *, session: Session, evidence: Sequence[Sequence[StoredEvidence]]
) -> list[NcrRef]:
    """Second half: evidence references, two audit links per NCR and the outbox rows, in bulk.

    Args:
        drafts: from :func:`start_ncrs`.
        evidence: per draft, in the same order, its durably stored files.
    """
    if len(evidence) != len(drafts):
        raise ValueError(f"{len(drafts)} NCR drafts but {len(evidence)} evidence lists")
    if not drafts:
        return []
    per_ncr = [_evidence_values(d.ncr["id"], files) for d, files in zip(drafts, evidence, strict=True)]
    flat = [row for rows in per_ncr for row in rows]
    if flat:
        _insert(EvidenceRecord, flat, session=session)
    for at, group in groupby(zip(drafts, per_ncr, strict=True), key=lambda pair: pair[0].event["at"]):
        entries: list[AuditEntry] = []
        documents: list[Values] = []
        for draft, rows in group:
            ncr, event = draft.ncr, draft.event
            digest = ncr_sha256(ncr, rows)
            entries.append(
                AuditEntry(
                    actor=event["actor"],
                    action="ncr.open",
                    entity="ncr",
                    entity_id=ncr["ncr_uuid"],
                    new_value=ncr["ncr_number"],
                    reason=f"machine {ncr['machine_verdict']}",
                    source=draft.station_id,
                    record_sha256=digest,
                )
            )
            entries.append(
                AuditEntry(
                    actor=event["actor"],
                    action="ncr.opened",
                    entity="ncr_event",
                    entity_id=str(event["id"]),
                    field="status",
                    new_value=event["to_status"],
                    source=draft.station_id,
                    record_sha256=event_sha256(event),
                )
            )
            documents.append(_opened_document(ncr, evidence=rows, event=event, content_sha256=digest))
        append_audits(entries, session=session, at=at)
        enqueue_many(documents, session=session, now=at)
    return [NcrRef(ncr_uuid=d.ncr["ncr_uuid"], ncr_number=d.ncr["ncr_number"], revision=1) for d in drafts]


def _opened_document(ncr: Values, *, evidence: list[Values], event: Values, content_sha256: str) -> Values:
    """The revision-1 document, built from the inserted values (attribute views, no ORM rows)."""
    view = SimpleNamespace(**ncr, evidence=[SimpleNamespace(**e) for e in evidence], events=[SimpleNamespace(**event)])
    return build_document(cast(NcrRecord, view), signatures=[], content_sha256=content_sha256)


def get_ncr(ncr_uuid: str, *, session: Session, export_state: bool = True) -> dict[str, Any] | None:
    """The canonical document of one NCR, or None."""
    stmt = (
        select(NcrRecord)
        .where(NcrRecord.ncr_uuid == ncr_uuid)
        .options(selectinload(NcrRecord.evidence), selectinload(NcrRecord.events))
    )
    ncr = session.scalar(stmt)
    if ncr is None:
        return None
    return next(iter(documents_for([ncr], session=session, export_state=export_state)))


def resolve_ncr(ref: str, *, session: Session) -> str | None:
    """The uuid of an NCR given its uuid or its number (``NCR-2026-000123``)."""
    column = NcrRecord.ncr_number if ref.upper().startswith("NCR-") else NcrRecord.ncr_uuid
    return session.scalar(select(NcrRecord.ncr_uuid).where(column == ref))


def list_ncrs(
    filters: NcrFilter,
    *,
    session: Session,
    limit: int | None = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Canonical documents of matching NCRs in NCR-number order (a page of them)."""
    return list(iter_documents(filters, session=session, limit=limit, offset=offset, export_state=True))


def count_ncrs(filters: NcrFilter, *, session: Session) -> int:
    """How many NCRs match."""
    return int(session.scalar(select(func.count()).select_from(select_ncrs(filters).subquery())) or 0)


def get_ncr_status(ncr_uuid: str, *, session: Session) -> NcrStatus | None:
    """Current status (from the latest event), or None for an unknown NCR."""
    status = status_subquery()
    value = session.scalar(
        select(status.c.status).join(NcrRecord, NcrRecord.id == status.c.ncr_id).where(NcrRecord.ncr_uuid == ncr_uuid)
    )
    return None if value is None else NcrStatus(value)


def count_books(
    *,
    session: Session,
    station_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Books:
    """Books recovered from committed inspection rows (``recorded_at`` in [since, until))."""
    stmt = select(InspectionRecord.verdict, InspectionRecord.reasons, func.count()).group_by(
        InspectionRecord.verdict, InspectionRecord.reasons
    )
    if station_id is not None:
        stmt = stmt.where(InspectionRecord.station_id == station_id)
    if since is not None:
        stmt = stmt.where(InspectionRecord.recorded_at >= since)
    if until is not None:
        stmt = stmt.where(InspectionRecord.recorded_at < until)
    counts: Counter[str] = Counter()
    triggers = 0
    for verdict, reasons, n in session.execute(stmt):
        triggers += n
        counts[books_key(Verdict(verdict), tuple(json.loads(reasons)))] += n
    return Books.from_keys(triggers=triggers, counts=counts)
