"""Adjudicated NCRs read back as labelled training examples (the input of ``dataset from-reviews``).

A reviewer's standing decision on an NCR is the newest signed ``REVIEWED`` or ``SUPERSEDED``
event. ``FALSE_REJECT`` labels the part's image good; ``CONFIRMED_DEFECT`` labels it with the
reviewer's defect code (else the machine's); ``NEEDS_MRB`` is no label yet and is left out. Each
example carries its provenance: the NCR, the reviewer, when, the hash of the signature that binds
the decision, and the model that judged the part, so a training set built from it can name where
every image came from.

Audited PASS parts count too (:func:`audited_pass_parts`): a PASS part drawn into the blind audit
sample whose image the station kept (:mod:`vinspect.store.pass_evidence`) and that an auditor
answered (the ``sample.review`` audit row). ``CONFORMS`` labels it good; ``ESCAPE`` (a defect the
machine let through) labels it with the auditor's defect code. Its provenance names the
inspection, the auditor, when, the audit row (sequence number and chained hash) and the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from vinspect.store.canonical import format_utc
from vinspect.store.ncr import ReviewDecision
from vinspect.store.pass_evidence import pass_evidence_of
from vinspect.store.tables import AuditRecord, InspectionRecord, NcrRecord, SignatureRecord, UserRecord

__all__ = ["GOOD_LABEL", "AdjudicatedPart", "AuditedPass", "adjudicated_parts", "audited_pass_parts"]

GOOD_LABEL = "good"
_REVIEW_KINDS = ("REVIEWED", "SUPERSEDED")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdjudicatedPart:
    """One reviewed NCR with the label its standing review gives the part's image."""

    ncr_number: str
    ncr_uuid: str
    label: str
    decision: str
    reviewer: str
    reviewed_at: datetime
    signature_sha256: str | None
    image_sha256: str
    station_id: str
    part_id: str | None
    model_name: str | None
    model_version: str | None
    model_sha256: str | None

    def provenance(self) -> dict[str, object]:
        """The provenance file's content (JSON-ready)."""
        return {
            "source": "ncr-review",
            "ncr_number": self.ncr_number,
            "ncr_uuid": self.ncr_uuid,
            "label": self.label,
            "decision": self.decision,
            "reviewer": self.reviewer,
            "reviewed_at": format_utc(self.reviewed_at),
            "signature_sha256": self.signature_sha256,
            "image_sha256": self.image_sha256,
            "station_id": self.station_id,
            "part_id": self.part_id,
            "model": {"name": self.model_name, "version": self.model_version, "sha256": self.model_sha256},
        }


def adjudicated_parts(
    *, session: Session, since: datetime | None = None, until: datetime | None = None
) -> Iterator[AdjudicatedPart]:
    """Every NCR with a standing review that gives a label and an image, in NCR order.

    ``since``/``until`` bound the review's time (UTC).
    """
    stmt = (
        select(NcrRecord, InspectionRecord)
        .outerjoin(InspectionRecord, InspectionRecord.inspection_id == NcrRecord.inspection_id)
        .options(selectinload(NcrRecord.events), selectinload(NcrRecord.evidence))
        .order_by(NcrRecord.ncr_seq)
    )
    for ncr, inspection in session.execute(stmt):
        reviews = [e for e in ncr.events if e.kind in _REVIEW_KINDS]
        images = [e for e in ncr.evidence if e.kind == "image"]
        if not reviews or not images:
            continue
        review = reviews[-1]
        at = review.at
        if (since is not None and at < since) or (until is not None and at >= until):
            continue
        payload = json.loads(review.payload)
        decision = str(payload.get("decision", ""))
        if decision == ReviewDecision.FALSE_REJECT:
            label = GOOD_LABEL
        elif decision == ReviewDecision.CONFIRMED_DEFECT:
            label = str(payload.get("defect_code") or ncr.defect_code)
        else:
            continue
        signature = None if review.signature_id is None else session.get(SignatureRecord, review.signature_id)
        yield AdjudicatedPart(
            ncr_number=ncr.ncr_number,
            ncr_uuid=ncr.ncr_uuid,
            label=label,
            decision=decision,
            reviewer=signature.printed_name if signature is not None else review.actor,
            reviewed_at=at,
            signature_sha256=None if signature is None else signature.record_sha256,
            image_sha256=images[0].sha256,
            station_id=ncr.station_id,
            part_id=None if inspection is None else inspection.part_id,
            model_name=None if inspection is None else inspection.model_name,
            model_version=None if inspection is None else inspection.model_version,
            model_sha256=None if inspection is None else inspection.model_sha256,
        )


