"""Read queries behind the quality analytics (KPIs, p-chart subgroups, Pareto, agreement, drift).

Counts per UTC hour, station, part number, model version and verdict come from the hourly roll-up
(:mod:`vinspect.store.analytics_rollup`) plus the raw rows it has not counted yet; everything
else (shifts, rates, limits) is plain Python over those rows in :mod:`vinspect.analytics`.
Returned values are plain (no ORM rows).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Text,
    and_,
    case,
    cast,
    func,
    null,
    or_,
    select,
    text,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from vinspect.store.analytics_rollup import first_flag, hour_expr, hour_key, hours_between, watermark
from vinspect.store.hours import level_spans
from vinspect.store.judgement_rollup import JudgementMarks, judgement_marks, judgement_union
from vinspect.store.tables import (
    AuditRecord,
    InspectionHourRecord,
    InspectionMonthRecord,
    InspectionRecord,
    NcrEvent,
    NcrRecord,
)
from vinspect.types import MODEL_REASONS, first_fault

__all__ = [
    "SPANS",
    "AnswerCount",
    "HourRow",
    "KpiRow",
    "StationHour",
    "Window",
    "adjudications",
    "answer_counts",
    "audit_answers",
    "custom_plans",
    "hourly_rollup",
    "known_stations",
    "kpi_rollup",
    "latencies_ms",
    "ncr_code_counts",
    "ncr_code_station_part_counts",
    "score_sample",
    "score_samples",
    "station_hours",
    "vision_vs_reviewer",
    "vision_vs_reviewer_counts",
    "vision_vs_reviewer_tally",
]


def custom_plans(session: Session) -> None:
    """Plan this transaction's analytics statements for their actual parameters (PostgreSQL).

    The driver prepares a statement it has run five times, and the server may then switch to one
    generic plan for every window and watermark: measured on a year of 10 million inspections, the
    reviewer-pair read went from ~50 ms to ~300 ms at its tenth run, and a version's "rows above the
    watermark" probe scanned the whole table. Planning each statement costs about a millisecond.
    ``SET LOCAL`` ends with the transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("analytics windows are timezone-aware UTC")
        if self.until <= self.since:
            raise ValueError(f"window: until {self.until.isoformat()} is not after since {self.since.isoformat()}")

    @property
    def hours(self) -> float:
        return (self.until - self.since).total_seconds() / 3600.0


@dataclass(frozen=True, slots=True)
class HourRow:
    """Parts of one UTC hour, station, model version and verdict; ``faults`` by (first) fault reason.

    ``model_rejects`` counts rejects with a score reason (``score``, ``review_band``), also when a
    fault reason such as ``late`` came with it: the p-chart's d (quality-domain §11).
    """

    hour: datetime
    station_id: str
    model_version: str | None
    verdict: str
    count: int
    model_rejects: int  # FAIL/REVIEW for a model reason only
    faults: dict[str, int]
    first: int  # of which the part's first inspection (parts without an id count as first)
    first_passed: int
    part_number: str | None = None  # None: inspections stored before part numbers were recorded


def _in(window: Window, column: Any) -> ColumnElement[bool]:
    return and_(column >= window.since, column < window.until)


def _model_reject() -> ColumnElement[bool]:
    """A reject for a model reason (the reason list is canonical JSON: an element matches only whole)."""
    listed = [InspectionRecord.reasons.like(f'%"{reason}"%') for reason in sorted(MODEL_REASONS)]
    return and_(InspectionRecord.verdict != "PASS", or_(*listed))


