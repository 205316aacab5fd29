"""The hourly roll-up of human judgements: each NCR's standing review and every blind PASS audit answer.

The dashboard's false-reject rate, escape rate and Cohen's kappa count, per station, part number,
model version and hour of day, the answers people gave: the *standing* review of every NCR
detected in the window (the review event with the highest revision; a signed supersede by a second
reviewer replaces the first) and every blind PASS audit (a ``sample.review`` audit row) of a part
recorded in the window. A year is ~100,000 NCRs and their events; finding each one's standing
review on every request was the largest cost of the year's dashboard. ``judgement_hourly`` keeps
those counts per UTC hour (of the NCR's detection, of the audited part's record), station, part
number, model version, machine verdict and human answer, as ``inspection_hourly`` does for parts
(:mod:`vinspect.store.analytics_rollup`, whose reasoning this module follows).

**Two watermarks.** ``judgement_reviews`` is the highest ``ncr_events.id`` counted, and
``judgement_audits`` the highest ``audit_records.id``. Both tables are written only under the
plant-wide writer lock, so their ids become visible in order. A pass takes the review events above
the mark; for every NCR they touch it takes off the review that stood at the old mark and adds the
one that stands at the new mark (an NCR reviewed, then superseded a day later, moves from one
answer to the other: it is never counted twice). Audit rows are only ever added.

**Readers** (:func:`judgement_union`) take the window's whole hours from the roll-up and, in the
same statement, correct them with what it has not counted yet: for each NCR of those hours with a
review event above the mark, minus its review as of the mark, plus its standing review now; audit
answers above the audit mark; and everything of the window's partial edge hours raw.

**Month level.** Every change to ``judgement_hourly`` is added, in the same transaction, to
``judgement_monthly`` under the key ``YYYY-MM-01 HH`` (month and hour of the day), so a reader that
only needs the hour of the day takes a window's whole months from there (12 x 24 slots for a year).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, cast, delete, func, literal, select, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased
from sqlalchemy.types import JSON

from vinspect.store.hours import hour_expr, hour_key, level_spans, month_slot
from vinspect.store.tables import (
    AuditRecord,
    InspectionRecord,
    JudgementHourRecord,
    JudgementMonthRecord,
    NcrEvent,
    NcrRecord,
    WatermarkRecord,
    table_of,
)

__all__ = [
    "AUDITS_MARK",
    "AUDIT_ACTION",
    "REVIEWS_MARK",
    "REVIEW_KINDS",
    "JudgementMarks",
    "JudgementPass",
    "clear",
    "json_text",
    "judgement_marks",
    "judgement_union",
    "roll_up_judgements",
]

REVIEWS_MARK = "judgement_reviews"  # highest ncr_events.id counted
AUDITS_MARK = "judgement_audits"  # highest audit_records.id counted
REVIEW_KINDS = ("REVIEWED", "SUPERSEDED")
AUDIT_ACTION = "sample.review"


def json_text(session: Session, column: Any, key: str) -> ColumnElement[str]:
    """One top-level string of a JSON text column (canonical JSON), in SQL."""
    if session.get_bind().dialect.name == "sqlite":
        return func.json_extract(column, f"$.{key}")
    return func.json_extract_path_text(cast(column, JSON), key)


@dataclass(frozen=True, slots=True)
class JudgementMarks:
    reviews: int  # ncr_events.id counted up to
    audits: int  # audit_records.id counted up to


def judgement_marks(session: Session) -> JudgementMarks:
    marks = dict(
        session.execute(
            select(WatermarkRecord.name, WatermarkRecord.last_id).where(
                WatermarkRecord.name.in_((REVIEWS_MARK, AUDITS_MARK))
            )
        ).all()
    )
    return JudgementMarks(reviews=int(marks.get(REVIEWS_MARK, 0)), audits=int(marks.get(AUDITS_MARK, 0)))


def _standing(session: Session, sign: int, upto: int | None, *conditions: ColumnElement[bool]) -> Any:
    """Each NCR's standing review (among its review events with id <= ``upto``; all when None), counted
    per roll-up key, times ``sign``. Columns: hour, station, part number, model version, machine, human, n."""
    later = aliased(NcrEvent)
    newer: list[ColumnElement[bool]] = [
        later.ncr_id == NcrEvent.ncr_id,
        later.kind.in_(REVIEW_KINDS),
        later.revision > NcrEvent.revision,
    ]
    mine: list[ColumnElement[bool]] = [NcrEvent.kind.in_(REVIEW_KINDS)]
    if upto is not None:
        newer.append(later.id <= upto)
        mine.append(NcrEvent.id <= upto)
    hour = hour_expr(session, NcrRecord.detected_at)
    part = func.coalesce(NcrRecord.part_number, "")
    model = func.coalesce(json_text(session, NcrRecord.inference, "model_version"), "")
    human = func.coalesce(json_text(session, NcrEvent.payload, "decision"), "")
    keys = (hour, NcrRecord.station_id, part, model, NcrRecord.machine_verdict, human)
    return (
        select(
            hour.label("hour"),
            NcrRecord.station_id.label("station_id"),
            part.label("part_number"),
            model.label("model_version"),
            NcrRecord.machine_verdict.label("machine"),
            human.label("human"),
            (literal(sign) * func.count()).label("n"),
        )
        .select_from(NcrRecord)
        .join(NcrEvent, NcrEvent.ncr_id == NcrRecord.id)
        .where(*mine, ~select(later.id).where(*newer).exists(), *conditions)
        .group_by(*keys)
    )


def _audits(session: Session, *conditions: ColumnElement[bool]) -> Any:
    """Blind PASS audit answers counted per roll-up key (the audited part's hour, station, ...)."""
    hour = hour_expr(session, InspectionRecord.recorded_at)
    part = func.coalesce(InspectionRecord.part_number, "")
    model = func.coalesce(InspectionRecord.model_version, "")
    human = func.coalesce(AuditRecord.new_value, "")
    keys = (hour, InspectionRecord.station_id, part, model, InspectionRecord.verdict, human)
    return (
        select(
            hour.label("hour"),
            InspectionRecord.station_id.label("station_id"),
            part.label("part_number"),
            model.label("model_version"),
            InspectionRecord.verdict.label("machine"),
            human.label("human"),
            func.count().label("n"),
        )
        .select_from(AuditRecord)
        .join(
            InspectionRecord,
            and_(AuditRecord.entity == "inspection", AuditRecord.entity_id == InspectionRecord.inspection_id),
        )
        .where(AuditRecord.action == AUDIT_ACTION, *conditions)
        .group_by(*keys)
    )


def _touched(low: int, high: int | None = None) -> Any:
    """NCRs with a review event above ``low`` (and up to ``high``)."""
    stmt = select(NcrEvent.ncr_id).where(NcrEvent.id > low, NcrEvent.kind.in_(REVIEW_KINDS))
    if high is not None:
        stmt = stmt.where(NcrEvent.id <= high)
    return stmt


def judgement_union(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    low: datetime,
    high: datetime,
    marks: JudgementMarks | None,
    station_id: str | None = None,
    part_number: str | None = None,
    monthly: bool = False,
) -> Any:
    """Every judgement of ``[since, until)`` per roll-up key (columns as :func:`_standing`; sum ``n``).

    ``[low, high)``: the window's whole hours, read from the roll-up as of ``marks`` and corrected by
    what came after them; the rest is read raw. ``marks`` None (or no whole hour): everything raw.
    ``monthly``: whole months of those hours from the month level (rows keyed ``YYYY-MM-01 HH``: for
    readers that only need the hour of the day).
    """
    ncr_filters: list[ColumnElement[bool]] = []
    insp_filters: list[ColumnElement[bool]] = []
    rolled_filters: list[Callable[[Any], ColumnElement[bool]]] = []
    if station_id is not None:
        ncr_filters.append(NcrRecord.station_id == station_id)
        insp_filters.append(InspectionRecord.station_id == station_id)
        rolled_filters.append(lambda r: r.station_id == station_id)
    if part_number is not None:
        ncr_filters.append(NcrRecord.part_number == part_number)
        insp_filters.append(InspectionRecord.part_number == part_number)
        rolled_filters.append(lambda r: r.part_number == part_number)
    detected, recorded = NcrRecord.detected_at, InspectionRecord.recorded_at
    if marks is None or low >= high:
        return union_all(
            _standing(session, 1, None, detected >= since, detected < until, *ncr_filters),
            _audits(session, recorded >= since, recorded < until, *insp_filters),
        )
    parts: list[Any] = []
    for by_month, start, end in level_spans(low, high, monthly=monthly):
        r: Any = JudgementMonthRecord if by_month else JudgementHourRecord
        parts.append(
            select(r.hour, r.station_id, r.part_number, r.model_version, r.machine, r.human, r.n).where(
                r.hour >= hour_key(start), r.hour < hour_key(end), *(f(r) for f in rolled_filters)
            )
        )
    parts += [
        # NCRs of the whole hours reviewed again since the roll-up: their old answer out, the standing one in
        _standing(
            session,
            -1,
            marks.reviews,
            NcrRecord.id.in_(_touched(marks.reviews)),
            detected >= low,
            detected < high,
            *ncr_filters,
        ),
        _standing(
            session, 1, None, NcrRecord.id.in_(_touched(marks.reviews)), detected >= low, detected < high, *ncr_filters
        ),
        _audits(session, AuditRecord.id > marks.audits, recorded >= low, recorded < high, *insp_filters),
    ]
    for start, end in ((since, low), (high, until)):
        if start < end:
            parts.append(_standing(session, 1, None, detected >= start, detected < end, *ncr_filters))
            parts.append(_audits(session, recorded >= start, recorded < end, *insp_filters))
    return union_all(*parts)


@dataclass(frozen=True, slots=True)
class JudgementPass:
    reviews: int  # review events taken in by this pass
    audits: int  # audit answers counted by this pass
    marks: JudgementMarks


Key = tuple[str, str, str, str, str, str]


def _add(session: Session, counts: dict[Key, int]) -> None:
    """Add ``counts`` to their hours and, summed per month and hour of the day, to ``judgement_monthly``
    (in the same transaction, so the month level always equals the sum of its hours)."""
    monthly: dict[Key, int] = {}
    for k, n in counts.items():
        slot = (month_slot(k[0]), *k[1:])
        monthly[slot] = monthly.get(slot, 0) + n
    for record, rows in ((JudgementHourRecord, counts), (JudgementMonthRecord, monthly)):
        _upsert(session, record, rows)


def _upsert(session: Session, record: type[Any], counts: dict[Key, int]) -> None:
    values = [
        {
            "hour": k[0],
            "station_id": k[1],
            "part_number": k[2],
            "model_version": k[3],
            "machine": k[4],
            "human": k[5],
            "n": n,
        }
        for k, n in counts.items()
        if n != 0
    ]
    if not values:
        return
    table = table_of(record)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["hour", "station_id", "part_number", "model_version", "machine", "human"],
        set_={"n": table.c.n + stmt.excluded.n},
    )
    session.execute(stmt, values)


