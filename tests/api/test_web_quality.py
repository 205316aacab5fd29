"""Quality dashboard, SPC alarms (raised, shown, acknowledged signed), /metrics and the CAPA pages (issue 17)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text as text_sql
from webseed import PASSWORD, Seeded, TestClient, inspection

from vinspect.api.routes.quality import window_of
from vinspect.quality.alarms import check_alarms
from vinspect.store import repository as repo
from vinspect.store.alarms import record_baseline
from vinspect.store.analytics_queries import station_hours
from vinspect.store.db import session_scope
from vinspect.store.export import ExportFormat, export_ncrs
from vinspect.store.ncr import NcrFilter
from vinspect.types import Verdict


def _hours(seeded: Seeded, start: datetime, rejects: list[int], *, size: int = 100, seq0: int = 10_000) -> None:
    """One subgroup of ``size`` parts per hour from ``start``, ``rejects[i]`` of them FAIL (score reason)."""
    seq = seq0
    with session_scope(seeded.store.engine) as session:
        for h, d in enumerate(rejects):
            batch = []
            for i in range(size):
                seq += 1
                verdict = Verdict.FAIL if i < d else Verdict.PASS
                batch.append(inspection(seq, verdict, score=0.9 if i < d else 0.2, part_id=f"H{seq}"))
            repo.add_inspections(batch, session=session, now=start + timedelta(hours=h, minutes=30))


def _spc_alarm(seeded: Seeded) -> datetime:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=30)
    _hours(seeded, start, [2, 3, 1, 2, 2, 3, 2, 1, 2, 2, 3, 2, 2, 1, 2, 2, 3, 2, 2, 2, 2, 2, 15, 2, 2])
    with session_scope(seeded.store.engine) as session:
        record_baseline(
            session=session,
            station_id="tile-line-1",
            chart="reject_rate",
            window_from=start,
            window_to=start + timedelta(hours=20),
            subgroup_minutes=60,
            p_bar=40 / 2000,
            subgroups=20,
            parts=2000,
            defects=40,
            actor="cli:quinn",
            user_id=None,
            reason="in control after setup",
        )
    return now


def test_dashboard_shows_kpis_charts_and_an_spc_alarm_acknowledged_signed(seeded: Seeded, client_for: Any) -> None:
    now = _spc_alarm(seeded)
    new = check_alarms(seeded.store, now=now)
    assert [(a.kind, a.rule) for a in new] == [("spc", 1)]
    assert check_alarms(seeded.store, now=now) == []  # one alarm per rule per run
    operator, token = client_for("operator")
    page = operator.get("/dashboard")
    assert page.status_code == 200, page.text
    html = page.text
    assert "Nelson 1" in html and "one point beyond 3 sigma" in html and "Traceback" not in html
    assert 'id="kpi-overall"' in html and "First-pass yield" in html and "tile-line-1" in html
    charts = set(re.findall(r'src="(/dashboard/charts/[^"]+)"', html))
    assert any("pchart-tile-line-1" in c for c in charts) and any("pareto-codes" in c for c in charts)
    for src in charts:
        svg = operator.get(src.replace("&amp;", "&"))
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml"), src
        assert svg.content.lstrip().startswith(b"<?xml") and b"<svg" in svg.content
    alarm_id = new[0].id
    refused = operator.post(
        f"/alarms/{alarm_id}/acknowledge", data={"csrf_token": token, "password": PASSWORD, "reason": " "}
    )
    assert refused.status_code == 303
    wrong = operator.post(
        f"/alarms/{alarm_id}/acknowledge", data={"csrf_token": token, "password": "nope", "reason": "tool wear"}
    )
    assert wrong.status_code == 303 and "not acknowledged" in operator.get("/dashboard").text
    admin, admin_token = client_for("admin")
    assert (
        admin.post(
            f"/alarms/{alarm_id}/acknowledge", data={"csrf_token": admin_token, "password": PASSWORD, "reason": "x"}
        ).status_code
        == 403
    )
    done = operator.post(
        f"/alarms/{alarm_id}/acknowledge",
        data={"csrf_token": token, "password": PASSWORD, "reason": "tool wear: insert changed at 10:40"},
    )
    assert done.status_code == 303
    html = operator.get("/dashboard").text
    assert "tool wear: insert changed at 10:40" in html and "signed" in html
    again = operator.post(
        f"/alarms/{alarm_id}/acknowledge", data={"csrf_token": token, "password": PASSWORD, "reason": "again"}
    )
    assert again.status_code == 409 and "already acknowledged" in again.text


def test_metrics_endpoint_carries_the_dashboard_figures(seeded: Seeded, client_for: Any) -> None:
    now = _spc_alarm(seeded)
    check_alarms(seeded.store, now=now)
    anonymous, _ = client_for(None)
    body = anonymous.get("/metrics")
    assert body.status_code == 200 and body.headers["content-type"].startswith("text/plain")
    text = body.text
    assert re.search(r'vinspect_quality_rate\{kpi="reject_rate",station="tile-line-1"\} 0\.\d+', text), text[:500]
    assert 'vinspect_quality_alarms_open{kind="spc",station="tile-line-1"} 1.0' in text
    assert "vinspect_ncrs_by_code" in text and "vinspect_spc_last_z" in text


def test_dashboard_refuses_a_backwards_window_with_a_page(client_for: Any) -> None:
    operator, _ = client_for("operator")
    page = operator.get("/dashboard?since=2026-03-10&until=2026-03-01")
    assert page.status_code == 422 and "until must not be before since" in page.text and "<nav>" in page.text


def _form(client: TestClient, url: str, pairs: list[tuple[str, str]]) -> Any:
    """POST a form with repeated fields (several ``ncr``)."""
    from urllib.parse import urlencode

    return client.post(url, content=urlencode(pairs), headers={"Content-Type": "application/x-www-form-urlencoded"})


def _step(
    client: TestClient, token: str, number: str, step: str, *, sign: bool, text: str = "", category: str = ""
) -> Any:
    return client.post(
        f"/capas/{number}/steps/{step}",
        data={
            "csrf_token": token,
            "text": text or f"{step}: written by its owner",
            "category": category or "machine",
            "password": PASSWORD if sign else "",
            "action": "sign" if sign else "save",
        },
    )


def test_capa_8d_through_the_pages(seeded: Seeded, client_for: Any) -> None:
    qe, qe_token = client_for("quality_engineer")
    reviewer, rv_token = client_for("reviewer")
    operator, op_token = client_for("operator")
    two = [r.ncr_uuid for r in seeded.review[:2]]
    form = qe.get("/capas/new", params=[("ncr", two[0]), ("ncr", two[1])])
    assert form.status_code == 200 and "NCR-" in form.text
    people = dict(re.findall(r'<option value="(\d+)"[^>]*>[^<]*\((\w+), ', form.text))
    ids = {name: uid for uid, name in people.items()}
    assert operator.get("/capas/new").status_code == 403
    data: list[tuple[str, str]] = [
        ("csrf_token", qe_token),
        ("title", "Scratches on tile faces"),
        ("ncr", two[0]),
        ("ncr", two[1]),
        ("idempotency_key", "capa-open-0001"),
    ]
    for step in ("D0", "D1", "D2", "D3", "D4", "D5", "D6", "D7"):
        owner = ids["reviewer"] if step in ("D2", "D4") else ids["quality_engineer"]
        data += [(f"owner_{step}", owner), (f"due_{step}", "2030-01-0" + str(int(step[1]) + 1))]
    missing = _form(qe, "/capas", [(k, v) for k, v in data if k != "title"])
    assert missing.status_code == 422 and "title" in missing.text and "Scratches" not in missing.text
    opened = _form(qe, "/capas", data)
    assert opened.status_code == 303, opened.text
    number = opened.headers["location"].rsplit("/", 1)[1]
    assert _form(qe, "/capas", data).headers["location"] == "/capas"  # same form again opens nothing
    # the wrong owner cannot write or sign; the owner can
    assert _step(operator, op_token, number, "D2", sign=False).status_code == 403
    assert _step(reviewer, rv_token, number, "D2", sign=True).status_code == 303
    no_cat = _step(reviewer, rv_token, number, "D4", sign=True, category="-")
    assert no_cat.status_code == 409 and "fishbone" in no_cat.text
    assert (
        _step(reviewer, rv_token, number, "D4", sign=True, text="5 whys: fixture wear", category="machine").status_code
        == 303
    )
    assert (
        reviewer.post(
            f"/capas/{number}/close", data={"csrf_token": rv_token, "password": PASSWORD, "reason": "x"}
        ).status_code
        == 403
    )
    early = qe.post(f"/capas/{number}/close", data={"csrf_token": qe_token, "password": PASSWORD, "reason": "x"})
    assert early.status_code == 409 and "not signed by their owners" in early.text
    for step in ("D0", "D1", "D3", "D5", "D6", "D7"):
        assert _step(qe, qe_token, number, step, sign=True).status_code == 303
    closed = qe.post(
        f"/capas/{number}/close",
        data={"csrf_token": qe_token, "password": PASSWORD, "reason": "effective", "recognition": "line 1 team"},
    )
    assert closed.status_code == 303
    detail = qe.get(f"/capas/{number}").text
    assert "CLOSED" in detail and "meaning APPROVAL" in detail and detail.count("meaning AUTHORSHIP") == 8
    assert "two-proportion z test" in detail or "not testable yet" in detail
    ncr_page = operator.get(f"/ncrs/{two[0]}").text
    assert number in ncr_page
    out = __import__("io").StringIO()
    with session_scope(seeded.store.engine, readonly=True) as session:
        export_ncrs(out, session=session, fmt=ExportFormat.JSON, filters=NcrFilter())
    docs = {d["ncr_uuid"]: d for d in __import__("json").loads(out.getvalue())}
    assert docs[two[1]]["capas"][0] == {
        "capa_number": number,
        "status": "CLOSED",
        "title": "Scratches on tile faces",
        "closed_at": docs[two[1]]["capas"][0]["closed_at"],
    }
    assert "CAPA" in operator.get("/capas").text and number in operator.get("/capas").text


def test_sampled_pass_parts_keep_their_image_for_the_blind_audit(seeded: Seeded, client_for: Any) -> None:
    from webseed import DEFAULTS, TEST_OPTIONS

    from vinspect.store.pass_evidence import pass_evidence_of
    from vinspect.store.review_queries import is_sampled
    from vinspect.store.sink import StoreSink

    sink = StoreSink(
        seeded.store.engine,
        seeded.store.evidence,
        defaults=DEFAULTS,
        batch_size=7,
        flush_interval_s=3600,
        pass_sample_rate=TEST_OPTIONS.pass_sample_rate,
    )
    parts = [inspection(20_000 + i, Verdict.PASS, score=0.2, part_id=f"S{i}") for i in range(30)]
    for part in parts:
        sink.write(part)
    sink.write(inspection(20_100, Verdict.FAIL, score=0.95, part_id="S100"))  # a reject commits pending rows too
    sink.close()
    sampled = [p.inspection_id for p in parts if is_sampled(p.inspection_id, TEST_OPTIONS.pass_sample_rate)]
    assert sampled, "the test needs at least one sampled part"
    with session_scope(seeded.store.engine, readonly=True) as session:
        kept = {p.inspection_id: pass_evidence_of(p.inspection_id, session=session) for p in parts}
    assert all(kept[i][0] and kept[i][1] for i in sampled)
    assert all(kept[p.inspection_id] == (None, None) for p in parts if p.inspection_id not in sampled)
    reviewer, _ = client_for("reviewer")
    page = reviewer.get(f"/samples/{sampled[0]}")
    assert page.status_code == 200 and 'id="sample-image"' in page.text and "inspect the physical part" not in page.text
    image, heatmap = kept[sampled[0]]
    for sha in (image, heatmap):
        png = reviewer.get(f"/evidence/{sha}")
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    old = reviewer.get(f"/samples/{next(i for i in seeded.pass_ids if is_sampled(i, TEST_OPTIONS.pass_sample_rate))}")
    assert old.status_code == 200 and "No image was kept" in old.text


def _wait(predicate: Any, timeout_s: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_app_raises_an_alarm_by_itself_as_data_arrives_once(seeded: Seeded, tmp_path: Any) -> None:
    """The app's background evaluator (no `spc check`) rolls up, raises the Nelson alarm once, shows and counts it."""
    import dataclasses

    from webseed import TEST_OPTIONS, build_app, login

    from vinspect.store.alarms import list_alarms
    from vinspect.store.analytics_rollup import watermark

    _spc_alarm(seeded)
    app = build_app(tmp_path / "data", seeded.store, options=dataclasses.replace(TEST_OPTIONS, alarm_interval_s=0.2))

    def alarms() -> list[Any]:
        with session_scope(seeded.store.engine, readonly=True) as session:
            return list_alarms(session=session)

    assert alarms() == []
    with TestClient(app, base_url="http://127.0.0.1:8600", follow_redirects=False) as client:
        _wait(lambda: len(alarms()) == 1)
        evaluator = app.state.services.evaluator
        passes = evaluator.state.passes
        _wait(lambda: evaluator.state.passes >= passes + 3)  # more passes over the same data: nothing new
        assert [(a.kind, a.rule) for a in alarms()] == [("spc", 1)]
        assert evaluator.state.alarms_raised == 1 and evaluator.state.failures == 0
        with session_scope(seeded.store.engine, readonly=True) as session:
            assert watermark(session) > 0  # the evaluator rolled the rows up too
        login(client, "operator")
        html = client.get("/dashboard").text
        assert "Nelson 1" in html and "Evaluated by this app every 0 s" in html and "last pass" in html
        text = client.get("/metrics").text
        assert re.search(r"vinspect_alarm_evaluations_total [1-9]", text), text[:800]
        assert "vinspect_alarms_raised_total 1.0" in text
        assert 'vinspect_quality_alarms_open{kind="spc",station="tile-line-1"} 1.0' in text
        # a part arriving now is counted by the next pass's roll-up
        with session_scope(seeded.store.engine) as session:
            repo.add_inspections([inspection(99_999, Verdict.PASS, score=0.1, part_id="late-1")], session=session)
        with session_scope(seeded.store.engine, readonly=True) as session:
            newest = int(session.scalar(text_sql("SELECT max(id) FROM inspections")) or 0)
        _wait(lambda: _mark(seeded) == newest)
    assert app.state.services.evaluator is None  # stopped with the app