def _raw_part(session: Session, *conditions: ColumnElement[bool]) -> Any:
    """Rows of ``inspections`` counted per hour/station/part/model/verdict/reason list (the roll-up's shape);
    ``fault`` is left to Python (the first non-model reason of ``reasons``)."""
    hour = hour_expr(session).label("hour")
    part = func.coalesce(InspectionRecord.part_number, "")
    model = func.coalesce(InspectionRecord.model_version, "")
    first = func.sum(first_flag())
    return (
        select(
            hour,
            InspectionRecord.station_id.label("station_id"),
            part.label("part_number"),
            model.label("model_version"),
            InspectionRecord.verdict.label("verdict"),
            cast(null(), String).label("fault"),
            InspectionRecord.reasons.label("reasons"),
            func.count().label("parts"),
            func.sum(case((_model_reject(), 1), else_=0)).label("model_rejects"),
            first.label("first_parts"),
            case((InspectionRecord.verdict == "PASS", first), else_=0).label("first_passed"),
        )
        .where(*conditions)
        .group_by(hour, InspectionRecord.station_id, part, model, InspectionRecord.verdict, InspectionRecord.reasons)
    )


def _rolled_part(low: datetime, high: datetime, filters: Sequence[Any], *, monthly: bool = False) -> list[Any]:
    """The roll-up's rows of the whole hours ``[low, high)``; ``monthly``: whole months from the month level
    (``hour`` is then ``YYYY-MM-01 HH``: only for readers of the hour of the day)."""
    out = []
    for by_month, start, end in level_spans(low, high, monthly=monthly):
        r: Any = InspectionMonthRecord if by_month else InspectionHourRecord
        out.append(
            select(
                r.hour.label("hour"),
                r.station_id,
                r.part_number,
                r.model_version,
                r.verdict,
                r.fault,
                cast(null(), Text).label("reasons"),
                r.parts,
                r.model_rejects,
                r.first_parts,
                r.first_passed,
            ).where(r.hour >= hour_key(start), r.hour < hour_key(end), *(f(r) for f in filters))
        )
    return out


def _union(
    window: Window,
    session: Session,
    station_id: str | None,
    part_number: str | None,
    mark: int | None,
    *,
    monthly: bool = False,
) -> Any:
    """Whole hours from the roll-up (ids up to ``mark``), the rest raw; ``mark`` None: all raw.
    ``monthly``: whole months from the month level (for the hour-of-day grain only)."""
    raw_filters: list[ColumnElement[bool]] = []
    rolled_filters: list[Any] = []
    if station_id is not None:
        raw_filters.append(InspectionRecord.station_id == station_id)
        rolled_filters.append(lambda r: r.station_id == station_id)
    if part_number is not None:
        raw_filters.append(InspectionRecord.part_number == part_number)
        rolled_filters.append(lambda r: r.part_number == part_number)
    at = InspectionRecord.recorded_at
    low, high = hours_between(window.since, window.until)
    if mark is None or low >= high:
        return _raw_part(session, _in(window, at), *raw_filters)
    parts = [
        *_rolled_part(low, high, rolled_filters, monthly=monthly),
        _raw_part(session, InspectionRecord.id > mark, at >= low, at < high, *raw_filters),
    ]
    if window.since < low:
        parts.append(_raw_part(session, at >= window.since, at < low, *raw_filters))
    if high < window.until:
        parts.append(_raw_part(session, at >= high, at < window.until, *raw_filters))
    return union_all(*parts)


def _grain(stmt: Any, grain: str) -> Any:
    """The union summed to ``grain``: "hour" (as is), "hour_of_day" (for shifts), "station_hour" or
    "station_day" (p-charts)."""
    if grain == "hour":
        return stmt
    sub = stmt.subquery()
    sums = [
        func.sum(sub.c.parts),
        func.sum(sub.c.model_rejects),
        func.sum(sub.c.first_parts),
        func.sum(sub.c.first_passed),
    ]
    if grain == "station_hour":
        return select(sub.c.hour, sub.c.station_id, *sums).group_by(sub.c.hour, sub.c.station_id)
    if grain == "station_day":
        day = func.substr(sub.c.hour, 1, 10).label("hour")
        return select(day, sub.c.station_id, *sums).group_by(day, sub.c.station_id)
    hod = func.substr(sub.c.hour, 12, 2).label("hour")
    keys = [sub.c.station_id, sub.c.part_number, sub.c.model_version, sub.c.verdict, sub.c.fault, sub.c.reasons]
    return select(hod, *keys, *sums).group_by(hod, *keys)


