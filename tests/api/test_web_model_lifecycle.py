"""Issue 20 from the reviewer app: a candidate's acceptance criteria fixed (signed) on the Models page and
its frozen-set evaluation run in the background (running / done / failed: reason, one at a time)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from webseed import PASSWORD

from testkit.lifecycle import NAME, freeze_eval_set, install_pair
from vinspect.api.model_evaluation import EvaluationJobs
from vinspect.store import promotion as promo
from vinspect.store import session_scope, verify_store
from vinspect.store.evidence import EvidenceStore
from vinspect.store.shadow_records import StoreShadowRecorder
from vinspect.store.tables import AuditRecord, SignatureRecord

CRITERIA = {
    "max_false_reject_pct": "5",
    "max_escape_pct": "0",
    "min_golden_detection_pct": "100",
    "min_auroc": "",
    "max_latency_ms": "",
    "min_shadow_parts": "0",
    "reason": "retrained on reviewed false rejects",
}


def _models_page(client: Any) -> str:
    return str(client.get("/models").text)


def _state(app: Any) -> promo.Candidate:
    with session_scope(app.state.services.store.engine, readonly=True) as session:
        return promo.candidate_state(session=session, name=NAME, version="2")


def test_criteria_are_fixed_signed_from_the_models_page_and_refused_when_wrong(
    tmp_path: Path, app: Any, client_for: Any
) -> None:
    install_pair(tmp_path / "data", tmp_path)
    reviewer, rtoken = client_for("reviewer")
    assert reviewer.post(f"/models/{NAME}/2/criteria", data={"csrf_token": rtoken, **CRITERIA}).status_code == 403
    qe, token = client_for("quality_engineer")
    page = _models_page(qe)
    assert f'action="/models/{NAME}/2/criteria"' in page
    assert f'action="/models/{NAME}/1/criteria"' not in page  # the active version is not a candidate

    bad = qe.post(
        f"/models/{NAME}/2/criteria",
        data={"csrf_token": token, **CRITERIA, "max_escape_pct": "lots", "password": PASSWORD},
    )
    assert bad.status_code == 303
    page = _models_page(qe)
    assert "Criteria refused: " in page and "&#39;lots&#39; is not a number" in page
    too_high = {**CRITERIA, "max_false_reject_pct": "150", "password": PASSWORD}
    qe.post(f"/models/{NAME}/2/criteria", data={"csrf_token": token, **too_high})
    assert "max_false_reject_rate" in _models_page(qe)
    qe.post(f"/models/{NAME}/2/criteria", data={"csrf_token": token, **CRITERIA, "password": "wrong password"})
    assert "password does not match" in _models_page(qe)
    assert _state(app).criteria is None  # nothing recorded by a refusal

    ok = qe.post(f"/models/{NAME}/2/criteria", data={"csrf_token": token, **CRITERIA, "password": PASSWORD})
    assert ok.headers["location"] == f"/models#model-{NAME}-2"
    page = _models_page(qe)
    assert f"Acceptance criteria fixed for {NAME} 2" in page and "Under promotion control" in page
    state = _state(app)
    assert state.criteria is not None and state.criteria.max_false_reject_rate == 0.05
    assert state.criteria.max_escape_rate == 0.0 and state.trained_by == "trainer"
    engine = app.state.services.store.engine
    with session_scope(engine, readonly=True) as session:
        sig = session.query(SignatureRecord).filter_by(entity="model", entity_id=f"{NAME}@2").one()
        row = session.query(AuditRecord).filter_by(action="model.criteria").one()
    assert sig.meaning == "MODEL_PROMOTION" and sig.record_sha256 == row.record_sha256
    assert row.actor.startswith("user:")
    with session_scope(engine, readonly=True) as session:
        report = verify_store(session=session)
    assert not report.problems, report.problems  # the criteria signature's binding checks out

    again = qe.post(f"/models/{NAME}/2/criteria", data={"csrf_token": token, **CRITERIA, "password": PASSWORD})
    assert again.status_code == 303
    assert "acceptance criteria are already fixed" in _models_page(qe)


def test_evaluation_runs_in_the_background_then_criteria_are_refused(tmp_path: Path, app: Any, client_for: Any) -> None:
    data = tmp_path / "data"
    install_pair(data, tmp_path)
    qe, token = client_for("quality_engineer")
    frozen = freeze_eval_set(data, tmp_path)
    early = qe.post(f"/models/{NAME}/2/evaluate", data={"csrf_token": token, "frozen": "eval-1"})
    assert early.status_code == 303
    assert "fix the acceptance criteria before evaluating" in _models_page(qe)
    qe.post(f"/models/{NAME}/2/criteria", data={"csrf_token": token, **CRITERIA, "password": PASSWORD})
    page = _models_page(qe)
    assert f'action="/models/{NAME}/2/evaluate"' in page and "eval 1 (5 images" in page
    nowhere = qe.post(f"/models/{NAME}/2/evaluate", data={"csrf_token": token, "frozen": "../frozen"})
    assert nowhere.status_code == 303 and "no frozen set" in _models_page(qe)

    for station, parts in (("st-a", 30), ("st-b", 20)):  # two store-backed stations ran it in shadow
        recorder = StoreShadowRecorder(
            app.state.services.store.engine, EvidenceStore(tmp_path / "evidence"), station_id=station
        )
        recorder.stats({"candidate": {"name": NAME, "version": "2", "sha256": "ab" * 32}, "parts": parts, "agree": 5})
        recorder.close()
    started = qe.post(f"/models/{NAME}/2/evaluate", data={"csrf_token": token, "frozen": "eval-1"})
    assert started.status_code == 303
    app.state.services.evaluations.join(timeout=120)
    job = qe.get(f"/api/v1/models/{NAME}/2/evaluation").json()
    assert job["status"] == "done", job
    assert job["evidence_sha256"] == _state(app).evaluation_sha256
    state = _state(app)
    assert state.evaluation is not None and state.evaluation.frozen_set is not None
    assert state.evaluation.frozen_set["name"] == "eval" and state.evaluation.champion is not None
    assert state.evaluation.golden_defects == 1 and state.evaluation.golden_defects_failed == 1
    assert state.evaluation.shadow_parts == 50  # every station's shadow, summed
    assert state.evaluation.shadow is not None and state.evaluation.shadow["agree"] == 10
    page = _models_page(qe)
    assert "Evaluation on eval-1 <strong>done</strong>" in page and "eval 1 <code>" in page
    with session_scope(app.state.services.store.engine, readonly=True) as session:
        row = session.query(AuditRecord).filter_by(action="model.evaluation").one()
    assert row.actor.startswith("user:")

    late = qe.post(f"/models/{NAME}/2/criteria", data={"csrf_token": token, **CRITERIA, "password": PASSWORD})
    assert late.status_code == 303
    assert "already evaluated; criteria are fixed before the evidence is seen" in _models_page(qe)

    (frozen / "good" / "g0.png").write_bytes(b"not the frozen image")  # the set no longer is what was frozen
    qe.post(f"/models/{NAME}/2/evaluate", data={"csrf_token": token, "frozen": "eval-1"})
    app.state.services.evaluations.join(timeout=120)
    job = qe.get(f"/api/v1/models/{NAME}/2/evaluation").json()
    assert job["status"] == "failed" and "good/g0.png changed" in job["reason"]
    assert "<strong>failed</strong>: " in _models_page(qe)
    assert _state(app).evaluation_sha256 == state.evaluation_sha256  # the recorded evidence is untouched


def test_one_evaluation_at_a_time_per_candidate(tmp_path: Path, seeded: Any) -> None:
    data = tmp_path / "data"
    registry = install_pair(data, tmp_path)
    freeze_eval_set(data, tmp_path)
    jobs, release = EvaluationJobs(), threading.Event()

    def held_shadow() -> None:  # the job reads the shadow statistics first: hold it there
        release.wait(30)

    args: dict[str, Any] = {
        "engine": seeded.store.engine,
        "registry": registry,
        "data_dir": data,
        "name": NAME,
        "version": "2",
        "frozen": "eval-1",
        "user_id": 1,
        "user_name": "Quinn",
        "shadow": held_shadow,
    }
    first = jobs.start(**args)
    assert first is not None and first.status == "running"
    assert jobs.start(**args) is None  # refused while the first runs
    release.set()
    jobs.join(timeout=120)
    done = jobs.state(NAME, "2")
    assert done is not None and done.status == "failed"  # no criteria were fixed in this store
    assert done.reason is not None and "fix the acceptance criteria before evaluating" in done.reason
    assert jobs.start(**args) is not None  # a new one may start once the first ended
    jobs.join(timeout=120)


def test_rollback_from_the_models_page_is_one_signed_action_back_to_the_replaced_version(
    tmp_path: Path, app: Any, client_for: Any
) -> None:
    from vinspect.store.users import get_user

    data = tmp_path / "data"
    registry = install_pair(data, tmp_path)
    qe, token = client_for("quality_engineer")
    assert "/rollback" not in _models_page(qe)  # version 1 came by activation: nothing to roll back to
    refused = qe.post(f"/models/{NAME}/rollback", data={"csrf_token": token, "reason": "r", "password": PASSWORD})
    assert refused.status_code == 303 and "no earlier version recorded to roll back to" in _models_page(qe)

    freeze_eval_set(data, tmp_path)
    qe.post(f"/models/{NAME}/2/criteria", data={"csrf_token": token, **CRITERIA, "password": PASSWORD})
    qe.post(f"/models/{NAME}/2/evaluate", data={"csrf_token": token, "frozen": "eval-1"})
    app.state.services.evaluations.join(timeout=120)
    qe.post(f"/models/{NAME}/2/sign", data={"csrf_token": token, "reason": "reviewed", "password": PASSWORD})
    engine = app.state.services.store.engine
    with session_scope(engine) as session:  # the second signer: an admin (signs from the CLI)
        admin = get_user(session=session, username="admin")
        assert admin is not None
        promo.sign_promotion(session=session, user_id=admin.id, name=NAME, version="2", reason="reviewed too")
    promoted = qe.post(f"/models/{NAME}/2/promote", data={"csrf_token": token, "password": PASSWORD})
    assert promoted.status_code == 303 and registry.active_version(NAME) == "2", _models_page(qe)
    page = _models_page(qe)
    assert f'action="/models/{NAME}/rollback"' in page and "Roll back to 1" in page

    reviewer, rtoken = client_for("reviewer")
    no = reviewer.post(f"/models/{NAME}/rollback", data={"csrf_token": rtoken, "reason": "r", "password": PASSWORD})
    assert no.status_code == 403
    for bad in ({"reason": "", "password": PASSWORD}, {"reason": "rose", "password": "wrong password"}):
        qe.post(f"/models/{NAME}/rollback", data={"csrf_token": token, **bad})
        assert "Rollback refused" in _models_page(qe) and registry.active_version(NAME) == "2"

    done = qe.post(
        f"/models/{NAME}/rollback",
        data={"csrf_token": token, "reason": "false rejects rose on line 2", "password": PASSWORD},
    )
    assert done.status_code == 303 and done.headers["location"] == "/models"
    assert registry.active_version(NAME) == "1"
    page = _models_page(qe)
    assert f"{NAME} rolled back from 2 to 1" in page and f'action="/models/{NAME}/rollback"' not in page
    with session_scope(engine, readonly=True) as session:
        row = session.query(AuditRecord).filter_by(action=promo.ROLLED_BACK).one()
        sig = session.query(SignatureRecord).filter_by(record_sha256=row.record_sha256).one()
        assert row.old_value == "2" and row.reason == "false rejects rose on line 2"
        assert sig.meaning == "MODEL_PROMOTION" and sig.printed_name == "Quality Engineer Person"
        report = verify_store(session=session)
    assert not report.problems, report.problems
