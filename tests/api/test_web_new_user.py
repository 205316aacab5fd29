"""What a new user tripped over (issue 13), through the real app: role-dependent home, error pages
with the menu, NCR filters, NCR numbers in paths, signing errors that keep the form, the defect
catalogue, no generated text signed, the blind audit, queue rows and the audit trail."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from webseed import PASSWORD, Seeded, TestClient, csrf_of, install_models

from vinspect.store import session_scope
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.repository import get_ncr
from vinspect.store.review_queries import audit_rows, is_sampled

Client = Callable[[str | None], tuple[TestClient, str]]


@pytest.mark.parametrize(
    ("role", "home"),
    [
        ("reviewer", "/queue"),
        ("quality_engineer", "/queue"),
        ("admin", "/users"),
        ("operator", "/ncrs"),
        (None, "/login"),
    ],
)
def test_home_depends_on_the_role(client_for: Client, role: str | None, home: str) -> None:
    client, _ = client_for(role)
    response = client.get("/")
    assert response.status_code == 303 and response.headers["location"] == home


def test_error_pages_carry_the_menu_and_a_way_back(client_for: Client) -> None:
    admin, _ = client_for("admin")
    denied = admin.get("/queue")
    assert denied.status_code == 403 and "text/html" in denied.headers["content-type"]
    assert '<a href="/users">Users</a>' in denied.text and '<a href="/audit">Audit trail</a>' in denied.text
    assert 'href="/users">Go to your start page' in denied.text  # not "/" and the same 403 again
    missing = admin.get("/no/such/page")
    assert missing.status_code == 404 and "<nav>" in missing.text and "Sign out" in missing.text


def test_ncr_filters_each_apply_in_api_and_page(client_for: Client, seeded: Seeded) -> None:
    qe, _ = client_for("quality_engineer")
    total = len(seeded.review) + len(seeded.fails)
    assert qe.get("/api/v1/ncrs", params={"station_id": "tile-line-1"}).json()["count"] == total
    assert qe.get("/api/v1/ncrs", params={"station_id": "other-line"}).json()["count"] == 0
    assert qe.get("/api/v1/ncrs", params={"defect_code": "scratch"}).json()["count"] == total
    assert qe.get("/api/v1/ncrs", params={"defect_code": "spot"}).json()["count"] == 0
    page = qe.get("/ncrs", params={"status": "", "station_id": "", "defect_code": "spot"})
    assert page.status_code == 200 and "No NCRs match." in page.text
    assert 'name="defect_code" value="spot"' in page.text  # the field keeps what was typed
    listed = qe.get("/ncrs", params={"status": "", "station_id": "tile-line-1", "defect_code": ""})
    assert listed.status_code == 200 and listed.text.count('href="/ncrs/') == total


def test_status_any_works_everywhere_and_bad_input_is_a_page(client_for: Client) -> None:
    qe, _ = client_for("quality_engineer")
    assert qe.get("/api/v1/ncrs", params={"status": ""}).status_code == 200
    export = qe.get("/api/v1/export/ncrs", params={"fmt": "csv", "status": "", "station_id": "", "defect_code": ""})
    assert export.status_code == 200 and "ncr_number" in export.text.splitlines()[0]
    bad = qe.get("/ncrs", params={"page": "two"})
    assert bad.status_code == 422 and "text/html" in bad.headers["content-type"]
    assert "page:" in bad.text and "<nav>" in bad.text and not bad.text.lstrip().startswith("{")
    api_bad = qe.get("/api/v1/ncrs", params={"status": "SHIPPED"})
    assert api_bad.status_code == 422 and api_bad.json()["detail"][0]["loc"] == ["query", "status"]


def test_ncr_number_is_accepted_wherever_the_uuid_is(client_for: Client, seeded: Seeded) -> None:
    qe, token = client_for("quality_engineer")
    ref = seeded.review[0]
    assert qe.get(f"/api/v1/ncrs/{ref.ncr_number}").json()["ncr_uuid"] == ref.ncr_uuid
    assert qe.get(f"/api/v1/ncrs/{ref.ncr_number.lower()}").json()["ncr_uuid"] == ref.ncr_uuid
    page = qe.get(f"/ncrs/{ref.ncr_number}")
    assert page.status_code == 200 and ref.ncr_uuid in page.text
    assert qe.get(f"/review/{ref.ncr_number}").status_code == 200
    reviewed = qe.post(
        f"/api/v1/ncrs/{ref.ncr_number}/review",
        headers={"X-CSRF-Token": token},
        json={"decision": "NEEDS_MRB", "reason": "needs a second look", "password": PASSWORD},
    )
    assert reviewed.status_code == 200 and reviewed.json()["review"]["decision"] == "NEEDS_MRB"
    assert qe.get("/api/v1/ncrs/NCR-2026-999999").status_code == 404
    assert qe.get("/ncrs/NCR-2026-999999").status_code == 404
    anonymous, _ = client_for(None)
    assert anonymous.get(f"/api/v1/ncrs/{ref.ncr_number}").status_code == 401


def _review_form(client: TestClient, token: str, ncr: str, **fields: str) -> object:
    return client.post(f"/review/{ncr}", data={"csrf_token": token, **fields})


def test_wrong_signing_password_is_an_error_and_keeps_the_form(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    ncr = seeded.review[0].ncr_uuid
    response = _review_form(
        reviewer,
        token,
        ncr,
        decision="NEEDS_MRB",
        reason="edge chipped near the hole",
        defect_code="other",
        password="not my password",
    )
    assert response.status_code == 403  # type: ignore[attr-defined]
    text = response.text  # type: ignore[attr-defined]
    assert re.search(r'class="error" role="alert"[^>]*>Not signed: signature refused', text)
    assert 'value="edge chipped near the hole"' in text and 'id="decision" value="NEEDS_MRB"' in text
    assert '<option value="other" selected>' in text


def test_no_text_the_reviewer_did_not_write_is_signed(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    ncr = seeded.review[0].ncr_uuid
    empty = _review_form(
        reviewer, token, ncr, decision="CONFIRMED_DEFECT", reason="  ", defect_code="scratch", password=PASSWORD
    )
    assert empty.status_code == 422 and "needs a reason" in empty.text  # type: ignore[attr-defined]
    with session_scope(seeded.store.engine, readonly=True) as session:
        assert (get_ncr(ncr, session=session) or {}).get("review") is None
    done = _review_form(
        reviewer,
        token,
        ncr,
        decision="CONFIRMED_DEFECT",
        reason="deep scratch, left edge",
        defect_code="scratch",
        password=PASSWORD,
    )
    assert done.status_code == 303  # type: ignore[attr-defined]
    with session_scope(seeded.store.engine, readonly=True) as session:
        review = (get_ncr(ncr, session=session) or {})["review"]
    assert review["reason"] == "deep scratch, left edge"


def _labelled_models(data_dir: Path, labels: list[str]) -> None:
    install_models(data_dir / "models")
    for version in ("2", "3"):
        manifest_path = data_dir / "models" / "tile" / version / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["labels"], manifest["task"] = labels, "anomaly+classifier"
        manifest_path.write_text(json.dumps(manifest))


def _options(html: str) -> list[str]:
    select = html.split('id="defect-code"', 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="([^"]*)"', select)


def test_defect_catalogue_follows_the_model_with_stable_keys(
    client_for: Client, seeded: Seeded, tmp_path: Path
) -> None:
    _labelled_models(tmp_path / "data", ["chip", "crack", "scratch", "spot", "stain"])
    reviewer, token = client_for("reviewer")
    first = reviewer.get(f"/review/{seeded.review[0].ncr_uuid}").text
    second = reviewer.get(f"/review/{seeded.review[1].ncr_uuid}").text
    expected = ["chip", "crack", "scratch", "spot", "stain", "contamination", "dent", "missing_feature", "other"]
    assert _options(first) == _options(second) == expected  # key 3 is always scratch
    assert "3 · scratch (machine)" in first and '<option value="scratch" selected>' in first
    # A false reject records no defect code, whatever the form sends.
    _review_form(
        reviewer,
        token,
        seeded.review[0].ncr_uuid,
        decision="FALSE_REJECT",
        reason="dust on lens",
        defect_code="scratch",
        password=PASSWORD,
    )
    with session_scope(seeded.store.engine, readonly=True) as session:
        review = (get_ncr(seeded.review[0].ncr_uuid, session=session) or {})["review"]
    assert review["decision"] == "FALSE_REJECT" and review.get("defect_code") is None
    api = reviewer.post(
        f"/api/v1/ncrs/{seeded.review[1].ncr_uuid}/review",
        headers={"X-CSRF-Token": token},
        json={"decision": "FALSE_REJECT", "reason": "clean", "defect_code": "scratch", "password": PASSWORD},
    )
    assert api.status_code == 422 and "false reject records no defect code" in api.text


def test_blind_audit_hides_the_part_id_and_confirms_the_signature(client_for: Client, seeded: Seeded) -> None:
    reviewer, token = client_for("reviewer")
    sampled = next(i for i in seeded.pass_ids if is_sampled(i, 0.2))
    page = reviewer.get(f"/samples/{sampled}")
    part_id = "P" + sampled.split("-")[1][1:]
    assert page.status_code == 200 and part_id not in page.text
    queue = reviewer.get("/queue").text
    assert part_id not in queue and "hidden (blind audit)" in queue
    assert reviewer.get("/api/v1/queue").json()["data"][-1]["part_id"] is None
    done = reviewer.post(
        f"/samples/{sampled}",
        data={"csrf_token": token, "decision": "CONFORMS", "reason": "checked, clean", "password": PASSWORD},
    )
    assert done.status_code == 303
    landing = reviewer.get(reviewer.get(done.headers["location"]).headers["location"]).text
    assert f"Blind audit of {sampled} recorded: conforms (signed)." in landing


def test_queue_rows_show_number_score_defect_and_age(client_for: Client, seeded: Seeded) -> None:
    reviewer, _ = client_for("reviewer")
    table = reviewer.get("/queue").text.split('id="queue-table"', 1)[1]
    first = seeded.review[0]
    assert f">{first.ncr_number}</a>" in table and "scratch" in table
    assert re.search(r'<td class="num">0\.6\d\d</td>', table) and re.search(r"\d+ (d|h|min|s)</td>", table)
    item = reviewer.get("/api/v1/queue").json()["data"][0]
    assert item["ncr_number"] == first.ncr_number and item["defect_code"] == "scratch" and item["score"] > 0.6


def test_audit_trail_is_paged_filtered_and_shows_ncr_numbers(client_for: Client, seeded: Seeded) -> None:
    qe, token = client_for("quality_engineer")
    ref = seeded.review[0]
    qe.post(
        f"/api/v1/ncrs/{ref.ncr_uuid}/review",
        headers={"X-CSRF-Token": token},
        json={"decision": "NEEDS_MRB", "reason": "second look", "password": PASSWORD},
    )
    with session_scope(seeded.store.engine) as session:
        for i in range(40):  # enough rows for a second page
            append_audit(
                AuditEntry(actor="system:test", action="test.filler", entity="test", entity_id=str(i)), session=session
            )
    with session_scope(seeded.store.engine, readonly=True) as session:
        total = len(audit_rows(session=session, limit=100_000))
    assert total > 50
    first = qe.get("/audit").text
    assert first.count("<tr><td>") == 50 and 'id="audit-next"' in first
    assert f">{ref.ncr_number}</a>" in qe.get("/audit", params={"action": "ncr.*"}).text
    second = qe.get("/audit", params={"page": 2}).text
    assert 'id="audit-prev"' in second and second.count("<tr><td>") == min(50, total - 50)
    one = qe.get("/audit", params={"ncr": ref.ncr_number}).text
    assert "ncr.reviewed" in one and "signature.create" in one and "login.success" not in one
    logins = qe.get("/audit", params={"action": "login.*"}).text
    assert "login.success" in logins and "ncr.reviewed" not in logins


def test_favicon_is_served(client_for: Client) -> None:
    client, _ = client_for(None)
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")


def test_review_page_has_a_heatmap_legend_on_the_fixed_scale(client_for: Client, seeded: Seeded) -> None:
    reviewer, _ = client_for("reviewer")
    page = reviewer.get(f"/review/{seeded.review[0].ncr_uuid}").text
    legend = page.split('id="heat-legend"', 1)[1].split("</div>\n  <p", 1)[0]
    assert "review 0.55" in legend and "fail 0.71" in legend  # the scale: 0.5 x to 1.5 x fail
    assert ">0.355<" in legend and ">1.06<" in legend and 'data-at="0.5"' in legend


def test_wrong_password_on_a_disposition_keeps_the_form(client_for: Client, seeded: Seeded) -> None:
    reviewer, reviewer_token = client_for("reviewer")  # two people: the reviewer is not the disposition signer
    qe, token = client_for("quality_engineer")
    ncr = seeded.review[0].ncr_uuid
    signed = reviewer.post(
        f"/api/v1/ncrs/{ncr}/review",
        headers={"X-CSRF-Token": reviewer_token},
        json={"decision": "CONFIRMED_DEFECT", "reason": "scratch seen", "password": PASSWORD},
    )
    assert signed.status_code == 200, signed.text
    response = qe.post(
        f"/ncrs/{ncr}/disposition",
        data={
            "csrf_token": token,
            "code": "USE_AS_IS",
            "quantity": "3",
            "justification": "cosmetic only, per MRB-7",
            "design_authority_approval_ref": "DA-77",
            "password": "not my password",
        },
    )
    assert response.status_code == 403
    text = response.text
    assert 'id="form-error">Disposition not signed: signature refused' in text
    assert '<option value="USE_AS_IS" selected>' in text and ">cosmetic only, per MRB-7</textarea>" in text
    assert 'value="DA-77"' in text and 'name="quantity" value="3"' in text


def test_a_non_admin_account_signs_in_before_the_first_admin_exists(tmp_path: Path) -> None:
    """The demo's quality engineer, created with `vinspect users add` before any admin."""
    from webseed import TEST_OPTIONS, build_app, open_store

    from vinspect.api.auth import PasswordService, ensure_bootstrap_secret
    from vinspect.store.users import create_user

    data = tmp_path / "fresh"
    store = open_store(data)
    ensure_bootstrap_secret(data)  # what `vinspect serve` does while no admin exists
    client = TestClient(build_app(data, store), base_url="http://127.0.0.1:8600", follow_redirects=False)
    assert client.get("/login").headers["location"] == "/setup"  # nobody at all: set up first
    hashed = PasswordService(
        time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib
    ).hash(PASSWORD)
    with session_scope(store.engine) as session:
        create_user(
            "demo",
            session=session,
            display_name="Demo QE",
            role="quality_engineer",  # type: ignore[arg-type]
            password_hash=hashed,
            actor="cli:test",
        )
    page = client.get("/login")
    assert page.status_code == 200 and 'id="setup-pending"' in page.text
    signed_in = client.post("/login", data={"csrf_token": csrf_of(client), "username": "demo", "password": PASSWORD})
    assert signed_in.status_code == 303 and client.get("/").headers["location"] == "/queue"
    client.close()


def test_a_form_posted_after_the_session_ended_goes_to_sign_in(client_for: Client, seeded: Seeded) -> None:
    anonymous, token = client_for(None)
    ncr = seeded.review[0].ncr_uuid
    response = anonymous.post(
        f"/review/{ncr}", data={"csrf_token": token, "decision": "NEEDS_MRB", "reason": "x", "password": PASSWORD}
    )
    assert response.status_code == 303 and response.headers["location"] == f"/login?next=%2Freview%2F{ncr}"
