"""The hourly roll-up behind the dashboard: counts per UTC hour, kept current by an inspection-id watermark.

A year of a plant is about 10 million inspection rows; counting them (with each part's first
inspection) on every dashboard request cannot answer in a second. ``inspection_hourly`` holds the
counts per hour, station, part number, model version, verdict and first fault reason, and
``analytics_watermark`` the highest inspection id already counted.

**Why a watermark on the id, not "closed hours".** ``recorded_at`` is the writing station's
clock, so a row can land in an hour that a clock-based job already considered closed (a station
whose clock lags, a batch committed just after the hour turned). Every writer of ``inspections``
takes the plant-wide writer lock (:func:`vinspect.store.db.lock_writers`) before it inserts, so
ids become visible in increasing order: the committed rows are always a prefix of the ids.
:func:`roll_up` counts the rows with ``last_id < id <= max(id)`` into their hours (whatever hour
that is, late or not) and moves the watermark in the same transaction. Readers
(:func:`vinspect.store.analytics_queries.hourly_rollup`) take whole hours of the window from the
roll-up and read raw rows only for ids above the watermark and for the partial hours at the
window's edges, in one statement (one snapshot), so a roll-up committing meanwhile cannot count
a part twice or lose it. A roll-up that never runs only makes the dashboard slower, never wrong.

**Why not maintained on insert.** Upserting the hour's counters inside the station's record
transaction would make every station's commit contend on the same few counter rows and add work
to the record path; instead the reviewer app rolls up every minute in the background
(:mod:`vinspect.quality.evaluator`), ``vinspect report`` and ``vinspect spc check`` roll up before
reading, and the roll-up runs in chunks of ids so it never holds a lock for long. It does not take
the writer lock at all (it writes no quality record); concurrent roll-ups are serialised by their
own lock (PostgreSQL advisory lock; SQLite's single writer).

The table is derived data, not a quality record: :func:`rebuild` empties it and counts again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, case, delete, exists, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from vinspect.store.db import session_scope
from vinspect.store.hours import hour_expr, hour_key, month_slot
from vinspect.store.judgement_rollup import JudgementPass, clear, roll_up_judgements
from vinspect.store.tables import (
    InspectionHourRecord,
    InspectionMonthRecord,
    InspectionRecord,
    WatermarkRecord,
    table_of,
)
from vinspect.types import MODEL_REASONS, first_fault

__all__ = [
    "ROLLUP",
    "Digest",
    "RollupPass",
    "digest",
    "first_flag",
    "hour_expr",
    "hour_key",
    "hours_between",
    "rebuild",
    "roll_up",
    "watermark",
]

ROLLUP = "inspection_hourly"
_ROLLUP_LOCK_KEY = 0x76696E72  # "vinr": serialises roll-up passes (PostgreSQL)


@dataclass(frozen=True, slots=True)
class Digest:
    """What the analytics need of a group of rows with the same verdict and reason list."""

    fault: str  # the first fault reason, "" for none
    model_rejects: int  # rows rejected for a model reason (also when a fault came with it)
    first_passed: int


def digest(verdict: str, reasons_json: str, count: int, firsts: int) -> Digest:
    """Fault reason, model rejects and first passes of ``count`` rows with one verdict and reason list."""
    if verdict == "PASS":
        return Digest(fault="", model_rejects=0, first_passed=firsts)
    listed = json.loads(reasons_json)
    fault = first_fault(listed) or ""
    rejects = count if any(r in MODEL_REASONS for r in listed) else 0
    return Digest(fault=str(fault), model_rejects=rejects, first_passed=0)


def first_flag() -> ColumnElement[int]:
    """1 for a part's first inspection (no earlier row with its part id; rows without one count as first)."""
    earlier = aliased(InspectionRecord)
    first = ~exists().where(earlier.part_id == InspectionRecord.part_id, earlier.id < InspectionRecord.id)
    return case((first, 1), else_=0)


def watermark(session: Session) -> int:
    """The highest inspection id already counted in the roll-up (0: none)."""
    return int(session.scalar(select(WatermarkRecord.last_id).where(WatermarkRecord.name == ROLLUP)) or 0)


@dataclass(frozen=True, slots=True)
class RollupPass:
    rows: int  # inspection rows counted by this pass
    last_id: int  # the watermark after it
    chunks: int
    reviews: int = 0  # review events taken into ``judgement_hourly`` (:mod:`vinspect.store.judgement_rollup`)
    audits: int = 0  # blind PASS audit answers counted there


Key = tuple[str, str, str, str, str, str]