def _mark(seeded: Seeded) -> int:
    from vinspect.store.analytics_rollup import watermark

    with session_scope(seeded.store.engine, readonly=True) as session:
        return watermark(session)


def test_dashboard_groups_and_filters_by_part_number(seeded: Seeded, client_for: Any) -> None:
    _spc_alarm(seeded)
    operator, _ = client_for("operator")
    html = operator.get("/dashboard").text
    table = html.split('id="kpi-parts"', 1)[1].split("</table>", 1)[0]
    assert "TILE-100" in table  # the seed's product part number, written by the store sink
    assert "(not recorded)" in table  # rows added without a part number
    only = operator.get("/dashboard?part=TILE-100").text
    parts = only.split('id="kpi-parts"', 1)[1].split("</table>", 1)[0]
    assert "TILE-100" in parts and "(not recorded)" not in parts
    assert re.search(r'value="TILE-100"', only)
    assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d{6}", only)  # no raw ISO times with microseconds


def test_a_lasting_drift_is_one_alarm_not_one_per_hour(seeded: Seeded) -> None:
    from vinspect.store.alarms import list_alarms

    now = datetime.now(UTC)
    with session_scope(seeded.store.engine) as session:
        repo.add_inspections(
            [inspection(20_000 + i, Verdict.PASS, score=0.45 + i / 1000, part_id=f"D{i}") for i in range(80)],
            session=session,
            now=now - timedelta(minutes=5),
        )
    expected = {"3": [0.05 + i / 2000 for i in range(200)]}  # the validation good parts scored far lower
    first = check_alarms(seeded.store, now=now, validation_scores=expected)
    assert [(a.kind, a.chart) for a in first] == [("drift", "scores:3")]
    for hours in (1, 2, 5):  # the evaluator keeps finding the drift as the day's window moves on
        assert check_alarms(seeded.store, now=now + timedelta(hours=hours), validation_scores=expected) == []
    with session_scope(seeded.store.engine, readonly=True) as session:
        drift = [a for a in list_alarms(session=session) if a.kind == "drift"]
    assert len(drift) == 1 and drift[0].last_at == now + timedelta(hours=5)