def _consistent(session: Session, make: Any) -> list[Any]:
    """Run ``make(mark)`` against the roll-up's watermark; repeat if a roll-up committed meanwhile
    (after three tries, everything is read raw): no part is counted twice or missed."""
    for _ in range(3):
        mark = watermark(session)
        rows = list(session.execute(make(mark)))
        if watermark(session) == mark:
            return rows
    return list(session.execute(make(None)))


def _rows(window: Window, session: Session, station_id: str | None, part_number: str | None, grain: str) -> list[Any]:
    monthly = grain == "hour_of_day"  # whole months from the month level: a year is 12 x 24 slots, not 8,760 hours
    return _consistent(
        session,
        lambda mark: _grain(_union(window, session, station_id, part_number, mark, monthly=monthly), grain),
    )


def _merge(rows: Iterable[Any]) -> dict[tuple[str, str, str, str, str], dict[str, Any]]:
    merged: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
    for h, station, part, model, verdict, fault, reasons, count, rejects, firsts, first_passed in rows:
        key = (str(h), str(station), str(part), str(model), str(verdict))
        row = merged.get(key)
        if row is None:
            row = merged[key] = {"count": 0, "model_rejects": 0, "faults": {}, "first": 0, "first_passed": 0}
        if reasons is not None and verdict != "PASS":  # raw rows: the fault from the reason list
            fault = first_fault(json.loads(reasons))
        row["count"] += int(count)
        row["first"] += int(firsts or 0)
        row["model_rejects"] += int(rejects or 0)
        row["first_passed"] += int(first_passed or 0)
        if fault:
            row["faults"][fault] = row["faults"].get(fault, 0) + int(count)
    return merged


def hourly_rollup(
    window: Window, *, session: Session, station_id: str | None = None, part_number: str | None = None
) -> list[HourRow]:
    """Per hour, station, part number, model version and verdict: parts, model rejects, faults, first inspections.

    Whole hours come from the roll-up (:mod:`vinspect.store.analytics_rollup`) for the ids it has
    counted; newer rows and the partial hours at the window's edges are counted raw, in the same
    statement (:func:`_consistent`).
    """
    merged = _merge(_rows(window, session, station_id, part_number, "hour"))
    hours: dict[str, datetime] = {}
    for h, *_ in merged:
        if h not in hours:
            hours[h] = datetime.strptime(h[:13], "%Y-%m-%d %H").replace(tzinfo=UTC)
    return [
        HourRow(
            hour=hours[h],
            station_id=s,
            model_version=m or None,
            verdict=v,
            count=r["count"],
            model_rejects=r["model_rejects"],
            faults=dict(r["faults"]),
            first=r["first"],
            first_passed=r["first_passed"],
            part_number=p or None,
        )
        for (h, s, p, m, v), r in sorted(merged.items())
    ]


@dataclass(frozen=True, slots=True)
class KpiRow:
    """Like :class:`HourRow`, summed over the window's days: one row per UTC hour of the day (shifts)."""

    hour_of_day: int
    station_id: str
    model_version: str | None
    verdict: str
    count: int
    model_rejects: int
    faults: dict[str, int]
    first: int
    first_passed: int
    part_number: str | None = None


def kpi_rollup(
    window: Window, *, session: Session, station_id: str | None = None, part_number: str | None = None
) -> list[KpiRow]:
    """The KPI counts of the window per hour of the day, station, part number, model version and verdict.

    What the dashboard's tables need (a year is a few hundred rows, not one per hour)."""
    merged = _merge(_rows(window, session, station_id, part_number, "hour_of_day"))
    return [
        KpiRow(
            hour_of_day=int(h),
            station_id=s,
            model_version=m or None,
            verdict=v,
            count=r["count"],
            model_rejects=r["model_rejects"],
            faults=dict(r["faults"]),
            first=r["first"],
            first_passed=r["first_passed"],
            part_number=p or None,
        )
        for (h, s, p, m, v), r in sorted(merged.items())
    ]


