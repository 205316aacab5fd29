"""What a station restarts from after a crash: the store's committed records, not a side file.

:func:`recover_station` reads, for one station, the books (a recount of its committed
inspection rows), the next part sequence (one past the highest committed, so no part number is
ever reused) and the last NCR number. :func:`records_after` re-derives JSONL record lines for
committed rows a convenience copy lacks (a kill between the store's commit and the file's line).
Both use the (station, part seq) index of migration 0003. :func:`unrecorded_seqs` finds the
numbers a crashed run handed out without a record (they get explicit ``crash`` records, see
:mod:`vinspect.pipeline.part_numbers`), and :func:`record_skip` / :func:`skipped_ranges` keep the
numbers skipped after a power cut in the audit trail, so no gap in a station's numbers is silent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import format_utc
from vinspect.store.repository import count_books
from vinspect.store.tables import AuditRecord, InspectionRecord, NcrRecord
from vinspect.types import Books

__all__ = [
    "SKIP_ACTION",
    "StationRecovery",
    "all_skipped_ranges",
    "next_part_seq",
    "record_skip",
    "records_after",
    "recover_station",
    "skipped_ranges",
    "unrecorded_seqs",
]

SKIP_ACTION, SKIP_ENTITY = "part_seq.skip", "part_seq"


@dataclass(frozen=True, slots=True, kw_only=True)
class StationRecovery:
    """A station's state as committed to the store."""

    station_id: str
    books: Books
    next_part_seq: int
    last_ncr_number: str | None


def recover_station(station_id: str, *, session: Session) -> StationRecovery:
    """The committed books, next part sequence and last NCR number of one station."""
    last_ncr = session.scalar(
        select(NcrRecord.ncr_number)
        .where(NcrRecord.station_id == station_id)
        .order_by(NcrRecord.ncr_seq.desc())
        .limit(1)
    )
    return StationRecovery(
        station_id=station_id,
        books=count_books(session=session, station_id=station_id),
        next_part_seq=next_part_seq(station_id, session=session),
        last_ncr_number=last_ncr,
    )


def _record(row: InspectionRecord) -> dict[str, Any]:
    """A JSONL record line (schema 1) rebuilt from a stored row; fields the store does not keep are null."""
    frame = (
        None
        if row.frame_id is None and row.source_id is None
        else {
            "source_id": row.source_id,
            "frame_id": row.frame_id,
            "captured_at": None if row.captured_at is None else row.captured_at.isoformat(),
            "part_id": row.part_id,
        }
    )
    return {
        "schema_version": 1,
        "inspection_id": row.inspection_id,
        "station_id": row.station_id,
        "part_seq": row.part_seq,
        "frame": frame,
        "verdict": row.verdict,
        "reasons": json.loads(row.reasons),
        "policy_id": row.policy_id,
        "fail_at": row.fail_at,
        "review_at": row.review_at,
        "score": row.score,
        "defect_code": None,
        "model_sha256": row.model_sha256,
        "model": None if row.model_name is None else {"name": row.model_name, "version": row.model_version},
        "timings_ns": None,
        "error": row.error,
        "recovered_from": "store",
        "recorded_at": format_utc(row.recorded_at),
        "config_sha256": row.config_sha256,
    }


def records_after(station_id: str, *, part_seq: int, session: Session) -> list[dict[str, Any]]:
    """JSONL records of the station's committed inspections with a part sequence >= ``part_seq``."""
    rows = session.scalars(
        select(InspectionRecord)
        .where(InspectionRecord.station_id == station_id, InspectionRecord.part_seq >= part_seq)
        .order_by(InspectionRecord.part_seq)
    )
    return [_record(row) for row in rows]


def next_part_seq(station_id: str, *, session: Session) -> int:
    """One past the station's highest committed part sequence (0 when it has none): one index lookup."""
    top = session.scalar(select(func.max(InspectionRecord.part_seq)).where(InspectionRecord.station_id == station_id))
    return 0 if top is None else int(top) + 1


def unrecorded_seqs(station_id: str, *, first: int, end: int, session: Session) -> list[int]:
    """Part numbers ``first`` .. ``end - 1`` of the station with no stored inspection, ascending.

    One walk of the (station, part seq) index in the database: each stored number with its
    successor (``LEAD``), keeping only those followed by a gap, so a run of a million parts with a
    few missing numbers costs no million-row transfer.
    """
    if end <= first:
        return []
    seq = InspectionRecord.part_seq
    span = (
        select(seq.label("seq"), func.lead(seq).over(order_by=seq).label("nxt"))
        .where(InspectionRecord.station_id == station_id, seq >= first, seq < end)
        .subquery()
    )
    low = session.scalar(
        select(func.min(InspectionRecord.part_seq)).where(
            InspectionRecord.station_id == station_id, seq >= first, seq < end
        )
    )
    if low is None:
        return list(range(first, end))
    missing = list(range(first, int(low)))
    for at, nxt in session.execute(
        select(span.c.seq, span.c.nxt)
        .where((span.c.nxt.is_(None)) | (span.c.nxt > span.c.seq + 1))
        .order_by(span.c.seq)
    ):
        missing.extend(range(int(at) + 1, end if nxt is None else int(nxt)))
    return missing


def record_skip(station_id: str, *, first: int, end: int, reason: str, session: Session) -> None:
    """Put numbers ``first`` .. ``end - 1`` on the audit trail as skipped (never given to a part again)."""
    append_audit(
        AuditEntry(
            actor=f"system:{station_id}",
            action=SKIP_ACTION,
            entity=SKIP_ENTITY,
            entity_id=station_id,
            field="part_seq",
            old_value=str(first),
            new_value=str(end - 1),
            reason=reason,
        ),
        session=session,
    )


def skipped_ranges(station_id: str, *, session: Session) -> list[tuple[int, int]]:
    """``(first, last)`` of every skip the audit trail records for the station, oldest first."""
    rows = session.execute(
        select(AuditRecord.old_value, AuditRecord.new_value)
        .where(
            AuditRecord.action == SKIP_ACTION, AuditRecord.entity == SKIP_ENTITY, AuditRecord.entity_id == station_id
        )
        .order_by(AuditRecord.seq)
    )
    return [(int(a or 0), int(b or 0)) for a, b in rows]


def all_skipped_ranges(*, session: Session) -> dict[str, list[tuple[int, int]]]:
    """Every station's recorded skips, ``(first, last)`` oldest first (for ``audit verify``)."""
    rows = session.execute(
        select(AuditRecord.entity_id, AuditRecord.old_value, AuditRecord.new_value)
        .where(AuditRecord.action == SKIP_ACTION, AuditRecord.entity == SKIP_ENTITY)
        .order_by(AuditRecord.seq)
    )
    found: dict[str, list[tuple[int, int]]] = {}
    for station_id, first, last in rows:
        found.setdefault(station_id, []).append((int(first or 0), int(last or 0)))
    return found
