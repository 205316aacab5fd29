"""Issue 18: distributing a model version to stations from the reviewer app (plant page form and JSON API):
signed by password re-entry, under the same approval rules as activation and promotion."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from webseed import PASSWORD, Seeded, TestClient

from testkit.bundles import state_operating_point, write_tiny_bundle
from vinspect.models.promotion_criteria import Criteria
from vinspect.models.registry import ModelRegistry
from vinspect.store import session_scope, verify_store
from vinspect.store.distribution import current_assignments
from vinspect.store.promotion import fix_criteria
from vinspect.store.review_queries import audit_rows
from vinspect.store.stations import StationIdentity, report_station
from vinspect.store.tables import SignatureRecord

Clients = Callable[[str | None], tuple[TestClient, str]]


@pytest.fixture()
def plant(tmp_path: Path, seeded: Seeded) -> ModelRegistry:
    """The app's registry holds v1 (meets its targets) and v2 (cannot); two stations reported."""
    registry = ModelRegistry(tmp_path / "data" / "models")
    rng = np.random.default_rng(1)
    registry.install(
        state_operating_point(write_tiny_bundle(tmp_path / "b1"), rng.normal(0.2, 0.02, 150), rng.normal(0.9, 0.02, 30))
    )
    rng = np.random.default_rng(7)
    registry.install(
        state_operating_point(
            write_tiny_bundle(tmp_path / "b2", doc="v2"),
            rng.normal(0.0, 1.0, 200),
            rng.normal(1.5, 1.0, 40),
            version="2",
        )
    )
    for sid in ("cam-a", "cam-b"):
        report_station(
            seeded.store.engine,
            StationIdentity(station_id=sid, site_id="plant1", line_id="L1"),
            {"state": "OPERATIONAL"},
            started_at=datetime.now(UTC),
            period_s=2.0,
            parts_per_s=None,
            reject_rate=None,
        )
    return registry


def _assigned(seeded: Seeded) -> dict[str, str]:
    with session_scope(seeded.store.engine, readonly=True) as session:
        return {s: a.version for s, a in current_assignments(session=session).items()}


def test_api_distribution_is_signed_audited_and_checks_stations(
    plant: ModelRegistry, client_for: Clients, seeded: Seeded
) -> None:
    client, token = client_for("quality_engineer")
    headers = {"X-CSRF-Token": token}
    url = "/api/v1/models/tiny/1/distribution"
    wrong = client.post(url, json={"stations": ["cam-a"], "password": "nope"}, headers=headers)
    assert wrong.status_code == 403 and _assigned(seeded) == {}
    unknown = client.post(url, json={"stations": ["cam-a", "cam-z"], "password": PASSWORD}, headers=headers)
    assert unknown.status_code == 409 and "unknown station(s) cam-z" in unknown.json()["detail"]
    ok = client.post(url, json={"stations": ["cam-a", "cam-b"], "password": PASSWORD}, headers=headers)
    assert ok.status_code == 201, ok.text
    assert [a["station_id"] for a in ok.json()["data"]] == ["cam-a", "cam-b"]
    assert _assigned(seeded) == {"cam-a": "1", "cam-b": "1"}
    with session_scope(seeded.store.engine, readonly=True) as session:
        assert sorted(r.action for r in audit_rows(session=session, entity="model", entity_id="tiny@1")) == [
            "model.activate",
            "model.distribute",
        ]
        assert verify_store(session=session).ok
    reviewer, rtoken = client_for("reviewer")
    denied = reviewer.post(url, json={"stations": ["cam-a"], "password": PASSWORD}, headers={"X-CSRF-Token": rtoken})
    assert denied.status_code == 403


def test_a_risky_version_needs_the_stated_rates_accepted(
    plant: ModelRegistry, client_for: Clients, seeded: Seeded
) -> None:
    client, token = client_for("quality_engineer")
    headers = {"X-CSRF-Token": token}
    url = "/api/v1/models/tiny/2/distribution"
    refused = client.post(url, json={"stations": ["cam-a"], "password": PASSWORD}, headers=headers)
    assert refused.status_code == 409 and "cannot meet its targets" in refused.json()["detail"]
    no_reason = client.post(
        url, json={"stations": ["cam-a"], "password": PASSWORD, "accept_risk": True}, headers=headers
    )
    assert no_reason.status_code == 422
    ok = client.post(
        url,
        json={"stations": ["cam-a"], "password": PASSWORD, "accept_risk": True, "reason": "trial on one station"},
        headers=headers,
    )
    assert ok.status_code == 201, ok.text
    assert "stated risk accepted by" in ok.json()["data"][0]["approval"]
    with session_scope(seeded.store.engine, readonly=True) as session:
        assert session.query(SignatureRecord).filter_by(entity="model", entity_id="tiny@2").count() == 1


def test_a_version_under_promotion_control_waits_for_its_promotion(
    plant: ModelRegistry, client_for: Clients, seeded: Seeded
) -> None:
    sha = next(e.sha256 for e in plant.list() if e.version == "1")
    with session_scope(seeded.store.engine) as session:
        fix_criteria(
            session=session,
            name="tiny",
            version="1",
            sha256=sha,
            trained_by="someone",
            criteria=Criteria(),
            actor="cli:test",
            reason="under control",
        )
    client, token = client_for("quality_engineer")
    r = client.post(
        "/api/v1/models/tiny/1/distribution",
        json={"stations": ["cam-a"], "password": PASSWORD},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 409 and "was not promoted" in r.json()["detail"]
    assert _assigned(seeded) == {}


def test_plant_page_form(plant: ModelRegistry, client_for: Clients, seeded: Seeded) -> None:
    reviewer, _ = client_for("reviewer")
    assert 'id="distribute-form"' not in reviewer.get("/plant").text
    client, token = client_for("quality_engineer")
    page = client.get("/plant").text
    assert 'id="distribute-form"' in page and 'value="tiny@1"' in page and 'value="cam-b"' in page
    form = {"csrf_token": token, "model": "tiny@1", "station": ["cam-b"], "password": PASSWORD}
    done = client.post("/plant/distribute", data=form)
    assert done.status_code == 303 and done.headers["location"] == "/plant"
    shown = client.get("/plant").text
    assert "tiny 1 assigned to cam-b" in shown
    row = shown.split('data-station="cam-b"')[1].split("</tr>")[0]
    assert "tiny v1" in row and "pending" in row
    none = client.post("/plant/distribute", data={"csrf_token": token, "model": "tiny@1", "password": PASSWORD})
    assert none.status_code == 303
    assert re.search(r"Distribution refused: .*choose at least one station", client.get("/plant").text)