def known_stations(session: Session) -> list[str]:
    """Every station with inspections (from the roll-up, plus rows it has not counted yet)."""
    mark = watermark(session)
    rolled = select(InspectionHourRecord.station_id).distinct()
    fresh = select(InspectionRecord.station_id).where(InspectionRecord.id > mark).distinct()
    return sorted({str(s) for s in session.scalars(union_all(rolled, fresh))})


@dataclass(frozen=True, slots=True)
class StationHour:
    """One p-chart subgroup: a station's parts and model rejects in one UTC hour (or day or week: ``hour``
    is the subgroup's start, see :func:`station_hours`)."""

    hour: datetime
    station_id: str
    model_rejects: int
    parts: int


SPANS = ("hour", "day", "week")


def station_hours(
    window: Window,
    *,
    session: Session,
    station_id: str | None = None,
    part_number: str | None = None,
    span: str = "hour",
) -> list[StationHour]:
    """P-chart subgroups of every station (or one) in the window, per station oldest first.

    ``span``: "hour" (UTC hours), "day" (UTC days) or "week" (weeks starting Monday 00:00 UTC); a
    subgroup at the window's edge holds only the parts inside the window.
    """
    if span not in SPANS:
        raise ValueError(f"p-chart subgroup span {span!r}: choose one of {', '.join(SPANS)}")
    rows = _rows(window, session, station_id, part_number, "station_hour" if span == "hour" else "station_day")
    width, fmt = (13, "%Y-%m-%d %H") if span == "hour" else (10, "%Y-%m-%d")
    starts: dict[str, datetime] = {}
    sums: dict[tuple[str, datetime], list[int]] = {}
    for h, station, parts, rejects, _first, _passed in rows:
        when = starts.get(h)
        if when is None:
            when = datetime.strptime(h[:width], fmt).replace(tzinfo=UTC)
            if span == "week":
                when -= timedelta(days=when.weekday())
            starts[h] = when
        acc = sums.setdefault((str(station), when), [0, 0])
        acc[0] += int(rejects or 0)
        acc[1] += int(parts)
    return [
        StationHour(hour=when, station_id=station, model_rejects=rejects, parts=parts)
        for (station, when), (rejects, parts) in sorted(sums.items())
    ]


@dataclass(frozen=True, slots=True)
class Answer:
    """One human judgement joined to the machine's: where, when, which model, what each said."""

    station_id: str
    model_version: str | None
    at: datetime
    machine: str  # verdict: PASS / FAIL / REVIEW
    human: str  # CONFIRMED_DEFECT / FALSE_REJECT / NEEDS_MRB / CONFORMS / ESCAPE
    defect_code: str | None
    reviewer: str
    part_number: str | None = None


def adjudications(
    window: Window, *, session: Session, station_id: str | None = None, part_number: str | None = None
) -> list[Answer]:
    """The standing review decision of each NCR detected in the window (a signed supersede replaces it)."""
    stmt = (
        select(
            NcrRecord.id,
            NcrRecord.station_id,
            NcrRecord.detected_at,
            NcrRecord.defect_code,
            InspectionRecord.verdict,
            InspectionRecord.model_version,
            NcrEvent.payload,
            NcrEvent.actor,
            NcrRecord.part_number,
        )
        .join(NcrEvent, NcrEvent.ncr_id == NcrRecord.id)
        .outerjoin(InspectionRecord, InspectionRecord.inspection_id == NcrRecord.inspection_id)
        .where(_in(window, NcrRecord.detected_at), NcrEvent.kind.in_(("REVIEWED", "SUPERSEDED")))
        .order_by(NcrRecord.id, NcrEvent.revision)
    )
    if station_id is not None:
        stmt = stmt.where(NcrRecord.station_id == station_id)
    if part_number is not None:
        stmt = stmt.where(NcrRecord.part_number == part_number)
    latest: dict[int, Answer] = {}
    for ncr_id, station, at, code, verdict, model, payload, actor, part in session.execute(stmt):
        value = json.loads(payload)
        latest[ncr_id] = Answer(
            station_id=station,
            model_version=model,
            at=at,
            machine=verdict or "FAIL",
            human=str(value.get("decision")),
            defect_code=value.get("defect_code") or code,
            reviewer=actor,
            part_number=part,
        )
    return list(latest.values())


