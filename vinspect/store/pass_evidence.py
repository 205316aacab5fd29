"""Evidence of sampled PASS parts: the blind audit is done at the screen and the escape rate is backed by images.

The station's store sink and the reviewer app draw the same deterministic sample
(:func:`vinspect.store.review_queries.is_sampled` at the same rate); for each sampled PASS part the
sink stores the image and heatmap (durable, content-addressed, like NCR evidence) and records
them here in the transaction that stores the inspection row, with one ``sample.evidence`` audit row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import content_sha256
from vinspect.store.evidence import StoredEvidence
from vinspect.store.tables import PassEvidenceRecord

__all__ = ["pass_evidence_of", "record_pass_evidence"]


def record_pass_evidence(
    evidence: Mapping[str, Sequence[StoredEvidence]], *, session: Session, station_id: str, now: datetime
) -> int:
    """Rows for each inspection's stored files (the inspection rows are in this transaction); returns files."""
    count = 0
    for inspection_id, files in sorted(evidence.items()):
        for ordinal, f in enumerate(files):
            session.add(
                PassEvidenceRecord(
                    inspection_id=inspection_id,
                    ordinal=ordinal,
                    kind=f.kind,
                    sha256=f.sha256,
                    media_type=f.media_type,
                    uri=f.uri,
                    size_bytes=f.size_bytes,
                    captured_at=f.captured_at,
                    recorded_at=now,
                )
            )
            count += 1
        append_audit(
            AuditEntry(
                actor=f"system:{station_id}"[:128],
                action="sample.evidence",
                entity="inspection",
                entity_id=inspection_id[:64],
                field="evidence",
                new_value=",".join(f"{f.kind}:{f.sha256}" for f in files),
                record_sha256=content_sha256([f.sha256 for f in files]),
            ),
            session=session,
            at=now,
        )
    session.flush()
    return count


def pass_evidence_of(inspection_id: str, *, session: Session) -> tuple[str | None, str | None]:
    """(image sha256, heatmap sha256) kept for a sampled PASS part."""
    image = heatmap = None
    for kind, sha in session.execute(
        select(PassEvidenceRecord.kind, PassEvidenceRecord.sha256)
        .where(PassEvidenceRecord.inspection_id == inspection_id)
        .order_by(PassEvidenceRecord.ordinal)
    ):
        if kind == "heatmap" and heatmap is None:
            heatmap = sha
        elif kind != "heatmap" and image is None:
            image = sha
    return image, heatmap
