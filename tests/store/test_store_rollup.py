"""The hourly roll-up (migration 0008) gives exactly the raw counts, also while data arrives (SQLite + PostgreSQL)."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from store_factories import T0, make_inspection

from vinspect.store import repository as repo
from vinspect.store.analytics_queries import HourRow, Window, hourly_rollup, kpi_rollup, station_hours
from vinspect.store.analytics_rollup import rebuild, roll_up, watermark
from vinspect.store.db import session_scope
from vinspect.store.tables import InspectionHourRecord, InspectionMonthRecord, InspectionRecord
from vinspect.store.verify import verify_store
from vinspect.types import Verdict

_KINDS = [
    (Verdict.PASS, ()),
    (Verdict.PASS, ()),
    (Verdict.PASS, ()),
    (Verdict.FAIL, ("score",)),
    (Verdict.REVIEW, ("review_band",)),
    (Verdict.FAIL, ("timeout",)),
    (Verdict.FAIL, ("score", "late")),
]


def _store(engine: Engine, first: int, n: int, *, hours: int = 7) -> None:
    """``n`` parts over ``hours`` hours (minutes apart, unaligned), two stations, two part numbers, two models;
    every fourth part id repeats an earlier one (a re-inspection, not a first pass)."""
    for start in range(first, first + n, 10):
        batch = {}
        for seq in range(start, min(start + 10, first + n)):
            verdict, reasons = _KINDS[seq % len(_KINDS)]
            at = T0 + timedelta(minutes=7 + seq * 60 * hours // 200)
            station = "st-1" if seq % 3 else "st-2"
            insp = make_inspection(
                seq, verdict=verdict, reasons=reasons, station=station, size=16, with_map=False, at=at
            )
            assert insp.frame is not None
            if seq % 4 == 0 and seq > 8:
                insp = dataclasses.replace(insp, frame=dataclasses.replace(insp.frame, part_id=f"SN-{seq - 1:06d}"))
            if seq % 5 == 0:
                insp = dataclasses.replace(insp, model=dataclasses.replace(insp.model, version="2026.02.1"))
            batch.setdefault((station, "P-2" if seq % 2 else "P-1", at.replace(second=0)), []).append(insp)
        for (_station, part, at), group in batch.items():
            with session_scope(engine) as session:
                repo.add_inspections(group, session=session, now=at, part_number=part)


def _totals(rows: list[HourRow]) -> dict[tuple[str, str, str, str, str], tuple[int, int, int, int, dict[str, int]]]:
    out: dict[tuple[str, str, str, str, str], list[object]] = {}
    for r in rows:
        key = (r.hour.isoformat(), r.station_id, r.part_number or "", r.model_version or "", r.verdict)
        assert key not in out
        out[key] = [r.count, r.model_rejects, r.first, r.first_passed, r.faults]
    return {k: tuple(v) for k, v in out.items()}  # type: ignore[misc]


def _read(engine: Engine, window: Window, **kw: str) -> dict[tuple[str, str, str, str, str], tuple[object, ...]]:
    """Hourly rows, checked against the two coarser grains the dashboard reads (same window, same filter)."""
    with session_scope(engine, readonly=True) as session:
        hourly = hourly_rollup(window, session=session, **kw)  # type: ignore[arg-type]
        by_hour_of_day = kpi_rollup(window, session=session, **kw)  # type: ignore[arg-type]
        subgroups = station_hours(window, session=session, **kw)  # type: ignore[arg-type]
    for grain, rows in (("hour of day", by_hour_of_day), ("station hour", subgroups)):
        parts = sum(getattr(r, "count", 0) or getattr(r, "parts", 0) for r in rows)
        assert parts == sum(r.count for r in hourly), grain
        assert sum(r.model_rejects for r in rows) == sum(r.model_rejects for r in hourly), grain
    assert sum(r.first_passed for r in by_hour_of_day) == sum(r.first_passed for r in hourly)
    per_hour: dict[tuple[object, str], list[int]] = {}
    for r in hourly:
        slot = per_hour.setdefault((r.hour, r.station_id), [0, 0])
        slot[0] += r.model_rejects
        slot[1] += r.count
    assert {(h.hour, h.station_id): [h.model_rejects, h.parts] for h in subgroups} == per_hour
    return _totals(hourly)


_WINDOWS = [
    Window(T0, T0 + timedelta(days=1)),  # whole hours
    Window(T0 + timedelta(minutes=37), T0 + timedelta(hours=5, minutes=11)),  # partial edge hours
    Window(T0 + timedelta(hours=2, minutes=5), T0 + timedelta(hours=2, minutes=50)),
]  # inside one hour


def test_rollup_equals_raw_counts_while_rows_arrive(engine: Engine) -> None:
    _store(engine, 1, 120)
    raw = {i: _read(engine, w) for i, w in enumerate(_WINDOWS)}
    raw_part = _read(engine, _WINDOWS[0], part_number="P-2")
    raw_station = _read(engine, _WINDOWS[1], station_id="st-2")
    assert sum(v[0] for v in raw[0].values()) == 120  # type: ignore[misc]
    # hand-checked: of seq 1..120, FAIL score = seq%7==3 (17 parts) + REVIEW (17) + score+late (17) model rejects
    assert sum(v[1] for v in raw[0].values()) == 17 + 17 + 17  # type: ignore[misc]
    # re-inspections: seq%4==0 and seq>8 -> 28 parts are not first inspections
    assert sum(v[2] for v in raw[0].values()) == 120 - 28  # type: ignore[misc]

    done = roll_up(engine, chunk=50, max_chunks=1)  # part of the rows counted: the rest are read raw
    assert (done.rows, done.last_id) == (50, 50)
    assert {i: _read(engine, w) for i, w in enumerate(_WINDOWS)} == raw
    full = roll_up(engine, chunk=50)
    assert full.rows == 70 and full.last_id == 120
    assert {i: _read(engine, w) for i, w in enumerate(_WINDOWS)} == raw
    assert _read(engine, _WINDOWS[0], part_number="P-2") == raw_part
    assert _read(engine, _WINDOWS[1], station_id="st-2") == raw_station
    with session_scope(engine, readonly=True) as session:
        assert int(session.scalar(select(func.sum(InspectionHourRecord.parts))) or 0) == 120
        assert watermark(session) == 120

    # rows arriving after the roll-up, some of them late (in an hour already counted): read raw, then counted
    _store(engine, 121, 60, hours=3)
    with session_scope(engine, readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(InspectionRecord)) == 180
    grown = {i: _read(engine, w) for i, w in enumerate(_WINDOWS)}
    assert sum(v[0] for v in grown[0].values()) == 180  # type: ignore[misc]
    assert roll_up(engine).rows == 60
    assert {i: _read(engine, w) for i, w in enumerate(_WINDOWS)} == grown
    assert roll_up(engine).rows == 0  # idempotent: nothing new, nothing counted twice
    assert rebuild(engine).rows == 180
    assert {i: _read(engine, w) for i, w in enumerate(_WINDOWS)} == grown
    with session_scope(engine, readonly=True) as session:
        assert verify_store(session=session).ok


def test_inspection_part_number_is_covered_by_the_audit(engine: Engine) -> None:
    _store(engine, 1, 10)
    with session_scope(engine, readonly=True) as session:
        assert verify_store(session=session).ok
    with engine.connect() as conn:
        conn.begin()
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER inspections_no_update")
        else:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql("UPDATE inspections SET part_number = 'P-9' WHERE id = 3")
        problems = verify_store(session=Session(bind=conn)).problems
        conn.rollback()
    assert any(p.startswith("inspections ") and "rows differ" in p for p in problems), problems


def _coarse(engine: Engine, window: Window, span: str) -> dict[tuple[str, str], tuple[int, int]]:
    with session_scope(engine, readonly=True) as session:
        hourly = station_hours(window, session=session)
        coarse = station_hours(window, session=session, span=span)
    assert sum(h.parts for h in coarse) == sum(h.parts for h in hourly)
    expected: dict[tuple[str, str], list[int]] = {}
    for h in hourly:  # the same subgroups summed here: UTC days, weeks from Monday 00:00 UTC
        start = h.hour.replace(hour=0) - timedelta(days=h.hour.weekday() if span == "week" else 0)
        slot = expected.setdefault((h.station_id, start.isoformat()), [0, 0])
        slot[0] += h.parts
        slot[1] += h.model_rejects
    got = {(c.station_id, c.hour.isoformat()): (c.parts, c.model_rejects) for c in coarse}
    assert got == {k: tuple(v) for k, v in expected.items()}
    assert [(c.station_id, c.hour) for c in coarse] == sorted((c.station_id, c.hour) for c in coarse)
    return got


def test_daily_and_weekly_subgroups_sum_the_hours(engine: Engine) -> None:
    # 120 parts 86.4 min apart from Thursday 2026-01-15 08:07 UTC to Thursday 01-22: seq 1..61 before
    # Monday 01-19 00:00 (7 + floor(86.4 * 61) = 5277 min < 88 h = 5280 min), seq 62..120 after it
    _store(engine, 1, 120, hours=288)
    window = Window(T0 - timedelta(days=2), T0 + timedelta(days=10))
    for step in ("raw", "half rolled up", "rolled up"):
        weeks = _coarse(engine, window, "week")
        both = {}
        for (_station, start), (parts, rejects) in weeks.items():
            slot = both.setdefault(start[:10], [0, 0])
            slot[0] += parts
            slot[1] += rejects
        # model rejects: seq % 7 in (3, 4, 6) -> 26 of seq 1..61, 25 of seq 62..120; st-2: seq % 3 == 0
        assert both == {"2026-01-12": [61, 26], "2026-01-19": [59, 25]}
        assert weeks[("st-2", "2026-01-12T00:00:00+00:00")][0] == 20
        days = _coarse(engine, window, "day")
        assert sorted({start[:10] for _s, start in days}) == [f"2026-01-{d}" for d in range(15, 23)]
        edge = Window(T0 + timedelta(hours=30, minutes=13), T0 + timedelta(days=5, minutes=1))  # partial days
        _coarse(engine, edge, "day")
        _coarse(engine, edge, "week")
        if step == "raw":
            assert roll_up(engine, chunk=50, max_chunks=1).rows == 50  # then part counted, the rest read raw
        elif step == "half rolled up":
            assert roll_up(engine).rows == 70
    with session_scope(engine, readonly=True) as session, pytest.raises(ValueError, match=r"'month'.*hour, day, week"):
        station_hours(window, session=session, span="month")


def _by_hour_of_day(engine: Engine, window: Window) -> tuple[dict[tuple[object, ...], tuple[int, ...]], ...]:
    """The hour-of-day counts as the dashboard reads them (whole months from the month level) and the same
    summed here from the hour level."""
    with session_scope(engine, readonly=True) as session:
        kpi = kpi_rollup(window, session=session)
        hourly = hourly_rollup(window, session=session)
    read = {
        (r.hour_of_day, r.station_id, r.part_number, r.model_version, r.verdict): (
            r.count,
            r.model_rejects,
            r.first,
            r.first_passed,
            tuple(sorted(r.faults.items())),
        )
        for r in kpi
    }
    summed: dict[tuple[object, ...], list[object]] = {}
    for h in hourly:
        slot = summed.setdefault(
            (h.hour.hour, h.station_id, h.part_number, h.model_version, h.verdict), [0, 0, 0, 0, {}]
        )
        for i, v in enumerate((h.count, h.model_rejects, h.first, h.first_passed)):
            slot[i] += v  # type: ignore[operator]
        for reason, n in h.faults.items():
            slot[4][reason] = slot[4].get(reason, 0) + n  # type: ignore[index, union-attr, attr-defined]
    expected = {k: (*v[:4], tuple(sorted(v[4].items()))) for k, v in summed.items()}  # type: ignore[union-attr]
    return read, expected  # type: ignore[return-value]


def test_month_level_equals_its_hours_while_rows_arrive(engine: Engine) -> None:
    # 120 parts 14.4 h apart from 2026-01-15 08:07 UTC to 2026-03-26: whole months January to March
    _store(engine, 1, 120, hours=24 * 72)
    windows = [
        Window(T0.replace(day=1, hour=0), T0.replace(month=4, day=1, hour=0)),  # three whole months
        Window(T0 + timedelta(days=3, minutes=30), T0 + timedelta(days=55, hours=5, minutes=10)),  # February + edges
        Window(T0 - timedelta(days=40), T0 + timedelta(days=10)),  # December (empty) + part of January
    ]
    total = 0
    for step in ("raw", "half rolled up", "rolled up", "late rows", "rolled up again", "rebuilt"):
        for w in windows:
            read, expected = _by_hour_of_day(engine, w)
            assert read == expected, (step, w)
        read, _ = _by_hour_of_day(engine, windows[0])
        total = sum(v[0] for v in read.values())
        if step == "raw":
            assert total == 120
            assert roll_up(engine, chunk=50, max_chunks=1).rows == 50
        elif step == "half rolled up":
            roll_up(engine)
        elif step == "rolled up":
            with session_scope(engine, readonly=True) as session:
                months = session.scalar(select(func.sum(InspectionMonthRecord.parts)))
            assert months == 120  # the month level holds every part once
            _store(engine, 121, 20, hours=24 * 30)  # late rows: into January and February, already rolled up
        elif step == "late rows":
            assert total == 140
            assert roll_up(engine).rows == 20
        elif step == "rolled up again":
            assert rebuild(engine).rows == 140
    assert total == 140


def test_part_count_baseline_drawn_from_the_rollup_beyond_a_week(engine: Engine) -> None:
    from vinspect.quality.dashboard import station_chart
    from vinspect.store.alarms import record_baseline

    # 120 parts 86.4 min apart from 2026-01-15 08:07 UTC (st-1: seq % 3 != 0, 80 parts), as in the test above
    _store(engine, 1, 120, hours=288)
    roll_up(engine)
    with session_scope(engine) as session:
        record_baseline(
            session=session,
            station_id="st-1",
            chart="reject_rate",
            window_from=T0 - timedelta(days=30),
            window_to=T0,
            subgroup_minutes=0,
            subgroup_parts=5,
            p_bar=0.4,
            subgroups=20,
            parts=100,
            defects=40,
            actor="test",
            user_id=None,
            reason="part-count limits",
        )
    week = Window(T0, T0 + timedelta(days=7))
    long = Window(T0 - timedelta(days=2), T0 + timedelta(days=10))
    with session_scope(engine, readonly=True) as session:
        by_parts = station_chart(session, week, "st-1", span="hour")
        by_days = station_chart(session, long, "st-1", span="day")
        days = station_hours(long, session=session, station_id="st-1", span="day")
    # a week: subgroups of 5 consecutive parts of st-1, read from the rows (st-1 parts in the week: seq 1..116)
    assert by_parts.by_parts == 5 and set(by_parts.sizes) == {5}
    assert len(by_parts.sizes) == sum(1 for seq in range(1, 117) if seq % 3) // 5
    # beyond a week: the roll-up's UTC days, all 80 parts of st-1, limits around the same frozen p-bar
    assert by_days.by_parts is None and by_days.span == "day"
    assert by_days.sizes == [d.parts for d in days] and sum(by_days.sizes) == 80
    assert by_days.defects == [d.model_rejects for d in days]
    assert [p.n for p in by_days.points] == by_days.sizes
    assert all(abs(p.ucl - min(1.0, 0.4 + 3 * math.sqrt(0.4 * 0.6 / p.n))) < 1e-9 for p in by_days.points)


def test_part_subgroups_are_numbered_in_the_database(engine: Engine) -> None:
    from vinspect.store.analytics_queries import part_subgroups

    _store(engine, 1, 120)  # st-1: seq % 3 != 0 (80 parts), model rejects: seq % 7 in (3, 4, 6)
    window = Window(T0, T0 + timedelta(days=1))
    with session_scope(engine, readonly=True) as session:
        groups = part_subgroups(window, session=session, station_id="st-1", size=7)
        times = dict(session.execute(select(InspectionRecord.part_seq, InspectionRecord.recorded_at)).all())
    mine = [seq for seq in range(1, 121) if seq % 3]
    whole = [mine[i : i + 7] for i in range(0, len(mine) - len(mine) % 7, 7)]  # 11 groups, the last 3 parts left out
    assert [(g.size, g.rejects) for g in groups] == [(7, sum(1 for s in w if s % 7 in (3, 4, 6))) for w in whole]
    assert [(g.first_at, g.last_at) for g in groups] == [(times[w[0]], times[w[-1]]) for w in whole]
    with session_scope(engine, readonly=True) as session, pytest.raises(ValueError, match="at least 1 part"):
        part_subgroups(window, session=session, station_id="st-1", size=0)