def audit_answers(
    window: Window, *, session: Session, station_id: str | None = None, part_number: str | None = None
) -> list[Answer]:
    """Blind PASS-audit answers (CONFORMS / ESCAPE) for parts inspected in the window."""
    stmt = (
        select(
            InspectionRecord.station_id,
            InspectionRecord.model_version,
            InspectionRecord.recorded_at,
            AuditRecord.new_value,
            AuditRecord.reason,
            AuditRecord.actor,
            InspectionRecord.part_number,
        )
        .join(
            AuditRecord,
            and_(AuditRecord.entity == "inspection", AuditRecord.entity_id == InspectionRecord.inspection_id),
        )
        .where(AuditRecord.action == "sample.review", _in(window, InspectionRecord.recorded_at))
    )
    if station_id is not None:
        stmt = stmt.where(InspectionRecord.station_id == station_id)
    if part_number is not None:
        stmt = stmt.where(InspectionRecord.part_number == part_number)
    answers = []
    for station, model, at, decision, reason, actor, part in session.execute(stmt):
        code = None
        if reason and "[defect_code=" in reason:
            code = reason.rsplit("[defect_code=", 1)[1].rstrip("]") or None
            code = None if code == "-" else code
        answers.append(
            Answer(
                station_id=station,
                model_version=model,
                at=at,
                machine="PASS",
                human=str(decision),
                defect_code=code,
                reviewer=actor,
                part_number=part,
            )
        )
    return answers


@dataclass(frozen=True, slots=True)
class AnswerCount:
    """``n`` human judgements with the same station, hour of day, model version, part number and answer.

    ``machine``: the vision verdict (``PASS`` for a blind audit, the NCR's machine verdict for a review).
    """

    station_id: str
    hour_of_day: int
    model_version: str | None
    part_number: str | None
    machine: str
    human: str
    n: int


def answer_counts(
    window: Window, *, session: Session, station_id: str | None = None, part_number: str | None = None
) -> list[AnswerCount]:
    """:func:`adjudications` and :func:`audit_answers` counted per hour of day (a year is ~100,000 NCRs).

    Whole hours come from the judgement roll-up (:mod:`vinspect.store.judgement_rollup`: each NCR's
    standing review, blind PASS audit answers), corrected in the same statement by the review events
    and audit rows it has not counted yet; the window's partial edge hours are counted raw. The NCR's
    model version comes from its inference record (no join to the 10-million-row inspections table).
    """
    low, high = hours_between(window.since, window.until)

    def make(marks: JudgementMarks | None) -> Any:
        sub = judgement_union(
            session,
            since=window.since,
            until=window.until,
            low=low,
            high=high,
            marks=marks,
            station_id=station_id,
            part_number=part_number,
            monthly=True,
        ).subquery()
        hod = func.substr(sub.c.hour, 12, 2)
        keys = (sub.c.station_id, hod, sub.c.model_version, sub.c.part_number, sub.c.machine, sub.c.human)
        return select(*keys, func.sum(sub.c.n)).group_by(*keys)

    rows: list[Any] | None = None
    for _ in range(3):  # repeat if a roll-up committed meanwhile (then: all raw), as _consistent does
        marks = judgement_marks(session)
        rows = list(session.execute(make(marks)))
        if judgement_marks(session) == marks:
            break
        rows = None
    if rows is None:
        rows = list(session.execute(make(None)))
    return [
        AnswerCount(
            station_id=str(station),
            hour_of_day=int(h),
            model_version=model_version or None,
            part_number=part or None,
            machine=str(machine),
            human=str(human),
            n=int(n),
        )
        for station, h, model_version, part, machine, human, n in rows
        if n and human
    ]


def vision_vs_reviewer_counts(answers: Iterable[AnswerCount]) -> list[tuple[str, str]]:
    """:func:`vision_vs_reviewer` of counted answers (each pair repeated ``n`` times)."""
    return [pair for pair, n in vision_vs_reviewer_tally(answers).items() for _ in range(n)]