def test_a_month_window_draws_daily_subgroups_and_says_so(seeded: Seeded, client_for: Any) -> None:
    now = _spc_alarm(seeded)
    operator, _token = client_for("operator")
    until = now - timedelta(hours=1)  # the last stored hour's day (the window ends at the end of that day)
    with session_scope(seeded.store.engine, readonly=True) as session:
        hourly = station_hours(
            window_of(f"{until - timedelta(days=29):%Y-%m-%d}", f"{until:%Y-%m-%d}"),
            session=session,
            station_id="tile-line-1",
        )
    per_day: dict[str, int] = {}
    for h in hourly:
        per_day[f"{h.hour:%Y-%m-%d}"] = per_day.get(f"{h.hour:%Y-%m-%d}", 0) + h.parts
    # the 25 seeded hours of 100 parts (plus the fixture's few) fall on two or three UTC days
    assert sum(per_day.values()) >= 2500 and 2 <= len(per_day) <= 3
    month = operator.get(f"/dashboard?since={until - timedelta(days=29):%Y-%m-%d}&until={until:%Y-%m-%d}")
    assert month.status_code == 200, month.text
    sizes = f"{min(per_day.values()):,} to {max(per_day.values()):,} parts each"
    assert f"Drawn with one-day subgroups ({sizes})" in month.text, month.text[-3000:]
    svg = operator.get(
        f"/dashboard/charts/pchart-tile-line-1.svg?since={until - timedelta(days=29):%Y-%m-%d}&until={until:%Y-%m-%d}"
    )
    assert svg.status_code == 200 and b"<svg" in svg.content
    week = operator.get(f"/dashboard?since={until - timedelta(days=6):%Y-%m-%d}&until={until:%Y-%m-%d}")
    assert week.status_code == 200 and "Drawn with one-" not in week.text and "Nelson 1" in week.text
