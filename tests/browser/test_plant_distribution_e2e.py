"""A quality engineer distributes a model version to a station from the plant page, in headless system
Chromium (issue 18): each station's running and assigned model and the outcome it reported are shown,
and the form (stations, accepted risk, password re-entry) assigns the version. With
VINSPECT_SCREENSHOTS=1 the page is written to docs/screenshots/i18-plant-distribution.png."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vinspect.models.archive import archive_sha256, pack_bundle
from vinspect.models.manifest import read_manifest
from vinspect.store import session_scope
from vinspect.store.distribution import current_assignments, distribute, report_outcome
from vinspect.store.stations import StationIdentity, report_station

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TAKE_SHOTS = os.environ.get("VINSPECT_SCREENSHOTS") == "1"
PASSWORD = "correct horse battery staple"


def _status(version: str, sha: str) -> dict[str, Any]:
    return {
        "state": "OPERATIONAL",
        "books": {"triggers": 1200, "passed": 1100, "review": 40, "failed_defect": 60, "failed_fault": {"late": 0}},
        "model": {"name": "tile", "version": version, "sha256": sha},
        "latency_ms": {"p50_ms": 6.1, "p99_ms": 11.8},
    }


def test_quality_engineer_distributes_from_the_plant_page(
    live_server: dict[str, Any], browser_page: Any, tmp_path: Path
) -> None:
    engine = live_server["seeded"].store.engine
    now = datetime.now(UTC)
    folder = tmp_path / "data" / "models" / "tile" / "3"  # the app's registry (conftest's install_models)
    v3, archive = read_manifest(folder).sha256, pack_bundle(folder)
    running = {"st01": ("3", v3), "st02": ("2", "12" * 32), "st03": ("2", "12" * 32)}
    for sid, (version, sha) in running.items():
        report_station(
            engine,
            StationIdentity(station_id=sid, site_id="plant1", line_id="L1"),
            _status(version, sha),
            started_at=now,
            period_s=2.0,
            parts_per_s=29.8,
            reject_rate=0.083,
            now=now,
        )
    with session_scope(engine) as session:
        rows = distribute(
            session=session,
            name="tile",
            version="3",
            sha256=v3,
            archive=archive,
            archive_sha256=archive_sha256(archive),
            station_ids=["st01", "st02"],
            approval="test",
            actor="cli:qe",
        )
    ids = {a.station_id: a.id for a in rows}
    report_outcome(
        engine, assignment_id=ids["st01"], station_id="st01", outcome="SWITCHED", reason=None, at=now, running_sha256=v3
    )
    report_outcome(
        engine,
        assignment_id=ids["st02"],
        station_id="st02",
        outcome="REFUSED",
        at=now,
        reason="wrong input size: the bundle takes 32x32 px, 1 channel(s), this station's model takes "
        "64x64 px, 1 channel(s)",
        running_sha256="12" * 32,
    )
    page, base = browser_page, live_server["url"]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "quality_engineer")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.goto(f"{base}/plant")
    assert "switched" in page.inner_text("tr[data-station=st01] td.assignment")
    refused = page.inner_text("tr[data-station=st02] td.assignment")
    assert "refused" in refused and "wrong input size" in refused
    form = page.locator("#distribute-form")
    form.locator("select[name=model]").select_option("tile@3")
    form.locator("input[name=station][value=st03]").check()
    form.locator("input[name=accept_risk]").check()  # the manifest-only test bundle states no rates
    form.locator("input[name=reason]").fill("same model as st01 on the same line")
    form.locator("input[name=password]").fill(PASSWORD)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "tile 3 assigned to st03" in page.inner_text("main")
    assert "pending" in page.inner_text("tr[data-station=st03] td.assignment")
    with session_scope(engine, readonly=True) as session:
        assert current_assignments(session=session)["st03"].version == "3"
    if TAKE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "i18-plant-distribution.png"), full_page=True)
    assert errors == []