def vision_vs_reviewer_tally(answers: Iterable[AnswerCount]) -> dict[tuple[str, str], int]:
    """:func:`vision_vs_reviewer_counts` counted: (vision, reviewer) -> how many (for Cohen's kappa)."""
    tally: dict[tuple[str, str], int] = {}
    for a in answers:
        vision = "good" if a.machine == "PASS" else "reject"
        if a.human in ("CONFIRMED_DEFECT", "ESCAPE"):
            tally[(vision, "reject")] = tally.get((vision, "reject"), 0) + a.n
        elif a.human in ("FALSE_REJECT", "CONFORMS"):
            tally[(vision, "good")] = tally.get((vision, "good"), 0) + a.n
    return tally


def vision_vs_reviewer(answers: Iterable[Answer]) -> list[tuple[str, str]]:
    """(vision, reviewer) pairs in two categories, reject vs good, for Cohen's kappa (MRB cases left out)."""
    pairs = []
    for a in answers:
        vision = "reject" if a.machine in ("FAIL", "REVIEW") else "good"
        if a.human in ("CONFIRMED_DEFECT", "ESCAPE"):
            pairs.append((vision, "reject"))
        elif a.human in ("FALSE_REJECT", "CONFORMS"):
            pairs.append((vision, "good"))
    return pairs


def ncr_code_counts(
    window: Window,
    *,
    session: Session,
    by: str = "defect_code",
    station_id: str | None = None,
    part_number: str | None = None,
) -> dict[str, int]:
    """NCRs detected in the window by machine defect code, station or part number (open-set codes kept)."""
    columns = {
        "defect_code": NcrRecord.defect_code,
        "station": NcrRecord.station_id,
        "part_number": NcrRecord.part_number,
    }
    if by not in columns:
        raise ValueError(f"Pareto by {by!r}: choose one of {', '.join(columns)}")
    column = columns[by]
    stmt = select(column, func.count()).where(_in(window, NcrRecord.detected_at)).group_by(column)
    if station_id is not None:
        stmt = stmt.where(NcrRecord.station_id == station_id)
    if part_number is not None:
        stmt = stmt.where(NcrRecord.part_number == part_number)
    return {str(k): int(v) for k, v in session.execute(stmt)}


def ncr_code_station_part_counts(window: Window, *, session: Session) -> dict[tuple[str, str, str], int]:
    """NCRs detected in the window per (machine defect code, station, part number): the dashboard's three
    Pareto charts (:func:`ncr_code_counts` by code, station, part number) from one read."""
    stmt = (
        select(NcrRecord.defect_code, NcrRecord.station_id, NcrRecord.part_number, func.count())
        .where(_in(window, NcrRecord.detected_at))
        .group_by(NcrRecord.defect_code, NcrRecord.station_id, NcrRecord.part_number)
    )
    return {(str(code), str(station), str(part)): int(n) for code, station, part, n in session.execute(stmt)}


def ncr_count(
    window: Window, *, session: Session, defect_codes: Sequence[str] = (), station_id: str | None = None
) -> int:
    """NCRs detected in the window (of the given machine codes when any)."""
    stmt = select(func.count()).select_from(NcrRecord).where(_in(window, NcrRecord.detected_at))
    if defect_codes:
        stmt = stmt.where(NcrRecord.defect_code.in_(list(defect_codes)))
    if station_id is not None:
        stmt = stmt.where(NcrRecord.station_id == station_id)
    return int(session.scalar(stmt) or 0)


def latencies_ms(
    window: Window,
    *,
    session: Session,
    station_id: str | None = None,
    limit: int = 20_000,
    part_number: str | None = None,
) -> list[float]:
    """Capture-to-record latency of the newest ``limit`` parts in the window (ms)."""
    cap, rec = InspectionRecord.captured_at, InspectionRecord.recorded_at
    filters = [_in(window, rec), cap.is_not(None)]
    if station_id is not None:
        filters.append(InspectionRecord.station_id == station_id)
    if part_number is not None:
        filters.append(InspectionRecord.part_number == part_number)
    if session.get_bind().dialect.name == "postgresql":
        # subtracted in the database (exact microseconds): no 2 x 20,000 timezone-aware datetimes in Python
        ms = select(func.extract("epoch", rec - cap) * 1000, rec).where(*filters).order_by(rec.desc()).limit(limit)
        return _as_list(session, ms)
    pairs = select(cap, rec).where(*filters).order_by(rec.desc()).limit(limit)
    return [(r - c) / timedelta(milliseconds=1) for c, r in session.execute(pairs) if c is not None]


