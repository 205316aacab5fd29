"""CSRF: every state-changing route refuses a missing/wrong token or a foreign Origin (S8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from webseed import PASSWORD, TestClient

from vinspect.store import session_scope
from vinspect.store.review_queries import audit_rows

Client = Callable[[str | None], tuple[TestClient, str]]
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _unsafe_routes(app: Any) -> list[tuple[str, str]]:
    spec = app.openapi()
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m.upper() in UNSAFE]


def _path(template: str) -> str:
    return template.format(
        ncr_uuid="00000000-0000-0000-0000-000000000000",
        inspection_id="insp-000001",
        user_id="1",
        sha256="0" * 64,
        name="tiny",
        version="1",
        alarm_id="1",
        number="CAPA-2026-0001",
        step="D1",
        set_name="s1",
        image_id="1",
        candidate="tiny@2",
    )


def test_state_changing_routes_exist(app: Any) -> None:
    assert len(_unsafe_routes(app)) >= 15


@pytest.mark.parametrize("mode", ["missing", "wrong", "foreign-origin", "cross-site-fetch"])
def test_every_state_change_needs_csrf(client_for: Client, app: Any, mode: str) -> None:
    client, token = client_for("quality_engineer")
    admin, admin_token = client_for("admin")
    for method, template in _unsafe_routes(app):
        who, good = (admin, admin_token) if "/users" in template else (client, token)
        headers = {"X-CSRF-Token": "wrong" if mode == "wrong" else good}
        if mode == "missing":
            headers = {}
        elif mode == "foreign-origin":
            headers["Origin"] = "https://evil.example"
        elif mode == "cross-site-fetch":
            headers["Sec-Fetch-Site"] = "cross-site"
        response = who.request(method, _path(template), headers=headers, data={"password": PASSWORD})
        assert response.status_code == 403, f"{method} {template} ({mode}): {response.status_code}"
    with session_scope(app.state.services.store.engine, readonly=True) as session:
        failures = [r for r in audit_rows(session=session, limit=1000) if r.action == "csrf.fail"]
    assert len(failures) >= len(_unsafe_routes(app)) - 3  # logout/login as anonymous still count


def test_form_token_is_accepted_and_same_origin_passes(client_for: Client) -> None:
    client, token = client_for("operator")
    ok = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": token, "Origin": "http://127.0.0.1:8600"})
    assert ok.status_code == 204


def test_token_is_bound_to_its_session(client_for: Client) -> None:
    alice, _ = client_for("reviewer")
    _, mallory_token = client_for("operator")
    response = alice.post("/api/v1/auth/logout", headers={"X-CSRF-Token": mallory_token})
    assert response.status_code == 403
