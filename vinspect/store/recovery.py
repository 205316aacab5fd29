"""What a station restarts from after a crash: the store's committed records, not a side file.

:func:`recover_station` reads, for one station, the books (a recount of its committed
inspection rows), the next part sequence (one past the highest committed, so no part number is
ever reused) and the last NCR number. :func:`records_after` re-derives JSONL record lines for
committed rows a convenience copy lacks (a kill between the store's commit and the file's line).
Both use the (station, part seq) index of migration 0003.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vinspect.store.canonical import format_utc
from vinspect.store.repository import count_books
from vinspect.store.tables import InspectionRecord, NcrRecord
from vinspect.types import Books

__all__ = ["StationRecovery", "records_after", "recover_station"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StationRecovery:
    """A station's state as committed to the store."""

    station_id: str
    books: Books
    next_part_seq: int
    last_ncr_number: str | None


def recover_station(station_id: str, *, session: Session) -> StationRecovery:
    """The committed books, next part sequence and last NCR number of one station."""
    top = session.scalar(select(func.max(InspectionRecord.part_seq)).where(InspectionRecord.station_id == station_id))
    last_ncr = session.scalar(select(NcrRecord.ncr_number).where(NcrRecord.station_id == station_id)
                              .order_by(NcrRecord.ncr_seq.desc()).limit(1))
    return StationRecovery(station_id=station_id, books=count_books(session=session, station_id=station_id),
                           next_part_seq=0 if top is None else int(top) + 1, last_ncr_number=last_ncr)


def _record(row: InspectionRecord) -> dict[str, Any]:
    """A JSONL record line (schema 1) rebuilt from a stored row; fields the store does not keep are null."""
    frame = None if row.frame_id is None and row.source_id is None else {
        "source_id": row.source_id, "frame_id": row.frame_id,
        "captured_at": None if row.captured_at is None else row.captured_at.isoformat(), "part_id": row.part_id}
    return {
        "schema_version": 1, "inspection_id": row.inspection_id, "station_id": row.station_id,
        "part_seq": row.part_seq, "frame": frame, "verdict": row.verdict, "reasons": json.loads(row.reasons),
        "policy_id": row.policy_id, "fail_at": row.fail_at, "review_at": row.review_at, "score": row.score,
        "defect_code": None, "model_sha256": row.model_sha256,
        "model": None if row.model_name is None else {"name": row.model_name, "version": row.model_version},
        "timings_ns": None, "error": row.error, "recovered_from": "store", "recorded_at": format_utc(row.recorded_at),
    }


def records_after(station_id: str, *, part_seq: int, session: Session) -> list[dict[str, Any]]:
    """JSONL records of the station's committed inspections with a part sequence >= ``part_seq``."""
    rows = session.scalars(select(InspectionRecord).where(InspectionRecord.station_id == station_id,
                                                          InspectionRecord.part_seq >= part_seq)
                           .order_by(InspectionRecord.part_seq))
    return [_record(row) for row in rows]
