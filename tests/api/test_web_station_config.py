"""Issue 20 item 7 in the reviewer app: the plant overview and the station page show each station's
configuration version (hash prefix, who approved it and when) and a changed, unapproved file."""

from __future__ import annotations

from datetime import UTC, datetime

from webseed import STATUS, TestClient, build_app, login

from vinspect.api.status_source import FixedStatus
from vinspect.store.db import session_scope
from vinspect.store.station_configs import approve_config
from vinspect.store.stations import StationIdentity, report_station
from vinspect.store.users import get_user

APPROVED = '{"station_id":"cam-a","deadline_ms":150.0}'


def _status() -> dict:
    return {
        "state": "OPERATIONAL",
        "books": {"triggers": 10, "passed": 9, "review": 1, "failed_defect": 0, "failed_fault": {}},
        "model": None,
        "latency_ms": {},
    }


def test_plant_overview_shows_each_stations_configuration_version(seeded, client_for) -> None:
    engine = seeded.store.engine
    with session_scope(engine) as session:
        qe = get_user(session=session, username="quality_engineer")
        assert qe is not None
        approval = approve_config(
            session=session,
            station_id="cam-a",
            config_text=APPROVED,
            source_path="/etc/vinspect/cam-a.yaml",
            signer_user_id=qe.id,
            reason="line trial settings",
            at=datetime(2026, 12, 5, 21, 30, tzinfo=UTC),
        )
    now = datetime.now(UTC)
    report_station(
        engine,
        StationIdentity(station_id="cam-a", site_id="p1", line_id="L1", config_sha256=approval.config_sha256),
        _status(),
        started_at=now,
        period_s=2.0,
        parts_per_s=5.0,
        reject_rate=0.1,
        now=now,
    )
    report_station(
        engine,
        StationIdentity(station_id="cam-b", site_id="p1", line_id="L2", config_sha256="cd" * 32),
        _status(),
        started_at=now,
        period_s=2.0,
        parts_per_s=5.0,
        reject_rate=0.1,
        now=now,
    )
    client, _ = client_for("reviewer")
    html = client.get("/plant").text
    row_a = html.split('data-station="cam-a"')[1].split("</tr>")[0]
    row_b = html.split('data-station="cam-b"')[1].split("</tr>")[0]
    assert approval.short in row_a and "approved by Quality Engineer Person" in row_a and "2026-12-05 21:30" in row_a
    assert "cdcdcdcdcdcd" in row_b and "not approved" in row_b
    api = client.get("/api/v1/plant/stations").json()["data"]
    by_id = {s["station_id"]: s for s in api}
    assert by_id["cam-a"]["config_sha256"] == approval.config_sha256
    assert by_id["cam-a"]["config_approved_by"] == "Quality Engineer Person"
    assert by_id["cam-b"]["config_approved_by"] is None


def test_station_page_shows_the_running_version_and_an_unapproved_change(tmp_path, seeded) -> None:
    config = {
        "sha256": "ef" * 32,
        "approved_by": "Quinn Engineer",
        "approved_at": "2026-12-05T21:30:00+00:00",
        "file": "/etc/vinspect/station.yaml",
        "file_state": "changed, not approved",
        "file_sha256": "12" * 32,
        "message": "/etc/vinspect/station.yaml changed on disk to configuration 121212121212, which is not "
        "approved; still running the approved configuration efefefefefef.",
    }
    app = build_app(tmp_path / "data", seeded.store)
    app.state.services.status = FixedStatus(STATUS | {"config": config})
    with TestClient(app, base_url="http://127.0.0.1:8600", follow_redirects=False) as client:
        login(client, "reviewer")
        html = client.get("/station").text
    part = html.split('id="station-config"')[1].split("</p>")[0]
    assert "efefefefefef" in part and "approved by Quinn Engineer at 2026-12-05 21:30 UTC" in part
    assert "file on disk: changed, not approved" in part
    assert 'id="station-config-warning"' in part and "still running the approved configuration" in part


def test_dashboard_shows_a_configuration_alarm_in_words(seeded, client_for) -> None:
    from vinspect.store.alarms import raise_alarm

    now = datetime.now(UTC)
    message = "station.yaml changed on disk to configuration 121212121212, which is not approved"
    with session_scope(seeded.store.engine) as session:
        raise_alarm(
            session=session,
            kind="config",
            station_id="tile-line-1",
            chart="station_config",
            rule=0,
            first_at=now,
            last_at=now,
            detail={"message": message, "file_sha256": "12" * 32},
        )
    client, _ = client_for("quality_engineer")
    page = client.get("/dashboard")
    assert page.status_code == 200
    row = page.text.split('id="alarm-table"')[1].split("</table>")[0]
    assert message in row and "PSI" not in row
