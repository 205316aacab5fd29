"""Signed acceptance of a model's stated risk (issue 12): who may sign, what is recorded, and
that ``verify_store`` re-checks the signature against the accepted content (SQLite + PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from vinspect.errors import StateError
from vinspect.store import repository as repo
from vinspect.store.db import session_scope
from vinspect.store.model_acceptance import record_model_activation, verify_model_signature
from vinspect.store.ncr import Role
from vinspect.store.review_queries import audit_rows
from vinspect.store.tables import APPEND_ONLY_TABLES, SignatureRecord
from vinspect.store.verify import verify_store

WARNINGS = (
    "at zero escapes 72.5% of good parts would be rejected (145 of 200 validation good parts); with a "
    "5.0% false-reject ceiling 67.5% of good parts would need review",
)
RATES = {"false_reject": {"events": 10, "n": 200, "rate": 0.05, "low": 0.0242, "high": 0.0900}}


def _users(engine: Engine) -> tuple[int, int]:
    with session_scope(engine) as session:
        rita = repo.create_user(
            "rita", session=session, display_name="Rita R", role=Role.REVIEWER, password_hash="h", actor="system:test"
        ).id
        quinn = repo.create_user(
            "quinn",
            session=session,
            display_name="Quinn Q",
            role=Role.QUALITY_ENGINEER,
            password_hash="h",
            actor="system:test",
        ).id
    return rita, quinn


def _record(session: Session, user_id: int, **overrides: object) -> object:
    kwargs: dict[str, object] = dict(
        session=session,
        user_id=user_id,
        actor=f"user:{user_id}",
        name="tile",
        version="7",
        sha256="ab" * 32,
        warnings=WARNINGS,
        rates=RATES,
        reason="reviewers staffed for the band",
        source="test",
        accept_risk=True,
    )
    kwargs.update(overrides)
    return record_model_activation(**kwargs)  # type: ignore[arg-type]


def test_a_quality_engineer_signs_and_verify_store_checks_it(engine: Engine) -> None:
    _, quinn = _users(engine)
    with session_scope(engine) as session:
        record = _record(session, quinn)
    with session_scope(engine, readonly=True) as session:
        sig = session.query(SignatureRecord).one()
        actions = [r.action for r in audit_rows(session=session, entity="model", entity_id="tile@7")]
        assert verify_model_signature(sig, session=session)
        report = verify_store(session=session)
    assert record.signature_id == sig.id and sig.meaning == "MODEL_PROMOTION"  # type: ignore[attr-defined]
    assert sorted(actions) == ["model.activate", "model.risk_accepted"]
    assert report.ok, report.problems


@pytest.mark.parametrize(
    ("who", "overrides", "match"),
    [
        ("quinn", {"accept_risk": False}, "explicit acceptance"),
        ("quinn", {"reason": "  "}, "needs a reason"),
        ("rita", {}, "a quality engineer accepts"),
    ],
)
def test_acceptance_is_refused_without_consent_reason_or_role(
    engine: Engine, who: str, overrides: dict[str, object], match: str
) -> None:
    rita, quinn = _users(engine)
    with pytest.raises(StateError, match=match), session_scope(engine) as session:
        _record(session, {"rita": rita, "quinn": quinn}[who], **overrides)
    with session_scope(engine, readonly=True) as session:
        assert session.query(SignatureRecord).count() == 0
        assert audit_rows(session=session, entity="model") == []


def test_an_activation_without_warnings_is_audited_unsigned(engine: Engine) -> None:
    _, quinn = _users(engine)
    with session_scope(engine) as session:
        record = _record(session, quinn, warnings=(), accept_risk=False, reason=None)
    with session_scope(engine, readonly=True) as session:
        assert [r.action for r in audit_rows(session=session, entity="model")] == ["model.activate"]
        assert session.query(SignatureRecord).count() == 0
    assert record.signature_id is None  # type: ignore[attr-defined]


def test_editing_the_accepted_content_breaks_the_signature(engine: Engine) -> None:
    _, quinn = _users(engine)
    with session_scope(engine) as session:
        _record(session, quinn)
    with engine.connect() as conn:
        conn.begin()
        if engine.dialect.name == "sqlite":
            for table in APPEND_ONLY_TABLES:
                for verb in ("update", "delete"):
                    conn.exec_driver_sql(f"DROP TRIGGER {table}_no_{verb}")
        else:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.execute(
            text(
                "UPDATE audit_records SET new_value = replace(new_value, '72.5%', '7.5%') "
                "WHERE action = 'model.risk_accepted'"
            )
        )
        session = Session(bind=conn)
        try:
            sig = session.query(SignatureRecord).one()
            assert not verify_model_signature(sig, session=session)
            problems = verify_store(session=session).problems
            assert any(f"signature {sig.id}: no longer matches" in p for p in problems), problems
        finally:
            session.close()
            conn.rollback()
