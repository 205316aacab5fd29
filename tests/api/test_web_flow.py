"""Review, disposition and e-signature flows through the JSON API and the pages (D4, D6, D7)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from webseed import PASSWORD, Seeded, TestClient, build_app

from vinspect.pipeline.status import StatusReader
from vinspect.store import session_scope
from vinspect.store.review_queries import audit_for_ncr, audit_rows, is_sampled

Client = Callable[[str | None], tuple[TestClient, str]]


def _confirm(client: TestClient, token: str, ncr: str) -> Any:
    return client.post(
        f"/api/v1/ncrs/{ncr}/review",
        headers={"X-CSRF-Token": token},
        json={
            "decision": "CONFIRMED_DEFECT",
            "reason": "scratch visible",
            "defect_code": "scratch",
            "password": PASSWORD,
        },
    )


def test_confirm_then_signed_disposition_everywhere(client_for: Client, seeded: Seeded) -> None:
    qe, token = client_for("quality_engineer")
    ncr = seeded.review[0].ncr_uuid
    assert _confirm(qe, token, ncr).status_code == 200
    response = qe.post(
        f"/api/v1/ncrs/{ncr}/disposition",
        headers={"X-CSRF-Token": token},
        json={"code": "SCRAP", "quantity": 1, "password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["status"] == "DISPOSITIONED" and doc["disposition"]["code"] == "SCRAP"
    meanings = {s["meaning"]: s for s in doc["signatures"]}
    assert set(meanings) == {"REVIEW", "DISPOSITION"} and all(s["valid"] for s in doc["signatures"])
    signature = meanings["DISPOSITION"]
    assert signature["printed_name"] == "Quality Engineer Person" and signature["signed_at"].endswith("Z")
    page = qe.get(f"/ncrs/{ncr}").text
    for shown in (signature["printed_name"], "DISPOSITION", signature["signed_at"], signature["record_sha256"][:16]):
        assert shown in page
    assert "signed Quality Engineer Person, DISPOSITION" in qe.get("/ncrs").text
    summary = next(n for n in qe.get("/api/v1/ncrs").json()["data"] if n["ncr_uuid"] == ncr)
    assert summary["disposition"]["signature"]["signed_at"] == signature["signed_at"]
    exported = qe.get("/api/v1/export/ncrs?fmt=csv").text
    row = next(r for r in csv.DictReader(io.StringIO(exported)) if r["ncr_uuid"] == ncr)
    assert signature["printed_name"] in row["signatures"] and "DISPOSITION" in row["signatures"]
    assert json.loads(qe.get("/api/v1/export/ncrs?fmt=json").text)
    with session_scope(seeded.store.engine, readonly=True) as session:
        actions = [r.action for r in audit_for_ncr(ncr, session=session)]
        exports = [r for r in audit_rows(session=session, entity="export")]
    assert actions.count("signature.create") == 2 and "ncr.dispositioned" in actions
    assert len(exports) == 2


def test_signing_without_or_with_wrong_password_is_refused_and_audited(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    ncr = seeded.review[1].ncr_uuid
    for password in ("", "not my password"):
        response = reviewer.post(
            f"/api/v1/ncrs/{ncr}/review",
            headers={"X-CSRF-Token": token},
            json={"decision": "FALSE_REJECT", "reason": "dust", "password": password},
        )
        assert response.status_code == 403
    with session_scope(seeded.store.engine, readonly=True) as session:
        failures = [r for r in audit_rows(session=session, entity="login") if r.action == "signature.failure"]
    assert len(failures) == 2 and all(r.entity_id == "reviewer" and ncr in (r.reason or "") for r in failures)
    assert reviewer.get(f"/api/v1/ncrs/{ncr}").json()["status"] == "OPEN"


def test_disposition_rules(client_for: Client, seeded: Seeded) -> None:
    qe, token = client_for("quality_engineer")
    reviewer, reviewer_token = client_for("reviewer")
    ncr = seeded.review[2].ncr_uuid
    early = qe.post(
        f"/api/v1/ncrs/{ncr}/disposition",
        headers={"X-CSRF-Token": token},
        json={"code": "SCRAP", "quantity": 1, "password": PASSWORD},
    )
    assert early.status_code == 409
    assert _confirm(reviewer, reviewer_token, ncr).status_code == 200
    no_reason = qe.post(
        f"/api/v1/ncrs/{ncr}/disposition",
        headers={"X-CSRF-Token": token},
        json={"code": "USE_AS_IS", "quantity": 1, "password": PASSWORD},
    )
    assert no_reason.status_code == 422
    no_instruction = qe.post(
        f"/api/v1/ncrs/{ncr}/disposition",
        headers={"X-CSRF-Token": token},
        json={"code": "REWORK", "quantity": 1, "password": PASSWORD},
    )
    assert no_instruction.status_code == 422
    smuggled = qe.post(
        f"/api/v1/ncrs/{ncr}/disposition",
        headers={"X-CSRF-Token": token},
        json={"code": "SCRAP", "quantity": 1, "password": PASSWORD, "signed_by": 1},
    )
    assert smuggled.status_code == 422
    ok = qe.post(
        f"/api/v1/ncrs/{ncr}/disposition",
        headers={"X-CSRF-Token": token},
        json={
            "code": "USE_AS_IS",
            "quantity": 1,
            "justification": "cosmetic, concession C-12",
            "customer_concession_ref": "C-12",
            "password": PASSWORD,
        },
    )
    assert ok.status_code == 200 and ok.json()["disposition"]["justification"] == "cosmetic, concession C-12"


def test_false_reject_voids_and_leaves_queue(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    ncr = seeded.review[3].ncr_uuid
    assert ncr in [i["id"] for i in reviewer.get("/api/v1/queue").json()["data"]]
    response = reviewer.post(
        f"/api/v1/ncrs/{ncr}/review",
        headers={"X-CSRF-Token": token},
        json={"decision": "FALSE_REJECT", "reason": "dust on lens", "password": PASSWORD},
    )
    assert response.status_code == 200 and response.json()["status"] == "VOID"
    assert response.json()["machine_verdict"] == "REJECT"  # the original stays legible beside the decision
    assert ncr not in [i["id"] for i in reviewer.get("/api/v1/queue").json()["data"]]


def test_disputed_fail_joins_queue(client_for: Client, seeded: Seeded) -> None:
    operator, token = client_for("operator")
    reviewer, _ = client_for("reviewer")
    fail = seeded.fails[0].ncr_uuid
    assert fail not in [i["id"] for i in reviewer.get("/api/v1/queue").json()["data"]]
    response = operator.post(
        f"/api/v1/ncrs/{fail}/dispute",
        headers={"X-CSRF-Token": token},
        json={"reason": "part looked fine at the bench"},
    )
    assert response.status_code == 204
    items = {i["id"]: i for i in reviewer.get("/api/v1/queue").json()["data"]}
    assert items[fail]["reason"] == "disputed FAIL"


def test_pass_sample_blind_audit(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    sampled = [i for i in seeded.pass_ids if is_sampled(i, 0.2)]
    assert sampled, "the 0.2 sample of 40 parts is empty"
    queue = [i["id"] for i in reviewer.get("/api/v1/queue").json()["data"] if i["kind"] == "pass_sample"]
    assert set(queue) == set(sampled)
    page = reviewer.get(f"/samples/{sampled[0]}").text
    assert "0.2000" not in page and "PASS</" not in page  # blind: no score, no verdict
    response = reviewer.post(
        f"/api/v1/samples/{sampled[0]}/review",
        headers={"X-CSRF-Token": token},
        json={"decision": "CONFORMS", "reason": "clean", "password": PASSWORD},
    )
    assert response.status_code == 204
    assert sampled[0] not in [i["id"] for i in reviewer.get("/api/v1/queue").json()["data"]]
    unsampled = next(i for i in seeded.pass_ids if not is_sampled(i, 0.2))
    assert (
        reviewer.post(
            f"/api/v1/samples/{unsampled}/review",
            headers={"X-CSRF-Token": token},
            json={"decision": "CONFORMS", "reason": "x", "password": PASSWORD},
        ).status_code
        == 404
    )


def test_review_page_shows_what_a_reviewer_needs(client_for: Client, seeded: Seeded) -> None:
    reviewer, _ = client_for("reviewer")
    ncr = seeded.review[0].ncr_uuid
    page = reviewer.get(f"/review/{ncr}").text
    for needed in (
        "part-image",
        "heatmap",
        "Score",
        "Fail threshold",
        "tile",
        "v3",
        "scratch",
        "P000",
        "History",
        "Sign and next",
    ):
        assert needed in page, needed


def test_station_page_without_runtime_says_not_running(tmp_path: Path, seeded: Seeded) -> None:
    assert StatusReader(tmp_path / "nope.json").read().state == "NOT RUNNING"
    (tmp_path / "bad.json").write_text("{torn")
    assert StatusReader(tmp_path / "bad.json").read().running is False
    (tmp_path / "v2.json").write_text(json.dumps({"schema_version": 2, "state": "OPERATIONAL"}))
    assert StatusReader(tmp_path / "v2.json").read().running is False  # another schema: not guessed at
    ok = {"schema_version": 1, "state": "OPERATIONAL", "books": {"triggers": 3}}
    (tmp_path / "ok.json").write_text(json.dumps(ok))
    snapshot = StatusReader(tmp_path / "ok.json").read()
    assert snapshot.running and snapshot.state == "OPERATIONAL"
    app = build_app(tmp_path / "data", seeded.store)
    client = TestClient(app, base_url="http://127.0.0.1:8600")
    assert client.get("/api/v1/station/status").status_code == 401


def test_queue_next_moves_on_and_skips(client_for: Client, seeded: Seeded) -> None:
    reviewer, _ = client_for("reviewer")
    first, second = seeded.review[0].ncr_uuid, seeded.review[1].ncr_uuid
    assert reviewer.get("/queue/next").headers["location"] == f"/review/{first}"
    assert reviewer.get(f"/queue/next?after={first}").headers["location"] == f"/review/{second}"


def test_user_text_is_escaped_in_pages(client_for: Client, seeded: Seeded) -> None:
    qe, token = client_for("quality_engineer")
    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    response = qe.post(
        f"/api/v1/ncrs/{seeded.fails[0].ncr_uuid}/dispute", headers={"X-CSRF-Token": token}, json={"reason": payload}
    )
    assert response.status_code == 204
    page = qe.get("/audit").text
    assert payload not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
