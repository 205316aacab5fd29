"""Adjudicated NCRs read back as labelled training examples (the input of ``dataset from-reviews``).

A reviewer's standing decision on an NCR is the newest signed ``REVIEWED`` or ``SUPERSEDED``
event. ``FALSE_REJECT`` labels the part's image good; ``CONFIRMED_DEFECT`` labels it with the
reviewer's defect code (else the machine's); ``NEEDS_MRB`` is no label yet and is left out. Each
example carries its provenance: the NCR, the reviewer, when, the hash of the signature that binds
the decision, and the model that judged the part, so a training set built from it can name where
every image came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from vinspect.store.canonical import format_utc
from vinspect.store.ncr import ReviewDecision
from vinspect.store.tables import InspectionRecord, NcrRecord, SignatureRecord

__all__ = ["GOOD_LABEL", "AdjudicatedPart", "adjudicated_parts"]

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
            "source": "ncr-review", "ncr_number": self.ncr_number, "ncr_uuid": self.ncr_uuid,
            "label": self.label, "decision": self.decision, "reviewer": self.reviewer,
            "reviewed_at": format_utc(self.reviewed_at), "signature_sha256": self.signature_sha256,
            "image_sha256": self.image_sha256, "station_id": self.station_id, "part_id": self.part_id,
            "model": {"name": self.model_name, "version": self.model_version, "sha256": self.model_sha256},
        }


def adjudicated_parts(*, session: Session, since: datetime | None = None,
                      until: datetime | None = None) -> Iterator[AdjudicatedPart]:
    """Every NCR with a standing review that gives a label and an image, in NCR order.

    ``since``/``until`` bound the review's time (UTC).
    """
    stmt = (select(NcrRecord, InspectionRecord)
            .outerjoin(InspectionRecord, InspectionRecord.inspection_id == NcrRecord.inspection_id)
            .options(selectinload(NcrRecord.events), selectinload(NcrRecord.evidence))
            .order_by(NcrRecord.ncr_seq))
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
            ncr_number=ncr.ncr_number, ncr_uuid=ncr.ncr_uuid, label=label, decision=decision,
            reviewer=signature.printed_name if signature is not None else review.actor, reviewed_at=at,
            signature_sha256=None if signature is None else signature.record_sha256,
            image_sha256=images[0].sha256, station_id=ncr.station_id,
            part_id=None if inspection is None else inspection.part_id,
            model_name=None if inspection is None else inspection.model_name,
            model_version=None if inspection is None else inspection.model_version,
            model_sha256=None if inspection is None else inspection.model_sha256,
        )
