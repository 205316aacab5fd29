"""The signed steps of model promotion, rollback and CAPA write what they wrote before they shared
one helper (:func:`vinspect.store.signed_records.create_signature`): the signature hashes below were
taken on 7f1c7f0 with the same inputs and times, and every signature still verifies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from vinspect.models.promotion_criteria import Criteria, Evaluation
from vinspect.store import capa, session_scope
from vinspect.store import promotion as promo
from vinspect.store.model_acceptance import verify_model_signature
from vinspect.store.ncr import Role
from vinspect.store.signed_records import verify_record_signature
from vinspect.store.tables import AuditRecord, SignatureRecord
from vinspect.store.users import create_user

T = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
BEFORE = [  # (entity, entity_id, meaning, record_sha256) on 7f1c7f0
    ("model", "m@2", "MODEL_PROMOTION", "f1ae38fa5a7837d310444fef6c19dd892ec6f12eed83dafc5639d4e7e9d46218"),
    ("model", "m@2", "MODEL_PROMOTION", "396d66c6fb77e5e70fb18c28e815ecf018533ed2413b4c751c3109b3dcd46c14"),
    ("model", "m@1", "MODEL_PROMOTION", "fecaa3d779d6649901d0c7c933fefb879e0631d54cd11b888acd55e3a3ced52b"),
    ("capa", "CAPA-2026-0001", "AUTHORSHIP", "853a8dc3324b485766733f2ec643f516a1ed60eae6ae59e3ac1e90f8a08e8c2f"),
]


def test_signed_steps_keep_their_content_hashes_and_verify(engine: Engine) -> None:
    with session_scope(engine) as s:
        ids = [
            create_user(n, session=s, display_name=n.title(), role=r, password_hash="x", actor="system:t", now=T).id
            for n, r in (("qa", Role.QUALITY_ENGINEER), ("qb", Role.QUALITY_ENGINEER), ("adm", Role.ADMIN))
        ]
    with session_scope(engine) as s:
        promo.fix_criteria(
            session=s,
            name="m",
            version="2",
            sha256="ab" * 32,
            trained_by="t",
            criteria=Criteria(),
            actor="cli:t",
            reason="r",
            at=T,
        )
        evaluation = Evaluation(
            frozen_set={"name": "f"},
            golden_defects=2,
            golden_defects_failed=2,
            golden_goods=2,
            golden_goods_passed=2,
            challenger={},
            champion=None,
        )
        promo.record_evaluation(
            session=s, name="m", version="2", sha256="ab" * 32, evaluation=evaluation, actor="cli:t", at=T
        )
        promo.sign_promotion(session=s, user_id=ids[0], name="m", version="2", reason="ok", at=T + timedelta(seconds=1))
        promo.sign_promotion(
            session=s, user_id=ids[2], name="m", version="2", reason="ok2", at=T + timedelta(seconds=2)
        )
        promo.record_rollback(
            session=s,
            user_id=ids[1],
            name="m",
            from_version="2",
            to_version="1",
            sha256="cd" * 32,
            reason="back",
            at=T + timedelta(seconds=3),
        )
    with session_scope(engine) as s:
        number = capa.open_capa(
            session=s,
            user_id=ids[0],
            title="t",
            source="pareto",
            source_ref="x",
            owners=dict.fromkeys(capa.STEPS, ids[1]),
            due=dict.fromkeys(capa.STEPS, T),
            baseline={"p": 0.1},
            at=T,
        )
        capa.edit_step(number, "D0", {"text": "plan"}, session=s, user_id=ids[1], at=T + timedelta(seconds=4))
        capa.sign_step(number, "D0", session=s, user_id=ids[1], at=T + timedelta(seconds=5))
    with session_scope(engine, readonly=True) as s:
        sigs = list(s.scalars(select(SignatureRecord).order_by(SignatureRecord.id)))
        assert [(g.entity, g.entity_id, g.meaning, g.record_sha256) for g in sigs] == BEFORE
        assert all(verify_model_signature(g, session=s) for g in sigs[:3])
        assert verify_record_signature(sigs[3], session=s)
        actions = [
            a for a in s.scalars(select(AuditRecord.action).order_by(AuditRecord.seq)) if a != "capa.step.assign"
        ]
        assert actions[-13:] == [
            "model.criteria",
            "model.evaluation",
            "signature.create",
            "model.promotion_signed",
            "signature.create",
            "model.promotion_signed",
            "signature.create",
            "model.rollback",
            "capa.open",
            "capa.step.edit",
            "capa.status",
            "signature.create",
            "capa.step.sign",
        ]
