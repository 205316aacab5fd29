"""Issue 18: stations report into the store; the plant overview lists them, marks stale ones, filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from vinspect.store.db import session_scope
from vinspect.store.stations import StationIdentity, StationReporter, list_stations, report_station


def _status(state: str, triggers: int, passed: int, *, p99: float = 4.5) -> dict[str, Any]:
    return {
        "state": state,
        "reason": None,
        "books": {
            "triggers": triggers,
            "passed": passed,
            "review": 1,
            "failed_defect": triggers - passed - 1,
            "failed_fault": {"late": 0},
        },
        "model": {"name": "disc", "version": "3", "sha256": "ab" * 32},
        "latency_ms": {"p50_ms": 1.25, "p99_ms": p99, "n": triggers},
    }


def test_plant_page_lists_reporting_stations_and_marks_a_stale_one(seeded, client_for) -> None:
    engine = seeded.store.engine
    now = datetime.now(UTC)
    report_station(
        engine,
        StationIdentity(station_id="cam-a", site_id="plant1", line_id="L1"),
        _status("OPERATIONAL", 300, 280),
        started_at=now,
        period_s=2.0,
        parts_per_s=29.5,
        reject_rate=0.0667,
        now=now,
    )
    report_station(
        engine,
        StationIdentity(station_id="cam-b", site_id="plant1", line_id="L2"),
        _status("DEGRADED", 50, 45),
        started_at=now,
        period_s=2.0,
        parts_per_s=10.0,
        reject_rate=0.1,
        now=now - timedelta(seconds=30),
    )
    client, _ = client_for("reviewer")
    page = client.get("/plant")
    assert page.status_code == 200
    html = page.text
    assert 'data-station="cam-a"' in html and 'data-station="cam-b"' in html
    assert "29.5" in html and "6.7 %" in html and "disc v3" in html and "abababababab" in html
    row_a = html.split('data-station="cam-a"')[1].split("</tr>")[0]
    row_b = html.split('data-station="cam-b"')[1].split("</tr>")[0]
    assert row_b.startswith(' class="stale"') and re.search(r"stale: \d+(\.\d+)? s ago", row_b), row_b
    assert "DEGRADED" in row_b
    assert "last reported" in row_b and "10.0" not in row_b  # a stale station's rate is not shown as current
    assert "stale" not in row_a and "OPERATIONAL" in row_a
    only_l2 = client.get("/plant", params={"line_id": "L2"}).text
    assert 'data-station="cam-b"' in only_l2 and 'data-station="cam-a"' not in only_l2
    api = client.get("/api/v1/plant/stations", headers={"Accept": "application/json"}).json()
    assert {s["station_id"]: s["stale"] for s in api["data"]} == {"cam-a": False, "cam-b": True}


def test_a_report_replaces_the_previous_one(seeded) -> None:
    engine = seeded.store.engine
    ident = StationIdentity(station_id="cam-a", site_id="plant1", line_id="L1")
    t0 = datetime.now(UTC)
    report_station(
        engine,
        ident,
        _status("PREOPERATIONAL", 0, 0),
        started_at=t0,
        period_s=2.0,
        parts_per_s=None,
        reject_rate=None,
        now=t0,
    )
    report_station(
        engine,
        ident,
        _status("OPERATIONAL", 10, 9),
        started_at=t0,
        period_s=2.0,
        parts_per_s=5.0,
        reject_rate=0.1,
        now=t0 + timedelta(seconds=2),
    )
    with session_scope(engine, readonly=True) as session:
        views = list_stations(session=session, now=t0 + timedelta(seconds=3))
    assert [(v.station_id, v.state, v.triggers, v.parts_per_s, v.stale) for v in views] == [
        ("cam-a", "OPERATIONAL", 10, 5.0, False)
    ]


def test_reporter_computes_rate_and_reject_share_and_says_stopped(seeded) -> None:
    engine = seeded.store.engine
    counts = iter([(0, 0), (40, 30), (40, 30)])

    def snapshot() -> dict[str, Any]:
        triggers, passed = next(counts)
        return _status("OPERATIONAL", triggers, passed)

    reporter = StationReporter(engine, StationIdentity(station_id="cam-r"), snapshot=snapshot, period_s=3600)
    with reporter:
        reporter.report_now()
    with session_scope(engine, readonly=True) as session:
        (view,) = list_stations(session=session)
    assert view.state == "STOPPED" and view.triggers == 40 and reporter.errors == 0
    assert view.reject_rate is None or view.reject_rate == 0.0  # no parts in the last period


def test_plant_page_without_stations_says_so(client_for) -> None:
    client, _ = client_for("reviewer")
    html = client.get("/plant").text
    assert "No station has reported into this store" in html


def test_ncr_list_filters_by_site_and_line(seeded, client_for) -> None:
    client, _ = client_for("reviewer")
    headers = {"Accept": "application/json"}
    everything = client.get("/api/v1/ncrs", headers=headers).json()["count"]
    assert everything > 0
    assert (
        client.get("/api/v1/ncrs", params={"site_id": "plant-1", "line_id": "line-1"}, headers=headers).json()["count"]
        == everything
    )
    assert client.get("/api/v1/ncrs", params={"line_id": "line-2"}, headers=headers).json()["count"] == 0
    page = client.get("/ncrs", params={"site_id": "plant-9"}).text
    assert "No NCRs match." in page and 'name="site_id" value="plant-9"' in page
    assert "No NCRs match." not in client.get("/ncrs", params={"site_id": "plant-1"}).text


def test_queue_filters_by_site_line_and_station(seeded, client_for) -> None:
    """NCR items by their own site/line/station; blind PASS samples through the station registry."""
    client, _ = client_for("reviewer")
    headers = {"Accept": "application/json"}
    items = client.get("/api/v1/queue", headers=headers).json()["data"]
    kinds = {item["kind"] for item in items}
    assert "ncr" in kinds and "pass_sample" in kinds, kinds
    station = items[0]["station_id"]

    def queue(**params: str) -> list[dict[str, Any]]:
        return client.get("/api/v1/queue", params=params, headers=headers).json()["data"]

    assert queue(station_id=station) == items
    assert queue(station_id="other-station") == []
    # by site and line: NCRs match on their own columns; PASS samples only once the station is registered
    assert [i["kind"] for i in queue(site_id="plant-1", line_id="line-1")] == [
        i["kind"] for i in items if i["kind"] == "ncr"
    ]
    report_station(
        seeded.store.engine,
        StationIdentity(station_id=station, site_id="plant-1", line_id="line-1"),
        _status("OPERATIONAL", 10, 9),
        started_at=datetime.now(UTC),
        period_s=2.0,
        parts_per_s=None,
        reject_rate=None,
    )
    assert queue(site_id="plant-1", line_id="line-1") == items
    assert queue(line_id="line-2") == []
    page = client.get("/queue", params={"station_id": station}).text
    start = page.split('id="start"')[0][-120:]
    assert "Open the first item" in page and "/queue/next" not in start and "/review/" in start
    assert "Nothing to review." in client.get("/queue", params={"line_id": "line-2"}).text


def test_plant_page_shows_each_stations_assignment_and_outcome(seeded, client_for, tmp_path) -> None:
    """Assigned vs running model, and the outcome (switched, refused with the reason, pending)."""
    from vinspect.store.distribution import distribute, report_outcome

    engine = seeded.store.engine
    now = datetime.now(UTC)
    for sid in ("cam-a", "cam-b", "cam-c"):
        report_station(
            engine,
            StationIdentity(station_id=sid, site_id="plant1", line_id="L1"),
            _status("OPERATIONAL", 300, 280),
            started_at=now,
            period_s=2.0,
            parts_per_s=29.5,
            reject_rate=0.0667,
            now=now,
        )
    with session_scope(engine) as session:
        rows = distribute(
            session=session,
            name="disc",
            version="4",
            sha256="cd" * 32,
            archive=b"bundle",
            archive_sha256="ef" * 32,
            station_ids=["cam-a", "cam-b", "cam-c"],
            approval="test",
            actor="cli:qe",
        )
    ids = {a.station_id: a.id for a in rows}
    report_outcome(
        engine,
        assignment_id=ids["cam-a"],
        station_id="cam-a",
        outcome="SWITCHED",
        reason=None,
        at=now,
        running_sha256="cd" * 32,
    )
    report_outcome(
        engine,
        assignment_id=ids["cam-b"],
        station_id="cam-b",
        outcome="REFUSED",
        reason="golden self-test failed: golden sample golden/a.png: expected PASS, model says FAIL",
        at=now,
        running_sha256="ab" * 32,
    )
    client, _ = client_for("reviewer")
    html = client.get("/plant").text
    row = {sid: html.split(f'data-station="{sid}"')[1].split("</tr>")[0] for sid in ("cam-a", "cam-b", "cam-c")}
    assert "disc v4" in row["cam-a"] and "cdcdcdcdcdcd" in row["cam-a"] and "switched" in row["cam-a"]
    assert "disc v3" in row["cam-b"] and "refused" in row["cam-b"]
    assert "golden self-test failed: golden sample golden/a.png: expected PASS, model says FAIL" in row["cam-b"]
    assert "pending" in row["cam-c"] and "by cli:qe" in row["cam-c"]
    api = client.get("/api/v1/plant/stations", headers={"Accept": "application/json"}).json()
    by_id = {s["station_id"]: s["assignment"] for s in api["data"]}
    assert by_id["cam-a"]["outcome"] == "SWITCHED" and by_id["cam-b"]["outcome"] == "REFUSED"
    assert by_id["cam-c"]["outcome"] is None and by_id["cam-c"]["version"] == "4"
