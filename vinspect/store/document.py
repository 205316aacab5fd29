"""The canonical NCR document (schema ``ncr-v1``): original fields plus what the events derive.

One function builds it, from the original row, its evidence, events and signatures, so the CLI
export, the webhook payload and the web app show the same thing: the original as created, the
current status/review/disposition derived from the latest events, and every correction with
who, when and why (the original value stays legible next to it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql import Select

from vinspect.store.canonical import format_utc
from vinspect.store.capa import capas_for_ncrs
from vinspect.store.content import ncr_sha256
from vinspect.store.ncr import LINK_FIELDS, SCHEMA_VERSION, NcrFilter
from vinspect.store.tables import NcrEvent, NcrRecord, OutboxRecord, SignatureRecord

__all__ = ["build_document", "documents_for", "iter_documents", "select_ncrs", "status_subquery"]

Document = dict[str, Any]


def _t(value: Any) -> str | None:
    return None if value is None else format_utc(value)


def _header(ncr: NcrRecord) -> Document:
    return {
        "schema_version": ncr.schema_version,
        "ncr_uuid": ncr.ncr_uuid,
        "ncr_number": ncr.ncr_number,
        "detected_at": _t(ncr.detected_at),
        "created_at": _t(ncr.created_at),
        "site_id": ncr.site_id,
        "line_id": ncr.line_id,
        "station_id": ncr.station_id,
        "camera_id": ncr.camera_id,
        "detection_point": ncr.detection_point,
        "detected_by": {"kind": ncr.detected_by_kind, "id": ncr.detected_by_id},
        "part_number": ncr.part_number,
        "part_revision": ncr.part_revision,
        "part_name": ncr.part_name,
        "serial_number": ncr.serial_number,
        "lot_number": ncr.lot_number,
        "work_order": ncr.work_order,
        "operation": ncr.operation,
        "quantity_affected": ncr.quantity_affected,
        "uom": ncr.uom,
        "requirement_ref": ncr.requirement_ref,
        "defect_code": ncr.defect_code,
        "severity": ncr.severity,
        "description": ncr.description,
        "machine_verdict": ncr.machine_verdict,
        "inference": json.loads(ncr.inference),
        "related_ncr_uuids": json.loads(ncr.related_ncr_uuids),
        "evidence": [
            {
                "kind": e.kind,
                "uri": e.uri,
                "sha256": e.sha256,
                "media_type": e.media_type,
                "size_bytes": e.size_bytes,
                "captured_at": _t(e.captured_at),
                "camera_settings": json.loads(e.camera_settings),
            }
            for e in ncr.evidence
        ],
    }


def _event_view(event: NcrEvent) -> Document:
    return {
        "revision": event.revision,
        "kind": event.kind,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "at": _t(event.at),
        "actor": event.actor,
        "reason": event.reason,
        "signature_id": event.signature_id,
    }


def _apply_events(doc: Document, events: Sequence[NcrEvent]) -> None:
    containment = json.loads(doc.pop("_containment"))
    links: dict[str, str | None] = dict.fromkeys(sorted(LINK_FIELDS))
    review: Document | None = None
    disposition: Document | None = None
    corrections: list[Document] = []
    for event in events:
        payload = json.loads(event.payload)
        if event.kind == "CONTAINED":
            containment.update(payload)
        elif event.kind in ("REVIEWED", "SUPERSEDED"):  # a signed supersede replaces the standing review
            review = {
                **payload,
                "reviewed_at": _t(event.at),
                "reviewer": event.actor,
                "reason": event.reason,
                "signature_id": event.signature_id,
            }
        elif event.kind == "DISPOSITIONED":
            disposition = {**payload, "date": _t(event.at), "signature_id": event.signature_id}
        elif event.kind == "CLOSED" and disposition is not None:
            disposition.update(payload)
        elif event.kind == "LINKED":
            links.update(payload)
        elif event.kind == "CORRECTED":
            corrections.append(
                {
                    **payload,
                    "at": _t(event.at),
                    "actor": event.actor,
                    "reason": event.reason,
                    "signature_id": event.signature_id,
                }
            )
    latest = events[-1]
    doc.update(links)
    doc.update(
        {
            "status": latest.to_status,
            "revision": latest.revision,
            "containment": containment,
            "review": review,
            "disposition": disposition,
            "corrections": corrections,
            "history": [_event_view(e) for e in events],
        }
    )


def _signature_view(sig: SignatureRecord) -> Document:
    return {
        "id": sig.id,
        "signer_user_id": sig.signer_user_id,
        "printed_name": sig.printed_name,
        "meaning": sig.meaning,
        "signed_at": _t(sig.signed_at),
        "record_sha256": sig.record_sha256,
        "auth_method": sig.auth_method,
    }


def build_document(
    ncr: NcrRecord,
    *,
    signatures: Sequence[SignatureRecord],
    export_state: Sequence[OutboxRecord] | None = None,
    content_sha256: str | None = None,
    capas: Sequence[Mapping[str, Any]] = (),
) -> Document:
    """The canonical JSON object of one NCR (evidence and events must be loaded).

    Args:
        ncr: the original row with ``evidence`` and ``events`` loaded.
        signatures: the NCR's signature rows, in id order.
        export_state: outbox rows to report as ``export_state``; None leaves the field out
            (webhook payloads carry no delivery state).
        content_sha256: the original's content hash when the caller already computed it.
        capas: the CAPAs linked to the NCR (``capa.capas_for_ncrs``), listed as ``capas``.
    """
    doc = _header(ncr)
    doc["schema_version"] = SCHEMA_VERSION  # the document's shape; the row keeps the version it was created under
    doc["_containment"] = ncr.containment
    _apply_events(doc, ncr.events)
    doc["capas"] = [dict(c) for c in capas]
    doc["signatures"] = [_signature_view(s) for s in signatures]
    doc["content_sha256"] = content_sha256 or ncr_sha256(ncr, ncr.evidence)
    if export_state is not None:
        doc["export_state"] = [
            {
                "target": o.target,
                "idempotency_key": o.idempotency_key,
                "revision": o.revision,
                "status": o.state,
                "attempts": o.attempts,
                "exported_at": _t(o.delivered_at),
                "payload_sha256": o.payload_sha256,
            }
            for o in export_state
        ]
    return doc


def status_subquery() -> Any:
    """(ncr_id, status) of every NCR, from its latest event."""
    latest = select(NcrEvent.ncr_id, func.max(NcrEvent.revision).label("revision")).group_by(NcrEvent.ncr_id).subquery()
    return (
        select(NcrEvent.ncr_id.label("ncr_id"), NcrEvent.to_status.label("status"))
        .join(latest, and_(NcrEvent.ncr_id == latest.c.ncr_id, NcrEvent.revision == latest.c.revision))
        .subquery()
    )


def select_ncrs(filters: NcrFilter) -> Select[NcrRecord]:
    """NCRs matching ``filters`` in NCR-number order."""
    stmt = select(NcrRecord).order_by(NcrRecord.ncr_seq)
    if filters.since is not None:
        stmt = stmt.where(NcrRecord.detected_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(NcrRecord.detected_at < filters.until)
    if filters.station_id is not None:
        stmt = stmt.where(NcrRecord.station_id == filters.station_id)
    if filters.site_id is not None:
        stmt = stmt.where(NcrRecord.site_id == filters.site_id)
    if filters.line_id is not None:
        stmt = stmt.where(NcrRecord.line_id == filters.line_id)
    if filters.defect_code is not None:
        stmt = stmt.where(NcrRecord.defect_code == filters.defect_code)
    if filters.status is not None:
        status = status_subquery()
        stmt = stmt.join(status, status.c.ncr_id == NcrRecord.id).where(status.c.status == str(filters.status))
    return stmt


def _grouped(rows: Sequence[Any], key: str) -> Mapping[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(getattr(row, key), []).append(row)
    return grouped


def iter_documents(
    filters: NcrFilter,
    *,
    session: Session,
    export_state: bool = False,
    chunk: int = 500,
    limit: int | None = None,
    offset: int = 0,
) -> Iterator[Document]:
    """Stream the documents of matching NCRs, ``chunk`` NCRs per round of queries."""
    stmt = select_ncrs(filters).options(selectinload(NcrRecord.evidence), selectinload(NcrRecord.events))
    stmt = stmt.offset(offset) if offset else stmt
    stmt = stmt.limit(limit) if limit is not None else stmt
    batch: list[NcrRecord] = []
    with closing(session.scalars(stmt.execution_options(yield_per=chunk))) as result:
        for ncr in result:
            batch.append(ncr)
            if len(batch) >= chunk:
                yield from documents_for(batch, session=session, export_state=export_state)
                batch = []
    if batch:
        yield from documents_for(batch, session=session, export_state=export_state)


def documents_for(batch: Sequence[NcrRecord], *, session: Session, export_state: bool) -> Iterator[Document]:
    """Documents of loaded NCR rows (evidence and events loaded); rows are expunged after use."""
    uuids = [n.ncr_uuid for n in batch]
    sigs = _grouped(
        session.scalars(
            select(SignatureRecord)
            .where(SignatureRecord.entity == "ncr", SignatureRecord.entity_id.in_(uuids))
            .order_by(SignatureRecord.id)
        ).all(),
        "entity_id",
    )
    outbox = (
        _grouped(
            session.scalars(
                select(OutboxRecord).where(OutboxRecord.ncr_uuid.in_(uuids)).order_by(OutboxRecord.id)
            ).all(),
            "ncr_uuid",
        )
        if export_state
        else {}
    )
    capas = capas_for_ncrs(uuids, session=session)
    for ncr in batch:
        yield build_document(
            ncr,
            signatures=sigs.get(ncr.ncr_uuid, []),
            export_state=outbox.get(ncr.ncr_uuid, []) if export_state else None,
            capas=capas.get(ncr.ncr_uuid, []),
        )
        for row in (*ncr.evidence, *ncr.events, ncr):
            session.expunge(row)
    for rows in (*sigs.values(), *outbox.values()):
        for row in rows:
            session.expunge(row)
