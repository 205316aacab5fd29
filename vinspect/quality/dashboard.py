"""The dashboard's figures for one window: KPIs by station/shift/model version, p-charts, Pareto, kappa, drift."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vinspect.analytics.agreement import Kappa, kappa_from_counts, kappa_from_pairs
from vinspect.analytics.drift import KsResult, PsiResult, ks_two_sample, psi
from vinspect.analytics.kpis import KpiCounts, Kpis, compute_kpis
from vinspect.analytics.pareto import Bar, pareto
from vinspect.analytics.spc import Baseline, ChartPoint, Violation, chart, nelson
from vinspect.store.alarms import BaselineView, current_baseline
from vinspect.store.analytics_queries import (
    Answer,
    AnswerCount,
    HourRow,
    KpiRow,
    StationHour,
    Window,
    answer_counts,
    custom_plans,
    kpi_rollup,
    latencies_ms,
    ncr_code_station_part_counts,
    part_subgroups,
    reviewer_pairs,
    score_samples,
    station_hours,
    vision_vs_reviewer_tally,
)
from vinspect.store.review_queries import DbSession

__all__ = ["DEFAULT_SHIFTS", "Dashboard", "DriftFigure", "PChart", "build_dashboard", "display_span", "shift_of"]

DEFAULT_SHIFTS = (6, 14, 22)  # UTC hours at which shifts start: early, late, night


def shift_of(hour: datetime, starts: Sequence[int] = DEFAULT_SHIFTS) -> str:
    """``S1``.. for the shift an UTC hour belongs to (``S<n>`` starts at ``starts[n-1]``:00)."""
    return shift_of_hour(hour.hour, starts)


def shift_of_hour(h: int, starts: Sequence[int] = DEFAULT_SHIFTS) -> str:
    """:func:`shift_of` for an hour of the day (0-23)."""
    ordered = sorted(starts)
    index = max((i for i, s in enumerate(ordered) if h >= s), default=len(ordered) - 1)
    return f"S{index + 1} ({ordered[index]:02d}:00)"


@dataclass(frozen=True, slots=True, kw_only=True)
class PChart:
    station_id: str
    baseline: BaselineView | None
    hours: list[datetime]
    defects: list[int]
    sizes: list[int]
    points: list[ChartPoint]
    violations: list[Violation]
    note: str | None = None
    span: str = "hour"  # the subgroups' length in time ("hour", "day", "week"); unused for part-count subgroups
    by_parts: int | None = None  # subgroups of this many consecutive parts (a part-count baseline), else time


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftFigure:
    model_version: str
    psi: PsiResult | None
    ks: KsResult | None
    live: list[float]
    expected: list[float]
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Dashboard:
    window: Window
    overall: Kpis
    by_station: dict[str, Kpis]
    by_shift: dict[str, Kpis]
    by_model: dict[str, Kpis]
    by_part: dict[str, Kpis]
    charts: list[PChart]
    pareto_codes: list[Bar]
    pareto_stations: list[Bar]
    pareto_parts: list[Bar]
    kappa_by_model: dict[str, Kappa]
    kappa_reviewers: Kappa | None
    drift: list[DriftFigure] = field(default_factory=list)
    inspected: int = 0
    part_number: str | None = None  # the part-number filter, when one was chosen


def _counts(
    rows: Iterable[HourRow | KpiRow], answers: Iterable[Answer | AnswerCount], hours: float, lat: Sequence[float]
) -> KpiCounts:
    counted = {"PASS": 0, "REVIEW": 0, "FAIL": 0}
    model_rejects = first = first_passed = 0
    faults: dict[str, int] = {}
    for r in rows:  # plain sums (a year's KPI rows are read five times: overall, station, shift, model, part)
        if r.verdict in counted:
            counted[r.verdict] += r.count
        model_rejects += r.model_rejects
        first += r.first
        first_passed += r.first_passed
        for reason, n in r.faults.items():
            faults[reason] = faults.get(reason, 0) + n
    adjudicated = false_rejects = audited = escapes = 0
    for a in answers:
        n = a.n if isinstance(a, AnswerCount) else 1
        if a.human in ("CONFORMS", "ESCAPE"):
            audited += n
            escapes += n if a.human == "ESCAPE" else 0
        elif a.human in ("CONFIRMED_DEFECT", "FALSE_REJECT"):
            adjudicated += n
            false_rejects += n if a.human == "FALSE_REJECT" else 0
    return KpiCounts(
        inspected=counted["PASS"] + counted["REVIEW"] + counted["FAIL"],
        passed=counted["PASS"],
        review=counted["REVIEW"],
        failed=counted["FAIL"],
        defect_rejects=model_rejects,
        faults=faults,
        first_inspected=first,
        first_passed=first_passed,
        adjudicated=adjudicated,
        false_rejects=false_rejects,
        audited_passes=audited,
        escapes=escapes,
        hours=hours,
        latencies_ms=lat,
    )


def _grouped(
    rows: Sequence[KpiRow], answers: Sequence[AnswerCount], key_row: object, key_answer: object, hours: float
) -> dict[str, Kpis]:
    by_rows: dict[str, list[KpiRow]] = defaultdict(list)
    by_answers: dict[str, list[AnswerCount]] = defaultdict(list)
    for r in rows:
        by_rows[key_row(r)].append(r)  # type: ignore[operator]
    for a in answers:
        by_answers[key_answer(a)].append(a)  # type: ignore[operator]
    return {k: compute_kpis(_counts(v, by_answers.get(k, []), hours, ())) for k, v in sorted(by_rows.items())}


def _summed(
    ncrs: dict[tuple[str, str, str], int], key: int, *, station_id: str | None = None, part_number: str | None = None
) -> dict[str, int]:
    """NCR counts by code (0), station (1) or part number (2), of one station and/or part number when given."""
    out: Counter[str] = Counter()
    for k, n in ncrs.items():
        if (station_id is None or k[1] == station_id) and (part_number is None or k[2] == part_number):
            out[k[key]] += n
    return dict(out)


def p_chart(rows: Sequence[HourRow], station_id: str, baseline: BaselineView | None) -> PChart:
    """Hourly subgroups of one station: d = model rejects (FAIL/REVIEW for a score reason), n = parts."""
    per_hour: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if r.station_id == station_id:
            per_hour[r.hour][0] += r.model_rejects
            per_hour[r.hour][1] += r.count
    hours = sorted(per_hour)
    return chart_of(station_id, baseline, hours, [per_hour[h][0] for h in hours], [per_hour[h][1] for h in hours])


HOURLY_UP_TO = timedelta(days=7)  # a window up to a week: hourly subgroups (<= 168 points)
DAILY_UP_TO = timedelta(days=92)  # up to a quarter: daily subgroups (<= 92 points); longer: weekly (<= 53 a year)


def display_span(window: Window) -> str:
    """The subgroup length the dashboard draws a time-subgrouped p-chart with for ``window``.

    The frozen p̄ (and Laney σz) apply to any subgroup size, the limits following each subgroup's n;
    alarms are not raised from these charts but by the evaluator on the baseline's own subgroups.
    """
    length = window.until - window.since
    return "hour" if length <= HOURLY_UP_TO else "day" if length <= DAILY_UP_TO else "week"


def station_chart(
    session: DbSession,
    window: Window,
    station_id: str,
    *,
    hours: Sequence[StationHour] | None = None,
    span: str = "hour",
) -> PChart:
    """The station's p-chart over ``window`` with its frozen baseline's subgrouping (hours or a part count).

    ``hours``: the window's subgroups of ``span`` when the caller has them already (any stations).
    ``span``: for a baseline of hourly subgroups, draw "hour", "day" or "week" subgroups instead
    (:func:`display_span`). A part-count baseline uses its part count (read from the raw rows) for a window
    of hourly span; for a longer one it is drawn, like an hourly baseline, with the roll-up's day or week
    subgroups around its frozen p̄ (the evaluator's alarms keep the part-count subgroups).
    """
    baseline = current_baseline(session=session, station_id=station_id)
    if baseline is not None and baseline.subgroup_parts and span == "hour":
        groups = part_subgroups(window, session=session, station_id=station_id, size=baseline.subgroup_parts)
        return chart_of(
            station_id,
            baseline,
            [g.first_at for g in groups],
            [g.rejects for g in groups],
            [g.size for g in groups],
            by_parts=baseline.subgroup_parts,
        )
    if hours is None:
        hours = station_hours(window, session=session, station_id=station_id, span=span)
    mine = [h for h in hours if h.station_id == station_id]
    return chart_of(
        station_id,
        baseline,
        [h.hour for h in mine],
        [h.model_rejects for h in mine],
        [h.parts for h in mine],
        span=span,
    )


def chart_of(
    station_id: str,
    baseline: BaselineView | None,
    hours: list[datetime],
    defects: list[int],
    sizes: list[int],
    *,
    span: str = "hour",
    by_parts: int | None = None,
) -> PChart:
    """Subgroups (labelled by their start) against the frozen limits, with the Nelson violations."""
    if baseline is None:
        return PChart(
            station_id=station_id,
            baseline=None,
            hours=hours,
            defects=defects,
            sizes=sizes,
            points=[],
            violations=[],
            span=span,
            by_parts=by_parts,
            note="no frozen baseline yet: a quality engineer freezes the limits "
            "(vinspect spc baseline) from an in-control period of >= 20 subgroups",
        )
    frozen = Baseline(
        p_bar=baseline.p_bar,
        subgroups=baseline.subgroups,
        parts=baseline.parts,
        defects=baseline.defects,
        sigma_z=baseline.sigma_z or 1.0,
    )
    points = chart(frozen, defects, sizes)
    return PChart(
        station_id=station_id,
        baseline=baseline,
        hours=hours,
        defects=defects,
        sizes=sizes,
        points=points,
        violations=nelson(points),
        span=span,
        by_parts=by_parts,
    )


def drift_figure(model_version: str, expected: Sequence[float], live: Sequence[float]) -> DriftFigure:
    if not expected:
        return DriftFigure(
            model_version=model_version,
            psi=None,
            ks=None,
            live=list(live),
            expected=[],
            note="the bundle records no validation scores (trained before they were kept)",
        )
    if len(live) < 50:
        return DriftFigure(
            model_version=model_version,
            psi=None,
            ks=None,
            live=list(live),
            expected=list(expected),
            note=f"{len(live)} scored parts in the window: at least 50 are needed",
        )
    return DriftFigure(
        model_version=model_version,
        psi=psi(expected, live),
        ks=ks_two_sample(expected, live),
        live=list(live),
        expected=list(expected),
    )


def build_dashboard(
    session: DbSession,
    window: Window,
    *,
    station_id: str | None = None,
    validation_scores: dict[str, Sequence[float]] | None = None,
    shifts: Sequence[int] = DEFAULT_SHIFTS,
    part_number: str | None = None,
) -> Dashboard:
    """Every figure of the dashboard for ``window`` (optionally one station and/or one part number).

    Args:
        validation_scores: model version -> the bundle's validation good-part scores (drift reference).
    """
    custom_plans(session)
    only = {"station_id": station_id, "part_number": part_number}
    rows = kpi_rollup(window, session=session, **only)
    answers = answer_counts(window, session=session, **only)
    lat = latencies_ms(window, session=session, station_id=station_id, part_number=part_number)
    overall = compute_kpis(_counts(rows, answers, window.hours, lat))
    stations = sorted({r.station_id for r in rows})
    by_station = _grouped(rows, answers, lambda r: r.station_id, lambda a: a.station_id, window.hours)
    shift_names = {h: shift_of_hour(h, shifts) for h in range(24)}
    by_shift = _grouped(
        rows,
        answers,
        lambda r: shift_names[r.hour_of_day],
        lambda a: shift_names[a.hour_of_day],
        window.hours,
    )
    by_model = _grouped(
        rows, answers, lambda r: r.model_version or "(none)", lambda a: a.model_version or "(none)", window.hours
    )
    by_part = _grouped(
        rows,
        answers,
        lambda r: r.part_number or "(not recorded)",
        lambda a: a.part_number or "(not recorded)",
        window.hours,
    )
    span = display_span(window)
    subgroups = station_hours(window, session=session, span=span, **only)
    charts = [station_chart(session, window, s, hours=subgroups, span=span) for s in stations]
    kappas: dict[str, Kappa] = {}
    by_model_answers: dict[str, list[AnswerCount]] = defaultdict(list)
    for a in answers:
        by_model_answers[a.model_version or "(none)"].append(a)
    for model, group in sorted(by_model_answers.items()):
        tally = vision_vs_reviewer_tally(group)
        if tally:
            kappas[model] = kappa_from_counts(tally, ["reject", "good"])
    reviewers = reviewer_pairs(window, session=session, station_id=station_id)
    ncrs = ncr_code_station_part_counts(window, session=session)
    drift = []
    references = dict(sorted((validation_scores or {}).items()))
    samples = score_samples(window, session=session, model_versions=list(references), station_id=station_id)
    for model, expected in references.items():
        if samples[model]:
            drift.append(drift_figure(model, expected, samples[model]))
    return Dashboard(
        window=window,
        overall=overall,
        by_station=by_station,
        by_shift=by_shift,
        by_model=by_model,
        by_part=by_part,
        charts=charts,
        pareto_codes=pareto(_summed(ncrs, 0, station_id=station_id, part_number=part_number)),
        pareto_stations=pareto(_summed(ncrs, 1, part_number=part_number)),
        pareto_parts=pareto(_summed(ncrs, 2, station_id=station_id)),
        kappa_by_model=kappas,
        kappa_reviewers=kappa_from_pairs(reviewers, ["reject", "good"]) if reviewers else None,
        drift=drift,
        inspected=overall.reject_rate.n,
        part_number=part_number,
    )


def default_window(now: datetime, days: int = 7) -> Window:
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return Window(end - timedelta(days=days), end)
