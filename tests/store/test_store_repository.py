"""Repository behaviour on both databases: NCR creation, lifecycle, signatures, users, books."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from store_factories import DEFAULTS, T0, make_inspection

from vinspect.errors import StateError, StoreError
from vinspect.store import repository as repo
from vinspect.store.db import session_scope
from vinspect.store.ncr import (
    CloseInput,
    ContainmentInput,
    CorrectionInput,
    DispositionCode,
    DispositionInput,
    NcrFilter,
    NcrStatus,
    ReviewDecision,
    ReviewInput,
    Role,
    SignatureMeaning,
)
from vinspect.store.tables import NcrRecord
from vinspect.store.verify import verify_store
from vinspect.types import Verdict


def _open(engine: Engine, seq: int, **kwargs: object) -> str:
    with session_scope(engine) as session:
        return repo.open_ncr(make_inspection(seq, **kwargs), session=session, defaults=DEFAULTS).ncr_uuid  # type: ignore[arg-type]


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


def _status(engine: Engine, ncr_uuid: str) -> NcrStatus | None:
    with session_scope(engine, readonly=True) as session:
        return repo.get_ncr_status(ncr_uuid, session=session)


def test_repository_open_ncr_fills_the_schema_fields(engine: Engine) -> None:
    ncr_uuid = _open(engine, 5)
    with session_scope(engine, readonly=True) as session:
        doc = repo.get_ncr(ncr_uuid, session=session)
    assert doc is not None
    assert doc["ncr_number"] == "NCR-2026-000001"
    assert doc["status"] == "OPEN" and doc["revision"] == 1
    assert doc["detection_point"] == "IN_PROCESS" and doc["detected_by"] == {"kind": "SYSTEM", "id": "system:st-1"}
    assert doc["serial_number"] == "SN-000005" and doc["camera_id"] == "cam-1"
    assert doc["machine_verdict"] == "REJECT" and doc["defect_code"] == "crack"
    assert doc["inference"]["model_sha256"] == "ab" * 32 and doc["inference"]["threshold"] == 0.71
    assert doc["containment"] == {
        "action": "SEGREGATED",
        "reject_actuation_confirmed": False,
        "location": None,
        "suspect_window": None,
    }
    assert doc["part_number"] == "TILE-100" and doc["requirement_ref"].startswith("DWG-100")
    assert doc["export_state"][0]["idempotency_key"] == f"{ncr_uuid}:1"


@pytest.mark.parametrize(
    ("reasons", "verdict", "code"),
    [
        (("late",), "ERROR_REJECT", "late"),
        (("score", "late"), "ERROR_REJECT", "late"),
        (("error:ValueError",), "ERROR_REJECT", "error:ValueError"),
        (("score",), "REJECT", "crack"),
    ],
)
def test_repository_fault_reasons_make_error_rejects(
    engine: Engine, reasons: tuple[str, ...], verdict: str, code: str
) -> None:
    ncr_uuid = _open(engine, 1, reasons=reasons)
    with session_scope(engine, readonly=True) as session:
        doc = repo.get_ncr(ncr_uuid, session=session)
    assert doc is not None and (doc["machine_verdict"], doc["defect_code"]) == (verdict, code)


def test_repository_ncr_numbers_are_gap_free_and_pass_is_refused(engine: Engine) -> None:
    for seq in range(4):
        _open(engine, seq)
    with pytest.raises(StoreError, match="PASS"), session_scope(engine) as session:
        repo.open_ncr(make_inspection(9, verdict=Verdict.PASS), session=session, defaults=DEFAULTS)
    with session_scope(engine, readonly=True) as session:
        numbers = list(session.scalars(select(NcrRecord.ncr_number).order_by(NcrRecord.ncr_seq)))
    assert numbers == [f"NCR-2026-{i:06d}" for i in range(1, 5)]


def test_repository_full_lifecycle_is_appended_signed_and_verifiable(engine: Engine) -> None:
    users = _users(engine)
    ncr_uuid = _open(engine, 1)
    with session_scope(engine) as session:
        repo.record_containment(
            ncr_uuid,
            session=session,
            containment=ContainmentInput(actor="system:st-1", reject_actuation_confirmed=True, location="bin-3"),
        )
        repo.claim_ncr(ncr_uuid, session=session, user_id=users["rita"])
        repo.add_review(
            ncr_uuid,
            session=session,
            review=ReviewInput(user_id=users["rita"], decision=ReviewDecision.CONFIRMED_DEFECT, reason="crack at edge"),
        )
        repo.add_disposition(
            ncr_uuid,
            session=session,
            disposition=DispositionInput(
                user_id=users["quinn"],
                code=DispositionCode.REWORK,
                quantity=1,
                justification="",
                rework_instruction_ref="WI-7",
            ),
        )
    with pytest.raises(StateError, match="reinspection"), session_scope(engine) as session:
        repo.close_ncr(ncr_uuid, session=session, close=CloseInput(user_id=users["quinn"], reason="done"))
    with session_scope(engine) as session:
        ref = repo.close_ncr(
            ncr_uuid,
            session=session,
            close=CloseInput(user_id=users["quinn"], reason="reworked and passed", reinspection_result="PASS"),
        )
        doc = repo.get_ncr(ncr_uuid, session=session)
        report = verify_store(session=session)
    assert ref.revision == 6 and doc is not None and doc["status"] == "CLOSED"
    assert doc["containment"]["reject_actuation_confirmed"] is True and doc["containment"]["location"] == "bin-3"
    assert doc["review"]["decision"] == "CONFIRMED_DEFECT" and doc["disposition"]["code"] == "REWORK"
    assert doc["disposition"]["reinspection_result"] == "PASS"
    assert [s["meaning"] for s in doc["signatures"]] == ["REVIEW", "DISPOSITION", "APPROVAL"]
    assert doc["signatures"][0]["printed_name"] == "Rita Example"
    assert [h["to_status"] for h in doc["history"]] == [
        "OPEN",
        "CONTAINED",
        "UNDER_REVIEW",
        "UNDER_REVIEW",
        "DISPOSITIONED",
        "CLOSED",
    ]
    assert report.ok, report
    with session_scope(engine, readonly=True) as session:
        assert all(repo.verify_signature(s["id"], session=session) for s in doc["signatures"])


def test_repository_false_reject_voids_and_terminal_states_refuse_changes(engine: Engine) -> None:
    users = _users(engine)
    ncr_uuid = _open(engine, 1)
    with session_scope(engine) as session:
        repo.claim_ncr(ncr_uuid, session=session, user_id=users["rita"])
        repo.add_review(
            ncr_uuid,
            session=session,
            review=ReviewInput(
                user_id=users["rita"], decision=ReviewDecision.FALSE_REJECT, reason="dust, part is good"
            ),
        )
    assert _status(engine, ncr_uuid) is NcrStatus.VOID
    with pytest.raises(StateError, match="VOID"), session_scope(engine) as session:
        repo.claim_ncr(ncr_uuid, session=session, user_id=users["quinn"])
    assert _status(engine, ncr_uuid) is NcrStatus.VOID  # the refused step left nothing behind


@pytest.mark.parametrize(
    ("who", "step"),
    [
        ("otto", "claim"),
        ("ada", "claim"),
        ("otto", "review"),
        ("rita", "disposition"),
        ("ada", "disposition"),
    ],
)
def test_repository_roles_gate_review_and_disposition(engine: Engine, who: str, step: str) -> None:
    users = _users(engine)
    ncr_uuid = _open(engine, 1)
    with session_scope(engine) as session:
        if step != "claim":
            repo.claim_ncr(ncr_uuid, session=session, user_id=users["rita"])
        if step == "disposition":
            repo.add_review(
                ncr_uuid,
                session=session,
                review=ReviewInput(user_id=users["rita"], decision=ReviewDecision.CONFIRMED_DEFECT, reason="yes"),
            )
    with pytest.raises(StateError, match="may not"), session_scope(engine) as session:
        if step == "claim":
            repo.claim_ncr(ncr_uuid, session=session, user_id=users[who])
        elif step == "review":
            repo.add_review(
                ncr_uuid,
                session=session,
                review=ReviewInput(user_id=users[who], decision=ReviewDecision.CONFIRMED_DEFECT, reason="yes"),
            )
        else:
            repo.add_disposition(
                ncr_uuid,
                session=session,
                disposition=DispositionInput(
                    user_id=users[who], code=DispositionCode.SCRAP, quantity=1, justification=""
                ),
            )


def test_repository_review_needs_a_reason_and_use_as_is_a_justification(engine: Engine) -> None:
    users = _users(engine)
    ncr_uuid = _open(engine, 1)
    with session_scope(engine) as session:
        repo.claim_ncr(ncr_uuid, session=session, user_id=users["rita"])
    with pytest.raises(StateError, match="reason"), session_scope(engine) as session:
        repo.add_review(
            ncr_uuid,
            session=session,
            review=ReviewInput(user_id=users["rita"], decision=ReviewDecision.CONFIRMED_DEFECT, reason="  "),
        )
    with session_scope(engine) as session:
        repo.add_review(
            ncr_uuid,
            session=session,
            review=ReviewInput(user_id=users["rita"], decision=ReviewDecision.NEEDS_MRB, reason="borderline"),
        )
    with pytest.raises(StateError, match="reason"), session_scope(engine) as session:
        repo.add_disposition(
            ncr_uuid,
            session=session,
            disposition=DispositionInput(
                user_id=users["quinn"], code=DispositionCode.USE_AS_IS, quantity=1, justification=""
            ),
        )


def test_repository_corrections_keep_the_original_and_signatures_break_on_edit(engine: Engine) -> None:
    users = _users(engine)
    ncr_uuid = _open(engine, 1)
    with session_scope(engine) as session:
        repo.add_correction(
            ncr_uuid,
            session=session,
            correction=CorrectionInput(
                user_id=users["quinn"], field="serial_number", value="SN-999", reason="label misread"
            ),
        )
        repo.add_links(
            ncr_uuid, session=session, user_id=users["quinn"], links={"capa_ref": "CAPA-12"}, reason="recurring crack"
        )
        repo.add_signature(ncr_uuid, session=session, user_id=users["rita"], meaning=SignatureMeaning.AUTHORSHIP)
        doc = repo.get_ncr(ncr_uuid, session=session)
    assert doc is not None and doc["serial_number"] == "SN-000001"
    assert doc["corrections"][0] | {"at": None} == {
        "field": "serial_number",
        "original": "SN-000001",
        "value": "SN-999",
        "at": None,
        "actor": f"user:{users['quinn']}",
        "reason": "label misread",
        "signature_id": 1,
    }
    assert doc["capa_ref"] == "CAPA-12" and doc["status"] == "OPEN" and doc["revision"] == 4


def test_repository_users_are_unique_deactivated_not_deleted(engine: Engine) -> None:
    users = _users(engine)
    with pytest.raises(StateError, match="exists"), session_scope(engine) as session:
        repo.create_user(
            "rita", session=session, display_name="Other", role=Role.ADMIN, password_hash="h", actor="user:4"
        )
    with session_scope(engine) as session:
        changed = repo.set_user_active(users["rita"], session=session, active=False, actor="user:4", reason="left")
        assert changed.active is False
        assert [u.username for u in repo.list_users(session=session, include_inactive=False)] == [
            "quinn",
            "otto",
            "ada",
        ]
        found = repo.get_user(session=session, username="quinn")
        assert found is not None and found.role is Role.QUALITY_ENGINEER
        assert verify_store(session=session).ok
    ncr_uuid = _open(engine, 1)
    with pytest.raises(StateError, match="deactivated"), session_scope(engine) as session:
        repo.claim_ncr(ncr_uuid, session=session, user_id=users["rita"])


def test_repository_list_filters_and_books(engine: Engine) -> None:
    users = _users(engine)
    ids = [
        _open(engine, i, station="st-1" if i % 2 else "st-2", defect_code="crack" if i < 3 else "chip")
        for i in range(6)
    ]
    with session_scope(engine) as session:
        repo.add_inspections([make_inspection(100 + i, verdict=Verdict.PASS) for i in range(7)], session=session)
        repo.claim_ncr(ids[0], session=session, user_id=users["rita"])

    def ncrs(**kwargs: object) -> list[str]:
        with session_scope(engine, readonly=True) as session:
            return [d["ncr_uuid"] for d in repo.list_ncrs(NcrFilter(**kwargs), session=session)]  # type: ignore[arg-type]

    assert ncrs() == ids
    assert ncrs(station_id="st-1") == ids[1::2]
    assert ncrs(defect_code="chip") == ids[3:]
    assert ncrs(status=NcrStatus.UNDER_REVIEW) == ids[:1]
    assert ncrs(status=NcrStatus.OPEN, station_id="st-2") == ids[2::2]
    assert ncrs(since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=4)) == ids[2:4]
    with session_scope(engine, readonly=True) as session:
        books = repo.count_books(session=session)
        assert repo.count_ncrs(NcrFilter(defect_code="crack"), session=session) == 3
        assert session.scalar(select(func.count()).select_from(NcrRecord)) == 6
        assert repo.resolve_ncr("NCR-2026-000002", session=session) == ids[1]
    assert (books.triggers, books.passed, books.failed_defect, books.discrepancy) == (13, 7, 6, 0)