def _sum(session: Session, stmt: Any) -> dict[Key, int]:
    counts: dict[Key, int] = {}
    for hour, station, part, model, machine, human, n in session.execute(stmt):
        key = (str(hour), str(station), str(part), str(model), str(machine), str(human))
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def _move(session: Session, name: str, last_id: int, now: datetime) -> None:
    mark = session.get(WatermarkRecord, name)
    if mark is None:
        session.add(WatermarkRecord(name=name, last_id=last_id, updated_at=now))
    else:
        mark.last_id, mark.updated_at = last_id, now


def roll_up_judgements(session: Session, *, chunk: int, now: datetime) -> JudgementPass | None:
    """One chunk of review events and one of audit rows above their marks, counted; None: nothing new.

    Runs inside the caller's roll-up transaction (which holds the roll-up lock)."""
    marks = judgement_marks(session)
    top_event = int(session.scalar(select(func.max(NcrEvent.id))) or 0)
    top_audit = int(session.scalar(select(func.max(AuditRecord.id))) or 0)
    if top_event <= marks.reviews and top_audit <= marks.audits:
        return None
    reviews = audits = 0
    new_reviews, new_audits = marks.reviews, marks.audits
    if top_event > marks.reviews:
        new_reviews = min(top_event, marks.reviews + chunk)
        touched = NcrRecord.id.in_(_touched(marks.reviews, new_reviews))
        delta = _sum(
            session,
            union_all(_standing(session, -1, marks.reviews, touched), _standing(session, 1, new_reviews, touched)),
        )
        _add(session, delta)
        reviews = int(
            session.scalar(select(func.count()).select_from(_touched(marks.reviews, new_reviews).subquery())) or 0
        )
        _move(session, REVIEWS_MARK, new_reviews, now)
    if top_audit > marks.audits:
        new_audits = min(top_audit, marks.audits + chunk)
        counts = _sum(session, _audits(session, AuditRecord.id > marks.audits, AuditRecord.id <= new_audits))
        _add(session, counts)
        audits = sum(counts.values())
        _move(session, AUDITS_MARK, new_audits, now)
    return JudgementPass(reviews=reviews, audits=audits, marks=JudgementMarks(new_reviews, new_audits))


def clear(session: Session) -> None:
    """Empty the judgement roll-up and its marks (:func:`vinspect.store.analytics_rollup.rebuild`)."""
    session.execute(delete(JudgementHourRecord))
    session.execute(delete(JudgementMonthRecord))
    session.execute(delete(WatermarkRecord).where(WatermarkRecord.name.in_((REVIEWS_MARK, AUDITS_MARK))))