def score_sample(
    window: Window,
    *,
    session: Session,
    model_version: str | None = None,
    station_id: str | None = None,
    limit: int = 20_000,
) -> list[float]:
    """Anomaly scores of the newest ``limit`` scored parts in the window (drift against validation).

    For one model version, see :func:`score_samples`.
    """
    if model_version is not None:
        return score_samples(window, session=session, model_versions=[model_version], station_id=station_id)[
            model_version
        ]
    return _newest_scores(session, window.since, window.until, None, station_id, limit)


_FRESH_SCAN = 200_000  # rows above the watermark read for their model versions (a minute of a plant is far fewer)


def score_samples(
    window: Window,
    *,
    session: Session,
    model_versions: Sequence[str],
    station_id: str | None = None,
    limit: int = 20_000,
) -> dict[str, list[float]]:
    """:func:`score_sample` of each model version: the newest ``limit`` scores of that version in the window.

    Each read starts at the last hour the roll-up saw the version (unless newer, not yet rolled-up rows
    have it): an older version's newest parts are found without walking back through every later part.
    The watermark, the versions above it and each version's last hour are read once for all versions.
    """
    if not model_versions:
        return {}
    mark = watermark(session)
    # the versions of the rows the roll-up has not counted yet: read in id order from the watermark (the
    # primary key's order, so even a generic prepared plan never scans the table for a version that is absent)
    newest = (
        select(InspectionRecord.model_version)
        .where(InspectionRecord.id > mark)
        .order_by(InspectionRecord.id)
        .limit(_FRESH_SCAN)
        .subquery()
    )
    seen: dict[str | None, int] = {
        m: int(n)
        for m, n in session.execute(select(newest.c.model_version, func.count()).group_by(newest.c.model_version))
    }
    fresh = set(model_versions) if sum(seen.values()) >= _FRESH_SCAN else {str(m) for m in seen}  # far behind
    r = InspectionHourRecord
    last_hours = {
        str(m): str(h)
        for m, h in session.execute(
            select(r.model_version, func.max(r.hour))
            .where(
                r.model_version.in_(list(model_versions)),
                r.hour >= hour_key(window.since),
                r.hour <= hour_key(window.until),
            )
            .group_by(r.model_version)
        )
    }
    out: dict[str, list[float]] = {}
    for model in model_versions:
        until = window.until
        if model not in fresh:
            last = last_hours.get(model)
            if last is None and mark > 0:
                out[model] = []
                continue
            if last is not None:
                until = min(until, datetime.strptime(last, "%Y-%m-%d %H").replace(tzinfo=UTC) + timedelta(hours=1))
        out[model] = _newest_scores(session, window.since, until, model, station_id, limit)
    return out


def _newest_scores(
    session: Session, since: datetime, until: datetime, model_version: str | None, station_id: str | None, limit: int
) -> list[float]:
    stmt = (
        select(InspectionRecord.score)
        .where(
            InspectionRecord.recorded_at >= since,
            InspectionRecord.recorded_at < until,
            InspectionRecord.score.is_not(None),
        )
        .order_by(InspectionRecord.recorded_at.desc())
        .limit(limit)
    )
    if model_version is not None:
        stmt = stmt.where(InspectionRecord.model_version == model_version)
    if station_id is not None:
        stmt = stmt.where(InspectionRecord.station_id == station_id)
    if session.get_bind().dialect.name == "postgresql":
        return _as_list(session, stmt.add_columns(InspectionRecord.recorded_at))
    return [float(s) for s in session.scalars(stmt) if s is not None]


