"""CAPA (8D), SPC baselines, quality alarms and the analytics read queries (SQLite + PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from store_factories import DEFAULTS, T0, make_inspection

from vinspect.errors import StateError
from vinspect.store import repository as repo
from vinspect.store.alarms import acknowledge_alarm, list_alarms, raise_alarm, record_baseline
from vinspect.store.analytics_queries import (
    Window,
    adjudications,
    answer_counts,
    audit_answers,
    hourly_rollup,
    ncr_code_counts,
    vision_vs_reviewer,
    vision_vs_reviewer_counts,
)
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.capa import STEPS, capas_for_ncrs, close_capa, edit_step, get_capa, open_capa, sign_step
from vinspect.store.db import session_scope
from vinspect.store.lifecycle import verify_signature
from vinspect.store.ncr import ReviewDecision, ReviewInput, Role
from vinspect.store.review_queries import audit_rows
from vinspect.store.tables import SignatureRecord
from vinspect.store.verify import verify_store
from vinspect.types import Verdict


def _users(engine: Engine) -> dict[str, int]:
    ids = {}
    with session_scope(engine) as session:
        for name, role in (
            ("rita", Role.REVIEWER),
            ("quinn", Role.QUALITY_ENGINEER),
            ("otto", Role.OPERATOR),
            ("ada", Role.ADMIN),
        ):
            ids[name] = repo.create_user(
                name,
                session=session,
                display_name=name.title() + " Example",
                role=role,
                password_hash="argon2$x",
                actor="system:bootstrap",
            ).id
    return ids


def _ncrs(engine: Engine, n: int) -> list[str]:
    out = []
    with session_scope(engine) as session:
        for seq in range(1, n + 1):
            out.append(repo.open_ncr(make_inspection(seq), session=session, defaults=DEFAULTS).ncr_uuid)
    return out


def _open(engine: Engine, users: dict[str, int], ncrs: list[str]) -> str:
    owners = {s: users["rita"] if s in ("D2", "D3", "D4") else users["quinn"] for s in STEPS}
    due = {s: T0 + timedelta(days=7) for s in STEPS}
    with session_scope(engine) as session:
        return open_capa(
            session=session,
            user_id=users["quinn"],
            title="Cracks at the edge",
            source="ncr",
            source_ref=ncrs[0],
            ncr_uuids=ncrs,
            defect_codes=["crack"],
            station_id="st-1",
            owners=owners,
            due=due,
            baseline={"measure": "reject_rate", "k": 40, "n": 1000},
        )


def test_capa_8d_flow_is_signed_audited_and_verifiable(engine: Engine) -> None:
    users = _users(engine)
    ncrs = _ncrs(engine, 2)
    number = _open(engine, users, ncrs)
    assert number.startswith("CAPA-") and number.endswith("-0001")
    with pytest.raises(StateError, match="owned by another person"), session_scope(engine) as session:
        edit_step(number, "D2", {"text": "x"}, session=session, user_id=users["quinn"])
    with pytest.raises(StateError, match="is empty"), session_scope(engine) as session:
        sign_step(number, "D2", session=session, user_id=users["rita"])
    with pytest.raises(StateError, match="fishbone"), session_scope(engine) as session:
        edit_step(number, "D4", {"text": "why", "category": "luck"}, session=session, user_id=users["rita"])
    for step in STEPS:
        who = users["rita"] if step in ("D2", "D3", "D4") else users["quinn"]
        with session_scope(engine) as session:
            edit_step(number, step, {"text": f"{step} written", "category": "machine"}, session=session, user_id=who)
        if step == "D7":
            with pytest.raises(StateError, match="D7 not signed"), session_scope(engine) as session:
                close_capa(
                    number, session=session, user_id=users["quinn"], recognition="team", reason="done", effectiveness={}
                )
        with session_scope(engine) as session:
            sign_step(number, step, session=session, user_id=who)
    with pytest.raises(StateError, match="already signed"), session_scope(engine) as session:
        edit_step(number, "D2", {"text": "changed"}, session=session, user_id=users["rita"])
    with pytest.raises(StateError, match="quality engineer"), session_scope(engine) as session:
        close_capa(number, session=session, user_id=users["rita"], recognition="team", reason="done", effectiveness={})
    with session_scope(engine) as session:
        close_capa(
            number,
            session=session,
            user_id=users["quinn"],
            recognition="thanks to the line team",
            reason="reject rate down, significant",
            effectiveness={"p_value": 0.001},
        )
    with session_scope(engine, readonly=True) as session:
        view = get_capa(number, session=session)
        links = capas_for_ncrs(ncrs, session=session)
        actions = [r.action for r in audit_rows(session=session, entity="capa", entity_id=number, limit=500)]
        sigs = list(session.query(SignatureRecord).filter(SignatureRecord.entity == "capa"))
        assert all(verify_signature(s.id, session=session) for s in sigs)
        report = verify_store(session=session)
    assert view is not None and view.summary.status == "CLOSED" and view.summary.signed_steps == 8
    assert view.closure is not None and view.closure["meaning"] == "APPROVAL"
    assert [s.signature["meaning"] for s in view.steps if s.signature] == ["AUTHORSHIP"] * 8
    assert {n for _, n in view.ncrs} == {"NCR-2026-000001", "NCR-2026-000002"}
    assert links[ncrs[0]][0]["capa_number"] == number and links[ncrs[1]][0]["status"] == "CLOSED"
    assert actions.count("capa.step.sign") == 8 and "capa.close" in actions and "capa.open" in actions
    assert actions.count("capa.link") == 2 and actions.count("capa.step.edit") == 8
    assert len(sigs) == 9 and report.ok, report


def test_capa_open_refuses_non_engineers_unknown_ncrs_and_missing_owners(engine: Engine) -> None:
    users = _users(engine)
    owners = dict.fromkeys(STEPS, users["rita"])
    due = dict.fromkeys(STEPS, T0)
    kwargs = dict(title="t", source="ncr", source_ref="x", owners=owners, due=due, baseline={})
    with pytest.raises(StateError, match="quality engineer"), session_scope(engine) as session:
        open_capa(session=session, user_id=users["rita"], ncr_uuids=["nope"], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(StateError, match="no NCR nope"), session_scope(engine) as session:
        open_capa(session=session, user_id=users["quinn"], ncr_uuids=["nope"], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(StateError, match=r"D0 .* needs an owner"), session_scope(engine) as session:
        open_capa(
            session=session,
            user_id=users["quinn"],
            ncr_uuids=[],
            **{
                **kwargs,
                "source": "pareto",  # type: ignore[arg-type]
                "owners": {},
            },
        )
    with pytest.raises(StateError, match="admins"), session_scope(engine) as session:
        open_capa(
            session=session,
            user_id=users["quinn"],
            **{
                **kwargs,
                "source": "pareto",  # type: ignore[arg-type]
                "owners": dict.fromkeys(STEPS, users["ada"]),
            },
        )


def test_a_signed_step_changed_behind_the_app_shows_as_not_intact(engine: Engine) -> None:
    users = _users(engine)
    number = _open(engine, users, _ncrs(engine, 1))
    with session_scope(engine) as session:
        edit_step(number, "D0", {"text": "plan"}, session=session, user_id=users["quinn"])
        sig_id = sign_step(number, "D0", session=session, user_id=users["quinn"])
    with session_scope(engine, readonly=True) as session:
        view = get_capa(number, session=session)
        assert view is not None and view.steps[0].intact and verify_signature(sig_id, session=session)
    with session_scope(engine) as session:  # capa_steps is mutable: an edit outside the application
        session.execute(text("UPDATE capa_steps SET content = '{\"text\":\"other plan\"}' WHERE step = 'D0'"))
    with session_scope(engine, readonly=True) as session:
        view = get_capa(number, session=session)
    assert view is not None and not view.steps[0].intact and view.steps[1].intact


def test_alarm_raised_once_per_run_and_acknowledged_once_signed(engine: Engine) -> None:
    users = _users(engine)
    with session_scope(engine) as session:
        first, new = raise_alarm(
            session=session,
            kind="spc",
            station_id="st-1",
            chart="reject_rate",
            rule=1,
            first_at=T0,
            last_at=T0,
            detail={"rule": 1},
        )
        again, new2 = raise_alarm(
            session=session,
            kind="spc",
            station_id="st-1",
            chart="reject_rate",
            rule=1,
            first_at=T0,
            last_at=T0 + timedelta(hours=1),
            detail={"rule": 1},
        )
    assert new and not new2 and again.id == first.id and again.last_at == T0 + timedelta(hours=1)
    with pytest.raises(StateError, match="reason"), session_scope(engine) as session:
        acknowledge_alarm(first.id, session=session, user_id=users["otto"], reason=" ")
    with pytest.raises(StateError, match="may not sign"), session_scope(engine) as session:
        acknowledge_alarm(first.id, session=session, user_id=users["ada"], reason="seen")
    with session_scope(engine) as session:
        acked = acknowledge_alarm(first.id, session=session, user_id=users["otto"], reason="tool change at 08:00")
    with pytest.raises(StateError, match="already"), session_scope(engine) as session:
        acknowledge_alarm(first.id, session=session, user_id=users["rita"], reason="again")
    with session_scope(engine, readonly=True) as session:
        assert list_alarms(session=session, open_only=True) == []
        assert verify_signature(acked.ack_signature_id or 0, session=session)
        assert verify_store(session=session).ok
    with pytest.raises(StateError, match="quality engineer"), session_scope(engine) as session:
        record_baseline(
            session=session,
            station_id="st-1",
            chart="reject_rate",
            window_from=T0,
            window_to=T0,
            subgroup_minutes=60,
            p_bar=0.1,
            subgroups=20,
            parts=100,
            defects=10,
            actor="user:x",
            user_id=users["rita"],
            reason="r",
        )


def test_hourly_rollup_counts_verdicts_faults_and_first_inspections(engine: Engine) -> None:
    with session_scope(engine) as session:
        passes = [make_inspection(i, verdict=Verdict.PASS) for i in range(1, 9)]
        repo.add_inspections(passes, session=session, now=T0 + timedelta(minutes=5))
        repo.open_ncr(make_inspection(20), session=session, defaults=DEFAULTS, now=T0 + timedelta(minutes=10))
        repo.open_ncr(
            make_inspection(21, reasons=("timeout",)),
            session=session,
            defaults=DEFAULTS,
            now=T0 + timedelta(hours=1, minutes=1),
        )
        review = repo.open_ncr(
            make_inspection(22, verdict=Verdict.REVIEW),
            session=session,
            defaults=DEFAULTS,
            now=T0 + timedelta(hours=1, minutes=2),
        )
        # a re-inspection of part 1 later: not its first inspection
        again = make_inspection(30, verdict=Verdict.PASS)
        object.__setattr__(again.frame, "part_id", "SN-000001")
        repo.add_inspections([again], session=session, now=T0 + timedelta(hours=1, minutes=3))
    users = _users(engine)
    with session_scope(engine) as session:
        repo.claim_ncr(review.ncr_uuid, session=session, user_id=users["rita"])
        repo.add_review(
            review.ncr_uuid,
            session=session,
            review=ReviewInput(user_id=users["rita"], decision=ReviewDecision.FALSE_REJECT, reason="dust"),
        )
        append_audit(
            AuditEntry(
                actor=f"user:{users['rita']}",
                action="sample.review",
                entity="inspection",
                entity_id=passes[0].inspection_id,
                field="decision",
                new_value="ESCAPE",
                old_value="PASS",
                reason="chip [defect_code=chip]",
            ),
            session=session,
        )
    window = Window(T0, T0 + timedelta(hours=2))
    with session_scope(engine, readonly=True) as session:
        rows = hourly_rollup(window, session=session)
        adj = adjudications(window, session=session)
        answers = audit_answers(window, session=session)
        codes = ncr_code_counts(window, session=session)
        counted = answer_counts(window, session=session)
    by = {(r.hour.hour, r.verdict): r for r in rows}
    assert by[(8, "PASS")].count == 8 and by[(8, "PASS")].first_passed == 8
    assert by[(8, "FAIL")].model_rejects == 1
    assert by[(9, "FAIL")].faults == {"timeout": 1} and by[(9, "FAIL")].model_rejects == 0
    assert by[(9, "REVIEW")].model_rejects == 1
    assert by[(9, "PASS")].count == 1 and by[(9, "PASS")].first == 0
    assert [(a.machine, a.human) for a in adj] == [("REVIEW", "FALSE_REJECT")]
    assert [(a.human, a.defect_code) for a in answers] == [("ESCAPE", "chip")]
    assert vision_vs_reviewer([*adj, *answers]) == [("reject", "good"), ("good", "reject")]
    assert codes == {"crack": 2, "timeout": 1}
    # the same judgements counted in the database (what the dashboard reads)
    assert sorted(
        (a.station_id, a.hour_of_day, a.model_version, a.part_number or "-", a.machine, a.human, a.n) for a in counted
    ) == [
        ("st-1", 8, "2026.01.1", "-", "PASS", "ESCAPE", 1),
        ("st-1", 8, "2026.01.1", "TILE-100", "REJECT", "FALSE_REJECT", 1),
    ]
    assert sorted(vision_vs_reviewer_counts(counted)) == sorted(vision_vs_reviewer([*adj, *answers]))


def test_export_carries_capa_links_and_old_documents_stay_valid(engine: Engine) -> None:
    import csv
    import io
    import json

    import jsonschema

    from vinspect.store.export import ExportFormat, export_ncrs, schema
    from vinspect.store.ncr import NcrFilter

    users = _users(engine)
    ncrs = _ncrs(engine, 3)
    number = _open(engine, users, ncrs[:2])
    out, csv_out = io.StringIO(), io.StringIO()
    with session_scope(engine, readonly=True) as session:
        export_ncrs(out, session=session, fmt=ExportFormat.JSON, filters=NcrFilter())
        export_ncrs(csv_out, session=session, fmt=ExportFormat.CSV, filters=NcrFilter())
    docs = json.loads(out.getvalue())
    validator = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker())
    assert schema()["$id"].endswith("1.1.0")
    for doc in docs:
        assert list(validator.iter_errors(doc)) == [], doc["ncr_number"]
        assert doc["schema_version"] == "1.1.0"
    assert [c["capa_number"] for c in docs[0]["capas"]] == [number] and docs[2]["capas"] == []
    rows = list(csv.DictReader(io.StringIO(csv_out.getvalue())))
    assert json.loads(rows[1]["capas"])[0]["capa_number"] == number
    old = {k: v for k, v in docs[2].items() if k != "capas"}  # a 1.0.0 document: no capas field
    old["schema_version"] = "1.0.0"
    assert list(validator.iter_errors(old)) == []
    assert list(validator.iter_errors({**docs[0], "capas": [{"capa_number": "x"}]})) != []