_DEFECT_CODE = re.compile(r"\[defect_code=([A-Za-z0-9_.-]+)\]\s*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditedPass:
    """One audited PASS sample with the label the auditor's answer gives its image."""

    inspection_id: str
    label: str
    decision: str  # CONFORMS or ESCAPE
    auditor: str
    audited_at: datetime
    audit_seq: int
    audit_row_hash: str | None
    image_sha256: str
    station_id: str
    part_id: str | None
    model_name: str | None
    model_version: str | None
    model_sha256: str | None

    def provenance(self) -> dict[str, object]:
        """The provenance file's content (JSON-ready)."""
        return {
            "source": "pass-audit",
            "inspection_id": self.inspection_id,
            "label": self.label,
            "decision": self.decision,
            "auditor": self.auditor,
            "audited_at": format_utc(self.audited_at),
            "audit_seq": self.audit_seq,
            "audit_row_hash": self.audit_row_hash,
            "image_sha256": self.image_sha256,
            "station_id": self.station_id,
            "part_id": self.part_id,
            "model": {"name": self.model_name, "version": self.model_version, "sha256": self.model_sha256},
        }


def _auditor(session: Session, actor: str) -> str:
    if actor.startswith("user:") and actor[5:].isdigit():
        user = session.get(UserRecord, int(actor[5:]))
        if user is not None:
            return user.display_name
    return actor


def audited_pass_parts(
    *, session: Session, since: datetime | None = None, until: datetime | None = None
) -> Iterator[AuditedPass]:
    """Every audited PASS sample whose image was kept, in audit order (the first answer of each).

    ``since``/``until`` bound the audit's time (UTC). A sample without a kept image (drawn before
    the station kept PASS-sample images, or at another sample rate) gives no training example.
    """
    stmt = (
        select(AuditRecord, InspectionRecord)
        .join(InspectionRecord, InspectionRecord.inspection_id == AuditRecord.entity_id)
        .where(AuditRecord.action == "sample.review", AuditRecord.entity == "inspection")
        .order_by(AuditRecord.seq)
    )
    seen: set[str] = set()
    for row, inspection in session.execute(stmt):
        if row.entity_id in seen:
            continue
        seen.add(row.entity_id)
        if (since is not None and row.at < since) or (until is not None and row.at >= until):
            continue
        if row.new_value == "CONFORMS":
            label = GOOD_LABEL
        elif row.new_value == "ESCAPE" and (code := _DEFECT_CODE.search(row.reason or "")) is not None:
            label = code.group(1)
        else:
            continue
        image, _heatmap = pass_evidence_of(row.entity_id, session=session)
        if image is None:
            continue
        yield AuditedPass(
            inspection_id=row.entity_id,
            label=label,
            decision=str(row.new_value),
            auditor=_auditor(session, row.actor),
            audited_at=row.at,
            audit_seq=row.seq,
            audit_row_hash=row.row_hash,
            image_sha256=image,
            station_id=inspection.station_id,
            part_id=inspection.part_id,
            model_name=inspection.model_name,
            model_version=inspection.model_version,
            model_sha256=inspection.model_sha256,
        )