def _as_list(session: Session, stmt: Any) -> list[float]:
    """The first column of ``stmt`` (a value, then the time it is ordered by, newest first) as floats,
    fetched as one PostgreSQL array: one row instead of 20,000 result rows."""
    sub = stmt.subquery()
    value, at = list(sub.c)[:2]
    agg = func.array_agg(aggregate_order_by(value, at.desc()))
    return [float(v) for v in session.scalar(select(agg)) or () if v is not None]


def reviewer_pairs(window: Window, *, session: Session, station_id: str | None = None) -> list[tuple[str, str]]:
    """(first reviewer, second reviewer) decisions, reject vs good, where two people judged the same NCR
    (a review and a signed supersede by someone else; MRB referrals left out)."""
    # only these had a second person (~1 % of NCRs; a partial index since migration 0012)
    superseded = select(NcrEvent.ncr_id).where(NcrEvent.kind == "SUPERSEDED")
    stmt = (
        select(NcrEvent.ncr_id, NcrEvent.actor, NcrEvent.payload)
        .join(NcrRecord, NcrRecord.id == NcrEvent.ncr_id)
        .where(
            _in(window, NcrRecord.detected_at),
            NcrEvent.kind.in_(("REVIEWED", "SUPERSEDED")),
            NcrEvent.ncr_id.in_(superseded),
        )
        .order_by(NcrEvent.ncr_id, NcrEvent.revision)
    )
    if station_id is not None:
        stmt = stmt.where(NcrRecord.station_id == station_id)
    seen: dict[int, list[tuple[str, str]]] = {}
    for ncr_id, actor, payload in session.execute(stmt):
        seen.setdefault(ncr_id, []).append((actor, str(json.loads(payload).get("decision"))))
    category = {"CONFIRMED_DEFECT": "reject", "FALSE_REJECT": "good"}
    pairs = []
    for judged in seen.values():
        people = list(dict.fromkeys(actor for actor, _ in judged))
        if len(people) < 2:
            continue
        first = next(d for a, d in judged if a == people[0])
        second = next(d for a, d in reversed(judged) if a == people[1])
        if first in category and second in category:
            pairs.append((category[first], category[second]))
    return pairs


@dataclass(frozen=True, slots=True)
class PartSubgroup:
    """``size`` consecutive parts of one station: when they were recorded and how many were model rejects."""

    first_at: datetime
    last_at: datetime
    rejects: int
    size: int


def part_subgroups(window: Window, *, session: Session, station_id: str, size: int) -> list[PartSubgroup]:
    """Subgroups of ``size`` consecutive parts (record order) recorded in the window; a partial last one is left out.

    Numbered and counted in the database (window functions on both databases): a month of a station is a
    few thousand result rows, not every part's row read into Python.
    """
    if size < 1:
        raise ValueError(f"subgroup size {size}: at least 1 part")
    at = InspectionRecord.recorded_at
    numbered = (
        select(
            InspectionRecord.id.label("id"),
            at.label("at"),
            case((_model_reject(), 1), else_=0).label("reject"),
            ((func.row_number().over(order_by=InspectionRecord.id) - 1) // size).label("g"),
        )
        .where(_in(window, at), InspectionRecord.station_id == station_id)
        .subquery()
    )
    whole = {"partition_by": numbered.c.g, "order_by": numbered.c.id, "rows": (None, None)}
    ends = select(
        numbered.c.g,
        numbered.c.reject,
        func.first_value(numbered.c.at).over(**whole).label("first_at"),  # type: ignore[arg-type]
        func.last_value(numbered.c.at).over(**whole).label("last_at"),  # type: ignore[arg-type]
    ).subquery()
    stmt = (
        select(
            type_coerce(ends.c.first_at, at.type),  # the column's own result type: no SQL cast
            type_coerce(ends.c.last_at, at.type),
            func.sum(ends.c.reject),
            func.count(),
        )
        .group_by(ends.c.g, ends.c.first_at, ends.c.last_at)
        .having(func.count() == size)
        .order_by(ends.c.g)
    )
    return [PartSubgroup(first, last, int(rejects), int(n)) for first, last, rejects, n in session.execute(stmt)]
