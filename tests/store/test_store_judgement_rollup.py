"""The judgement roll-up (migration 0012) gives exactly the raw answer counts, also while reviews are
superseded and audits answered after it ran (SQLite + PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select
from store_factories import DEFAULTS, T0, make_inspection

from vinspect.store import repository as repo
from vinspect.store.analytics_queries import Window, adjudications, answer_counts, audit_answers
from vinspect.store.analytics_rollup import rebuild, roll_up
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.db import session_scope
from vinspect.store.judgement_rollup import judgement_marks
from vinspect.store.ncr import ReviewDecision, ReviewInput, Role
from vinspect.store.tables import JudgementHourRecord
from vinspect.types import Verdict

Key = tuple[str, int, str, str, str, str]  # station, hour of day, model, part number, vision, human


def _users(engine: Engine) -> dict[str, int]:
    with session_scope(engine) as session:
        return {
            name: repo.create_user(
                name,
                session=session,
                display_name=name.title(),
                role=role,
                password_hash="argon2$x",
                actor="system:bootstrap",
            ).id
            for name, role in (("rita", Role.REVIEWER), ("rob", Role.REVIEWER), ("quinn", Role.QUALITY_ENGINEER))
        }


def _ncrs(engine: Engine) -> list[str]:
    """Eight NCRs, 40 minutes apart from 08:05 (hours 08..13), stations st-1/st-2 alternating."""
    out = []
    with session_scope(engine) as session:
        for i in range(8):
            at = T0 + timedelta(minutes=5 + 40 * i)
            insp = make_inspection(100 + i, station="st-1" if i % 2 == 0 else "st-2", size=16, with_map=False, at=at)
            out.append(repo.open_ncr(insp, session=session, defaults=DEFAULTS, now=at).ncr_uuid)
    return out


def _passes(engine: Engine) -> list[str]:
    """Six PASS parts, one per hour from 08:20 (st-1 and st-2 alternating)."""
    parts = [
        make_inspection(
            200 + i,
            verdict=Verdict.PASS,
            station="st-1" if i % 2 == 0 else "st-2",
            size=16,
            with_map=False,
            at=T0 + timedelta(hours=i, minutes=20),
        )
        for i in range(6)
    ]
    with session_scope(engine) as session:
        repo.add_inspections(parts, session=session, now=T0 + timedelta(hours=6))
    return [p.inspection_id for p in parts]


def _review(engine: Engine, ncr_uuid: str, user: int, decision: ReviewDecision, *, supersede: bool = False) -> None:
    with session_scope(engine) as session:
        if not supersede:
            repo.claim_ncr(ncr_uuid, session=session, user_id=user)
        step = repo.supersede_review if supersede else repo.add_review
        step(ncr_uuid, session=session, review=ReviewInput(user_id=user, decision=decision, reason="seen"))


def _audit(engine: Engine, inspection_id: str, user: int, answer: str) -> None:
    with session_scope(engine) as session:
        append_audit(
            AuditEntry(
                actor=f"user:{user}",
                action="sample.review",
                entity="inspection",
                entity_id=inspection_id,
                field="decision",
                new_value=answer,
                old_value="PASS",
                reason="blind audit [defect_code=-]",
            ),
            session=session,
        )


def _counted(engine: Engine, window: Window, **only: str) -> Counter[Key]:
    """What the dashboard reads (roll-up + corrections), keyed with vision as PASS / reject."""
    with session_scope(engine, readonly=True) as session:
        rows = answer_counts(window, session=session, **only)  # type: ignore[arg-type]
    out: Counter[Key] = Counter()
    for a in rows:
        vision = "PASS" if a.machine == "PASS" else "reject"
        out[(a.station_id, a.hour_of_day, a.model_version or "", a.part_number or "", vision, a.human)] += a.n
    return +out


def _raw(engine: Engine, window: Window, **only: str) -> Counter[Key]:
    """The same from the per-row queries (each NCR's newest review in Python, every audit row)."""
    with session_scope(engine, readonly=True) as session:
        answers = [
            *adjudications(window, session=session, **only),  # type: ignore[arg-type]
            *audit_answers(window, session=session, **only),  # type: ignore[arg-type]
        ]
    out: Counter[Key] = Counter()
    for a in answers:
        vision = "PASS" if a.machine == "PASS" else "reject"
        out[(a.station_id, a.at.hour, a.model_version or "", a.part_number or "", vision, a.human)] += 1
    return +out


_WINDOWS = [
    Window(T0, T0 + timedelta(days=1)),  # whole hours
    Window(T0 + timedelta(minutes=30), T0 + timedelta(hours=4, minutes=50)),  # partial edge hours
    Window(T0 + timedelta(hours=2, minutes=1), T0 + timedelta(hours=2, minutes=59)),  # inside one hour
    Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),  # whole months: the month level
    Window(datetime(2025, 12, 31, 12, 30, tzinfo=UTC), datetime(2026, 2, 3, 5, tzinfo=UTC)),  # a month + hours
]


