"""Activating a model version from the web app: signed by password re-entry, and a bundle that
cannot meet its targets only with the stated rates accepted explicitly (issue 12)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from webseed import PASSWORD, Seeded, TestClient

from testkit.bundles import state_operating_point, write_tiny_bundle
from vinspect.models.registry import ModelRegistry
from vinspect.store import session_scope, verify_store
from vinspect.store.review_queries import audit_rows
from vinspect.store.tables import SignatureRecord

Clients = Callable[[str | None], tuple[TestClient, str]]


@pytest.fixture()
def registry(tmp_path: Path) -> ModelRegistry:
    """v1 meets its targets; v2's good and defective validation parts overlap."""
    registry = ModelRegistry(tmp_path / "data" / "models")
    rng = np.random.default_rng(1)
    safe = state_operating_point(
        write_tiny_bundle(tmp_path / "b1"), rng.normal(0.2, 0.02, 150), rng.normal(0.9, 0.02, 30)
    )
    rng = np.random.default_rng(7)
    risky = state_operating_point(
        write_tiny_bundle(tmp_path / "b2"), rng.normal(0.0, 1.0, 200), rng.normal(1.5, 1.0, 40), version="2"
    )
    registry.install(safe)
    registry.install(risky)
    return registry


def test_models_api_states_rates_and_warnings(registry: ModelRegistry, client_for: Clients) -> None:
    client, _ = client_for("operator")
    models = {m["version"]: m for m in client.get("/api/v1/models").json()["data"]}
    assert models["1"]["warnings"] == [] and any("good parts rejected" in s for s in models["1"]["stated"])
    assert models["2"]["warnings"][0].startswith("at zero escapes")


def test_activation_is_signed_and_audited(registry: ModelRegistry, client_for: Clients, seeded: Seeded) -> None:
    client, token = client_for("quality_engineer")
    wrong = client.post("/api/v1/models/tiny/1/activate", json={"password": "nope"}, headers={"X-CSRF-Token": token})
    assert wrong.status_code == 403 and registry.active_version("tiny") is None
    ok = client.post("/api/v1/models/tiny/1/activate", json={"password": PASSWORD}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200, ok.text
    assert ok.json()["active"] is True and registry.active_version("tiny") == "1"
    with session_scope(seeded.store.engine, readonly=True) as session:
        rows = audit_rows(session=session, entity="model", entity_id="tiny@1")
        assert session.query(SignatureRecord).filter_by(entity="model").count() == 0  # nothing to accept
    assert [r.action for r in rows] == ["model.activate"]


def test_a_risky_bundle_needs_the_stated_rates_accepted(
    registry: ModelRegistry, client_for: Clients, seeded: Seeded
) -> None:
    client, token = client_for("quality_engineer")
    headers = {"X-CSRF-Token": token}
    refused = client.post("/api/v1/models/tiny/2/activate", json={"password": PASSWORD}, headers=headers)
    assert refused.status_code == 409
    assert "cannot meet its targets: at zero escapes" in refused.json()["detail"]
    no_reason = client.post(
        "/api/v1/models/tiny/2/activate", json={"password": PASSWORD, "accept_risk": True}, headers=headers
    )
    assert no_reason.status_code == 422
    assert registry.active_version("tiny") is None
    ok = client.post(
        "/api/v1/models/tiny/2/activate",
        headers=headers,
        json={"password": PASSWORD, "accept_risk": True, "reason": "reviewers staffed for the band"},
    )
    assert ok.status_code == 200, ok.text
    assert registry.active_version("tiny") == "2"
    with session_scope(seeded.store.engine, readonly=True) as session:
        sig = session.query(SignatureRecord).filter_by(entity="model").one()
        actions = {r.action for r in audit_rows(session=session, entity="model", entity_id="tiny@2")}
        report = verify_store(session=session)
    assert sig.meaning == "MODEL_PROMOTION" and sig.entity_id == "tiny@2"
    assert actions == {"model.risk_accepted", "model.activate"}
    assert report.ok, report.problems


def test_models_page_offers_the_confirmation_and_refuses_without_it(
    registry: ModelRegistry, client_for: Clients
) -> None:
    client, token = client_for("quality_engineer")
    page = client.get("/models").text
    assert "This model cannot meet its targets" in page and "I accept the rates and" in page
    posted = client.post("/models/tiny/2/activate", data={"csrf_token": token, "password": PASSWORD})
    assert posted.status_code == 303
    assert "Activation refused" in client.get("/models").text
    assert registry.active_version("tiny") is None
    posted = client.post(
        "/models/tiny/2/activate",
        data={"csrf_token": token, "password": PASSWORD, "accept_risk": "yes", "reason": "band staffed"},
    )
    assert posted.status_code == 303
    assert "tiny 2 is now active (signed, stated risk accepted)" in client.get("/models").text
    assert registry.active_version("tiny") == "2"


def test_other_roles_see_no_activation_form(registry: ModelRegistry, client_for: Clients) -> None:
    client, _ = client_for("reviewer")
    page = client.get("/models").text
    assert "This model cannot meet its targets" in page and "/activate" not in page
