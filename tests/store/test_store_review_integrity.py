"""A signed decision stays signed (issue 14): one review per claim by the claimer, explicit signed
supersede by a quality engineer, and the two-person rule for dispositions that release a part."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from store_factories import DEFAULTS, make_inspection

from vinspect.errors import StateError
from vinspect.store import repository as repo
from vinspect.store.db import session_scope
from vinspect.store.ncr import DispositionCode, DispositionInput, NcrStatus, ReviewDecision, ReviewInput, Role
from vinspect.store.verify import verify_store


class _Undo(Exception):
    """Rolls a transaction back after a step succeeded."""


def _setup(engine: Engine) -> tuple[str, dict[str, int]]:
    with session_scope(engine) as session:
        ncr_uuid = repo.open_ncr(make_inspection(1), session=session, defaults=DEFAULTS).ncr_uuid
        ids = {
            name: repo.create_user(
                name,
                session=session,
                display_name=f"{name.title()} Example",
                role=role,
                password_hash="argon2$x",
                actor="system:bootstrap",
            ).id
            for name, role in (
                ("rita", Role.REVIEWER),
                ("rob", Role.REVIEWER),
                ("quinn", Role.QUALITY_ENGINEER),
                ("quentin", Role.QUALITY_ENGINEER),
            )
        }
    return ncr_uuid, ids


def _review(
    engine: Engine,
    ncr_uuid: str,
    user_id: int,
    decision: ReviewDecision,
    *,
    claim: bool = False,
    supersede: bool = False,
) -> None:
    with session_scope(engine) as session:
        if claim:
            repo.claim_ncr(ncr_uuid, session=session, user_id=user_id)
        step = repo.supersede_review if supersede else repo.add_review
        step(ncr_uuid, session=session, review=ReviewInput(user_id=user_id, decision=decision, reason="seen"))


def _doc(engine: Engine, ncr_uuid: str) -> dict[str, object]:
    with session_scope(engine, readonly=True) as session:
        doc = repo.get_ncr(ncr_uuid, session=session)
    assert doc is not None
    return doc


def test_a_signed_review_cannot_be_redone_by_the_claimer_or_by_another_reviewer(engine: Engine) -> None:
    ncr_uuid, ids = _setup(engine)
    _review(engine, ncr_uuid, ids["rita"], ReviewDecision.CONFIRMED_DEFECT, claim=True)
    with pytest.raises(StateError, match="already reviewed"):
        _review(engine, ncr_uuid, ids["rita"], ReviewDecision.NEEDS_MRB)
    with pytest.raises(StateError, match="claimed by"):
        _review(engine, ncr_uuid, ids["rob"], ReviewDecision.FALSE_REJECT)
    with pytest.raises(StateError, match="not allowed in status UNDER_REVIEW"):
        _review(engine, ncr_uuid, ids["rob"], ReviewDecision.FALSE_REJECT, claim=True)
    doc = _doc(engine, ncr_uuid)
    assert doc["status"] == "UNDER_REVIEW"
    assert [s["meaning"] for s in doc["signatures"]] == ["REVIEW"]  # type: ignore[attr-defined]


def test_only_a_quality_engineer_supersedes_a_review_signed_with_a_reason_kept_in_history(engine: Engine) -> None:
    ncr_uuid, ids = _setup(engine)
    with pytest.raises(StateError, match="not allowed in status OPEN"):
        _review(engine, ncr_uuid, ids["quinn"], ReviewDecision.CONFIRMED_DEFECT, supersede=True)
    _review(engine, ncr_uuid, ids["rita"], ReviewDecision.NEEDS_MRB, claim=True)
    with pytest.raises(StateError, match="may not"):
        _review(engine, ncr_uuid, ids["rob"], ReviewDecision.FALSE_REJECT, supersede=True)
    with pytest.raises(StateError, match="reason"), session_scope(engine) as session:
        repo.supersede_review(
            ncr_uuid,
            session=session,
            review=ReviewInput(user_id=ids["quinn"], decision=ReviewDecision.FALSE_REJECT, reason=" "),
        )
    _review(engine, ncr_uuid, ids["quinn"], ReviewDecision.FALSE_REJECT, supersede=True)
    doc = _doc(engine, ncr_uuid)
    assert doc["status"] == "VOID"
    assert doc["review"]["decision"] == "FALSE_REJECT"  # type: ignore[index]
    assert doc["review"]["reviewer"] == f"user:{ids['quinn']}"  # type: ignore[index]
    kinds = [(e["kind"], e["actor"]) for e in doc["history"]]  # type: ignore[attr-defined]
    assert kinds[-2:] == [("REVIEWED", f"user:{ids['rita']}"), ("SUPERSEDED", f"user:{ids['quinn']}")]
    assert len(doc["signatures"]) == 2  # type: ignore[arg-type]
    with session_scope(engine, readonly=True) as session:
        assert all(repo.verify_signature(s["id"], session=session) for s in doc["signatures"])  # type: ignore[attr-defined]
        assert verify_store(session=session).ok


@pytest.mark.parametrize("code", [DispositionCode.USE_AS_IS, DispositionCode.REPAIR, DispositionCode.REGRADE])
def test_a_releasing_disposition_needs_a_second_person(engine: Engine, code: DispositionCode) -> None:
    ncr_uuid, ids = _setup(engine)
    _review(engine, ncr_uuid, ids["quinn"], ReviewDecision.CONFIRMED_DEFECT, claim=True)
    disposition = DispositionInput(
        user_id=ids["quinn"], code=code, quantity=1, justification="concession C-1", rework_instruction_ref="RI-1"
    )
    with pytest.raises(StateError, match="two-person"), session_scope(engine) as session:
        repo.add_disposition(ncr_uuid, session=session, disposition=disposition)
    with pytest.raises(_Undo), session_scope(engine) as session:  # a plant that configured no two-person codes
        repo.add_disposition(ncr_uuid, session=session, disposition=disposition, two_person=())
        raise _Undo
    with session_scope(engine) as session:
        repo.add_disposition(
            ncr_uuid,
            session=session,
            disposition=DispositionInput(
                user_id=ids["quentin"],
                code=code,
                quantity=1,
                justification="concession C-1",
                rework_instruction_ref="RI-1",
            ),
        )
    assert _doc(engine, ncr_uuid)["status"] == str(NcrStatus.DISPOSITIONED)


def test_scrap_by_the_reviewing_engineer_is_not_a_release(engine: Engine) -> None:
    ncr_uuid, ids = _setup(engine)
    _review(engine, ncr_uuid, ids["quinn"], ReviewDecision.CONFIRMED_DEFECT, claim=True)
    with session_scope(engine) as session:
        repo.add_disposition(
            ncr_uuid,
            session=session,
            disposition=DispositionInput(
                user_id=ids["quinn"], code=DispositionCode.SCRAP, quantity=1, justification=""
            ),
        )
    assert _doc(engine, ncr_uuid)["status"] == "DISPOSITIONED"