def _check(engine: Engine) -> Counter[Key]:
    for w in _WINDOWS:
        assert _counted(engine, w) == _raw(engine, w), w
        assert _counted(engine, w, station_id="st-2") == _raw(engine, w, station_id="st-2"), w
        assert _counted(engine, w, part_number="P-404") == Counter()
    return _counted(engine, _WINDOWS[0])


def _humans(counts: Counter[Key]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for key, n in counts.items():
        out[key[5]] += n
    return dict(out)


def _table(engine: Engine) -> dict[str, int]:
    with session_scope(engine, readonly=True) as session:
        rows = session.execute(
            select(JudgementHourRecord.human, func.sum(JudgementHourRecord.n)).group_by(JudgementHourRecord.human)
        )
        return {str(h): int(n) for h, n in rows if int(n)}


def test_judgement_rollup_follows_late_reviews_supersedes_and_audits(engine: Engine) -> None:
    users = _users(engine)
    ncrs = _ncrs(engine)
    passes = _passes(engine)
    _review(engine, ncrs[0], users["rita"], ReviewDecision.CONFIRMED_DEFECT)
    _review(engine, ncrs[1], users["rita"], ReviewDecision.FALSE_REJECT)
    _review(engine, ncrs[2], users["rob"], ReviewDecision.CONFIRMED_DEFECT)
    _review(engine, ncrs[3], users["rob"], ReviewDecision.NEEDS_MRB)
    _audit(engine, passes[0], users["rita"], "CONFORMS")
    _audit(engine, passes[1], users["rob"], "ESCAPE")
    before = _check(engine)  # nothing rolled up yet: everything counted above the (zero) marks
    assert _humans(before) == {"CONFIRMED_DEFECT": 2, "FALSE_REJECT": 1, "NEEDS_MRB": 1, "CONFORMS": 1, "ESCAPE": 1}

    first = roll_up(engine, chunk=12, max_chunks=1)  # part of the review events and audit rows counted
    with session_scope(engine, readonly=True) as session:
        part = judgement_marks(session)
    assert part.reviews == 12 and part.audits == 12
    assert _check(engine) == before
    assert first.reviews < 4
    roll_up(engine)
    assert _table(engine) == _humans(before)
    assert _check(engine) == before

    # after the roll-up: NCR 0 (08:05, a rolled-up hour) superseded by a quality engineer, NCR 4 reviewed
    # late, another part's audit answered; the roll-up's old answer for NCR 0 must not count any more
    _review(engine, ncrs[0], users["quinn"], ReviewDecision.FALSE_REJECT, supersede=True)
    _review(engine, ncrs[4], users["rob"], ReviewDecision.CONFIRMED_DEFECT)
    _audit(engine, passes[2], users["rita"], "CONFORMS")
    after = _check(engine)
    assert _humans(after) == {"CONFIRMED_DEFECT": 2, "FALSE_REJECT": 2, "NEEDS_MRB": 1, "CONFORMS": 2, "ESCAPE": 1}
    st1_08 = ("st-1", 8, "2026.01.1", "TILE-100", "reject")
    assert after[(*st1_08, "FALSE_REJECT")] == 1 and after[(*st1_08, "CONFIRMED_DEFECT")] == 0
    assert _table(engine) == _humans(before)  # not rolled up yet: corrected while reading

    moved = roll_up(engine)
    assert (moved.reviews, moved.audits) == (2, 1)
    assert _table(engine) == _humans(after)  # NCR 0 moved from CONFIRMED_DEFECT to FALSE_REJECT, not added
    assert _check(engine) == after
    assert roll_up(engine).reviews == 0  # nothing new, nothing counted twice
    rebuilt = rebuild(engine)
    assert rebuilt.audits == 3
    assert _table(engine) == _humans(after)
    assert _check(engine) == after


def test_migration_0012_fills_the_month_level_from_the_hours_already_counted(store_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from vinspect.store.db import make_engine
    from vinspect.store.migrations import _config, upgrade
    from vinspect.store.tables import InspectionMonthRecord

    engine = make_engine(store_url)
    try:
        with engine.begin() as connection:  # a store at the revision before this one (0011), with hours counted
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, "0011")
            for hour, parts in (
                ("2026-01-15 08", 5),
                ("2026-01-20 08", 7),
                ("2026-01-20 09", 11),
                ("2026-02-01 08", 13),
            ):
                connection.execute(
                    text(
                        "INSERT INTO inspection_hourly VALUES "
                        "(:hour, 'st-1', 'P-1', 'm1', 'PASS', '', :parts, 1, :parts, :parts)"
                    ),
                    {"hour": hour, "parts": parts},
                )
        upgrade(engine)
        with session_scope(engine, readonly=True) as session:
            rows = session.execute(
                select(InspectionMonthRecord.hour, InspectionMonthRecord.parts, InspectionMonthRecord.model_rejects)
            ).all()
        assert sorted((h, int(p), int(r)) for h, p, r in rows) == [
            ("2026-01-01 08", 12, 2),  # January, 08:00-09:00 UTC: 5 + 7 parts
            ("2026-01-01 09", 11, 1),
            ("2026-02-01 08", 13, 1),
        ]
    finally:
        engine.dispose()