def _count_range(session: Session, low: int, high: int) -> dict[Key, list[int]]:
    """Counts of the rows with ``low < id <= high`` by roll-up key: [parts, model_rejects, first, first_passed]."""
    hour = hour_expr(session).label("hour")
    part = func.coalesce(InspectionRecord.part_number, "")
    model = func.coalesce(InspectionRecord.model_version, "")
    stmt = (
        select(
            hour,
            InspectionRecord.station_id,
            part,
            model,
            InspectionRecord.verdict,
            InspectionRecord.reasons,
            func.count(),
            func.sum(first_flag()),
        )
        .where(InspectionRecord.id > low, InspectionRecord.id <= high)
        .group_by(hour, InspectionRecord.station_id, part, model, InspectionRecord.verdict, InspectionRecord.reasons)
    )
    counts: dict[Key, list[int]] = {}
    for h, station, part_number, model_version, verdict, reasons, count, firsts in session.execute(stmt):
        d = digest(str(verdict), reasons, int(count), int(firsts or 0))
        key = (str(h), str(station), str(part_number), str(model_version), str(verdict), d.fault)
        row = counts.setdefault(key, [0, 0, 0, 0])
        row[0] += int(count)
        row[1] += d.model_rejects
        row[2] += int(firsts or 0)
        row[3] += d.first_passed
    return counts


def _add(session: Session, counts: dict[Key, list[int]]) -> None:
    """Add ``counts`` to their hours and, summed per month and hour of the day, to ``inspection_monthly``
    (in the same transaction, so the month level always equals the sum of its hours)."""
    monthly: dict[Key, list[int]] = {}
    for k, v in counts.items():
        row = monthly.setdefault((month_slot(k[0]), *k[1:]), [0, 0, 0, 0])
        for i, x in enumerate(v):
            row[i] += x
    for record, rows in ((InspectionHourRecord, counts), (InspectionMonthRecord, monthly)):
        _upsert(session, record, rows)


def _upsert(session: Session, record: type[Any], counts: dict[Key, list[int]]) -> None:
    if not counts:
        return
    values = [
        {
            "hour": k[0],
            "station_id": k[1],
            "part_number": k[2],
            "model_version": k[3],
            "verdict": k[4],
            "fault": k[5],
            "parts": v[0],
            "model_rejects": v[1],
            "first_parts": v[2],
            "first_passed": v[3],
        }
        for k, v in counts.items()
    ]
    table = table_of(record)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["hour", "station_id", "part_number", "model_version", "verdict", "fault"],
        set_={
            name: getattr(table.c, name) + getattr(stmt.excluded, name)
            for name in ("parts", "model_rejects", "first_parts", "first_passed")
        },
    )
    session.execute(stmt, values)


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ROLLUP_LOCK_KEY})


def roll_up(
    engine: Engine, *, chunk: int | None = None, max_chunks: int | None = None, now: datetime | None = None
) -> RollupPass:
    """Count every inspection above the watermark into its hour, ``chunk`` ids per transaction; then
    the review events and blind audit answers above theirs into ``judgement_hourly``.

    Returns how many rows were counted and the new watermark. Safe to run from several processes
    at once (they take turns) and at any time (readers stay correct). ``chunk`` defaults to
    200,000 ids on PostgreSQL and 20,000 on SQLite, whose one writer (the station too) waits
    for each chunk's transaction.
    """
    if chunk is None:
        chunk = 20_000 if engine.dialect.name == "sqlite" else 200_000
    total = chunks = 0
    last = 0
    inspections_done = judgements_done = False
    reviews = audits = 0
    while max_chunks is None or chunks < max_chunks:
        with session_scope(engine) as session:
            _lock(session)
            stamp = now or datetime.now(UTC)
            last = watermark(session)
            if not inspections_done:
                top = int(session.scalar(select(func.max(InspectionRecord.id))) or 0)
                if top <= last:
                    inspections_done = True
                else:
                    high = min(top, last + chunk)
                    counts = _count_range(session, last, high)
                    _add(session, counts)
                    mark = session.get(WatermarkRecord, ROLLUP)
                    if mark is None:
                        session.add(WatermarkRecord(name=ROLLUP, last_id=high, updated_at=stamp))
                    else:
                        mark.last_id, mark.updated_at = high, stamp
                    total += sum(v[0] for v in counts.values())
                    last = high
            if not judgements_done:
                judged: JudgementPass | None = roll_up_judgements(session, chunk=chunk, now=stamp)
                if judged is None:
                    judgements_done = True
                else:
                    reviews += judged.reviews
                    audits += judged.audits
            if inspections_done and judgements_done:
                break
            chunks += 1
    return RollupPass(rows=total, last_id=last, chunks=chunks, reviews=reviews, audits=audits)


def rebuild(engine: Engine, *, chunk: int | None = None) -> RollupPass:
    """Empty the roll-ups and count every inspection and judgement again (after a restore, or to check it)."""
    with session_scope(engine) as session:
        _lock(session)
        session.execute(delete(InspectionHourRecord))
        session.execute(delete(InspectionMonthRecord))
        session.execute(delete(WatermarkRecord).where(WatermarkRecord.name == ROLLUP))
        clear(session)
    return roll_up(engine, chunk=chunk)


def hours_between(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The whole hours inside ``[since, until)``: (first whole hour's start, end of the last whole hour)."""
    floor = since.replace(minute=0, second=0, microsecond=0)
    low = floor if floor == since else floor + timedelta(hours=1)
    high = until.replace(minute=0, second=0, microsecond=0)
    return low, high
