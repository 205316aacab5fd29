"""Dashboard on a year of plant data: fill a private PostgreSQL, then time the dashboard's own code path.

    python bench/dashboard_bench.py [--inspections 10000000] [--repeats 20] [--out bench/results/dashboard.json]

1. Starts a throw-away PostgreSQL 15 cluster (as the store tests do) and migrates a fresh database.
2. Fills it in the database (``INSERT ... SELECT generate_series``, no row-by-row ORM) with a year
   ending at the current hour: ``--inspections`` parts over ``--stations`` stations (uneven
   part numbers per station and month, four model versions one per quarter, PASS ~99 %, model rejects
   ~0.85 % with a two-week excursion on st-2, faults ~0.15 %, 1 % re-inspections), one NCR per
   reject (~1 % of parts: 100,000 at 10 M) with Pareto-shaped defect codes, reviews on 90 % of
   them (20 % overturned, 1 % superseded by a second reviewer), 10,000 blind PASS audits (0.3 %
   escapes) and one audit-trail row per 200 parts (the stations' batch links), whose chain hashes
   are filler values: the dashboard never reads them, and this benchmark does not verify the chain.
3. Rolls the year up (:func:`vinspect.store.analytics_rollup.roll_up`, timed: the one-off backlog of
   inspections, review events and audit answers), analyses the roll-up tables and freezes each
   station's p-chart limits from the first 30 days (``record_baseline``).
4. Times :func:`vinspect.quality.dashboard.build_dashboard` (what ``/dashboard`` and ``vinspect
   report`` call) for a shift, a day, a week, a month and a year, p50/p95 over ``--repeats``
   calls each; then the HTTP page ``/dashboard`` and one p-chart SVG through the app with a
   signed-in reviewer, and the page with every chart it shows fetched one request after another.
   ``--raw-first`` also times the shift/day/week windows once before the roll-up (all rows
   counted raw) for comparison.

The machine is shared: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "store"))
sys.path.insert(0, str(ROOT / "tests" / "api"))

from sqlalchemy import Engine, text  # noqa: E402
from store_pg import PgCluster, pg_available  # noqa: E402

from vinspect.quality.dashboard import build_dashboard  # noqa: E402
from vinspect.store.alarms import record_baseline  # noqa: E402
from vinspect.store.analytics_queries import Window, hourly_rollup  # noqa: E402
from vinspect.store.analytics_rollup import roll_up  # noqa: E402
from vinspect.store.db import make_engine, session_scope  # noqa: E402
from vinspect.store.migrations import upgrade  # noqa: E402

DAY = timedelta(days=1)
ROLLUP_TABLES = ("inspection_hourly", "inspection_monthly", "judgement_hourly", "judgement_monthly")
CODES = (("crack", 0.45), ("chip", 0.25), ("stain", 0.15), ("blowhole", 0.10), ("fray", 0.05))

# r: uniform [0, 1) from the part number g; r2, r3: independent ones
_R = "(abs(hashint8(g))::float8 / 2147483648.0)"
_R2 = "(abs(hashint8(g + 7777777777))::float8 / 2147483648.0)"
_R3 = "(abs(hashint8(g + 3333333333))::float8 / 2147483648.0)"

INSPECTIONS_SQL = f"""
INSERT INTO inspections (id, inspection_id, station_id, part_seq, verdict, reasons, policy_id, fail_at, review_at,
                         score, model_name, model_version, model_sha256, source_id, frame_id, captured_at, part_id,
                         error, recorded_at, part_number)
SELECT g, 'i-' || g, 'st-' || (g % :stations + 1), g, v.verdict, v.reasons, 'p1', 0.71, 0.55,
       CASE v.verdict WHEN 'PASS' THEN 0.05 + 0.4 * {_R2} WHEN 'REVIEW' THEN 0.56 + 0.14 * {_R2}
                      ELSE CASE WHEN v.reasons = '["score"]' THEN 0.72 + 0.25 * {_R2} END END,
       'tile', m.version, rpad(md5(m.version), 64, 'a'), 'cam-1', g,
       t.at - make_interval(secs => (5 + 30 * {_R2}) / 1000.0),
       'SN-' || CASE WHEN {_R3} < 0.01 AND g > :stations THEN g - :stations ELSE g END,
       CASE WHEN v.reasons LIKE '["error%' THEN 'ModelError: bad input' END,
       t.at,
       'P-' || (100 * (1 + ((g % :stations) + extract(month FROM t.at)::int) % 3))
FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint)) AS g
CROSS JOIN LATERAL (SELECT :t0 + (g - 1) * make_interval(secs => :spacing) AS at) AS t
CROSS JOIN LATERAL (SELECT '2026.' || (1 + least(3, floor(extract(epoch FROM t.at - :t0) / (91.25 * 86400))::int))
                    AS version) AS m
CROSS JOIN LATERAL (SELECT CASE
    WHEN {_R} < CASE WHEN g % :stations = 1 AND t.at >= :bump_from AND t.at < :bump_to THEN 0.0165 ELSE 0.0055 END
         THEN 'FAIL' || '|["score"]'
    WHEN {_R} < 0.0085 + CASE WHEN g % :stations = 1 AND t.at >= :bump_from AND t.at < :bump_to THEN 0.011 ELSE 0 END
         THEN 'REVIEW|["review_band"]'
    WHEN {_R} < 0.0095 + CASE WHEN g % :stations = 1 AND t.at >= :bump_from AND t.at < :bump_to THEN 0.011 ELSE 0 END
         THEN 'FAIL|["timeout"]'
    WHEN {_R} < 0.0100 + CASE WHEN g % :stations = 1 AND t.at >= :bump_from AND t.at < :bump_to THEN 0.011 ELSE 0 END
         THEN 'FAIL|["error:ModelError"]'
    ELSE 'PASS|[]' END AS vr) AS x
CROSS JOIN LATERAL (SELECT split_part(x.vr, '|', 1) AS verdict, split_part(x.vr, '|', 2) AS reasons) AS v
"""


def _code_case(r: str) -> str:
    parts, edge = [], 0.0
    for code, share in CODES[:-1]:
        edge += share
        parts.append(f"WHEN {r} < {edge:.2f} THEN '{code}'")
    return f"CASE {' '.join(parts)} ELSE '{CODES[-1][0]}' END"


NCRS_SQL = f"""
INSERT INTO ncrs (id, ncr_uuid, ncr_seq, ncr_number, schema_version, detected_at, created_at, site_id, line_id,
                  station_id, camera_id, detection_point, detected_by_kind, detected_by_id, part_number,
                  part_revision, part_name, serial_number, quantity_affected, uom, requirement_ref, defect_code,
                  description, machine_verdict, inference, containment, related_ncr_uuids, inspection_id)
SELECT n, md5(i.inspection_id)::uuid::text, n, 'NCR-' || lpad(n::text, 8, '0'), '1.1.0', i.recorded_at,
       i.recorded_at, 'plant-1', 'line-1', i.station_id, 'cam-1', 'IN_PROCESS', 'MACHINE', 'vinspect',
       i.part_number, 'B', 'ceramic tile', i.part_id, 1, 'EA', 'DWG-100 rev B',
       CASE WHEN i.reasons LIKE '%score%' OR i.reasons LIKE '%review_band%'
            THEN {_code_case("(abs(hashint8(i.id + 5))::float8 / 2147483648.0)")}
            ELSE 'ERROR_REJECT' END,
       'bench', CASE WHEN i.reasons LIKE '%score%' OR i.reasons LIKE '%review_band%' THEN i.verdict
                     ELSE 'ERROR_REJECT' END,
       '{{}}', '{{}}', '[]', i.inspection_id
FROM (SELECT row_number() OVER (ORDER BY id) AS n, * FROM inspections WHERE verdict <> 'PASS') AS i
"""

EVENTS_SQL = """
INSERT INTO ncr_events (ncr_id, revision, kind, from_status, to_status, at, actor, reason, payload)
SELECT id, 1, 'OPENED', NULL, 'OPEN', detected_at, 'system:' || station_id, NULL, '{}' FROM ncrs
UNION ALL
SELECT id, 2, 'REVIEWED', 'UNDER_REVIEW', 'REVIEWED', detected_at + interval '2 hours', 'user:' || (2 + id % 3),
       'reviewed', json_build_object('decision', CASE WHEN abs(hashint8(id + 11)) % 100 < 20 THEN 'FALSE_REJECT'
                                                      ELSE 'CONFIRMED_DEFECT' END,
                                     'defect_code', defect_code)::text
FROM ncrs WHERE abs(hashint8(id + 13)) % 100 < 90
UNION ALL
SELECT id, 3, 'SUPERSEDED', 'REVIEWED', 'REVIEWED', detected_at + interval '1 day', 'user:' || (3 + id % 3),
       'second look', json_build_object('decision', 'CONFIRMED_DEFECT', 'defect_code', defect_code)::text
FROM ncrs WHERE abs(hashint8(id + 13)) % 100 < 1
"""

AUDIT_SQL = """
INSERT INTO audit_records (seq, at, actor, action, entity, entity_id, field, old_value, new_value, reason, source,
                           record_sha256, prev_hash, row_hash)
SELECT row_number() OVER (ORDER BY at), at, actor, action, entity, entity_id, NULL, NULL, new_value, reason, NULL,
       NULL, repeat('0', 64), repeat('0', 64)
FROM (
  SELECT recorded_at AS at, 'system:' || station_id AS actor, 'inspection.batch' AS action, 'inspections' AS entity,
         id || '-' || (id + 199) AS entity_id, '200' AS new_value, NULL AS reason
  FROM inspections WHERE id % 200 = 1
  UNION ALL
  SELECT recorded_at + interval '3 hours', 'user:' || (2 + id % 3), 'sample.review', 'inspection', inspection_id,
         CASE WHEN abs(hashint8(id + 17)) % 1000 < 3 THEN 'ESCAPE' ELSE 'CONFORMS' END,
         CASE WHEN abs(hashint8(id + 17)) % 1000 < 3 THEN 'blind audit [defect_code=crack]'
              ELSE 'blind audit [defect_code=-]' END
  FROM inspections WHERE verdict = 'PASS' AND id % :audit_every = 0
) AS a
"""


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def fill(engine: Engine, *, inspections: int, stations: int, end: datetime, chunk: int = 1_000_000) -> dict[str, Any]:
    t0 = end - timedelta(days=365)
    spacing = 365 * 86400 / inspections
    bump_from = t0 + timedelta(days=200)
    times: dict[str, float] = {}
    start = time.perf_counter()
    for low in range(1, inspections + 1, chunk):
        high = min(inspections, low + chunk - 1)
        with engine.begin() as conn:
            conn.execute(
                text(INSPECTIONS_SQL),
                {
                    "stations": stations,
                    "low": low,
                    "high": high,
                    "t0": t0,
                    "spacing": spacing,
                    "bump_from": bump_from,
                    "bump_to": bump_from + timedelta(days=14),
                },
            )
        print(f"  inspections {high:,} / {inspections:,} ({time.perf_counter() - start:.0f} s)", flush=True)
    times["inspections_s"] = time.perf_counter() - start
    with engine.begin() as conn:
        conn.execute(text("SELECT setval(pg_get_serial_sequence('inspections', 'id'), :n)"), {"n": inspections})
        mark = time.perf_counter()
        conn.execute(text(NCRS_SQL))
        conn.execute(text("SELECT setval(pg_get_serial_sequence('ncrs', 'id'), (SELECT max(id) FROM ncrs))"))
        conn.execute(text(EVENTS_SQL))
        passes = inspections * 0.99
        conn.execute(text(AUDIT_SQL), {"audit_every": max(1, int(passes / 10_000))})
        times["ncrs_events_audit_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    times["vacuum_analyze_s"] = time.perf_counter() - mark
    with engine.connect() as conn:
        counts = {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in ("inspections", "ncrs", "ncr_events", "audit_records")
        }
        counts["pass_audits"] = int(
            conn.execute(text("SELECT count(*) FROM audit_records WHERE action = 'sample.review'")).scalar_one()
        )
        size = conn.execute(text("SELECT pg_size_pretty(pg_database_size(current_database()))")).scalar_one()
    return {
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "rows": counts,
        "database_size": size,
        "first": t0.isoformat(),
        "end": end.isoformat(),
    }


def freeze(engine: Engine, *, stations: int, t0: datetime) -> None:
    """Each station's limits from its first 30 days of hourly subgroups (as ``vinspect spc baseline`` does)."""
    window = Window(t0, t0 + timedelta(days=30))
    with session_scope(engine, readonly=True) as session:
        rows = hourly_rollup(window, session=session)
    for s in range(1, stations + 1):
        station = f"st-{s}"
        mine = [r for r in rows if r.station_id == station]
        parts, defects = sum(r.count for r in mine), sum(r.model_rejects for r in mine)
        with session_scope(engine) as session:
            record_baseline(
                session=session,
                station_id=station,
                chart="reject_rate",
                window_from=window.since,
                window_to=window.until,
                subgroup_minutes=60,
                p_bar=defects / parts,
                subgroups=len({r.hour for r in mine}),
                parts=parts,
                defects=defects,
                actor="bench",
                user_id=None,
                reason="bench: first 30 days",
            )


def windows(end: datetime) -> dict[str, Window]:
    shift_end = (
        max(h for h in (end.replace(hour=h) for h in (6, 14, 22)) if h <= end)
        if end.hour >= 6
        else end.replace(hour=22) - DAY
    )
    return {
        "shift": Window(shift_end - timedelta(hours=8), shift_end),
        "day": Window(end - DAY, end),
        "week": Window(end - 7 * DAY, end),
        "month": Window(end - 30 * DAY, end),
        "year": Window(end - 365 * DAY, end),
    }


def timed(call: Callable[[], object], repeats: int) -> dict[str, Any]:
    call()  # warm (plans, caches); not counted
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000.0)
    ordered = sorted(samples)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank
    return {
        "n": repeats,
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(ordered[-1], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inspections", type=int, default=10_000_000)
    parser.add_argument("--stations", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--raw-first", action="store_true", help="time shift/day/week once before the roll-up")
    parser.add_argument("--no-http", action="store_true", help="skip the page through the app")
    parser.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    parser.add_argument(
        "--database-url",
        default=None,
        help="time a database this script filled before (kept running), instead of a new one",
    )
    parser.add_argument("--end", default=None, help="with --database-url: the filled year's end (ISO 8601)")
    args = parser.parse_args()
    reason = pg_available()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    end = datetime.fromisoformat(args.end) if args.end else datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    result: dict[str, Any] = {
        "command": "python bench/dashboard_bench.py " + " ".join(sys.argv[1:]),
        "inspections": args.inspections,
        "stations": args.stations,
        "load_before": load_average(),
        "cpus": os.cpu_count(),
        "shared": True,
    }
    cluster = None if args.database_url else PgCluster()
    try:
        if cluster is None:
            engine = make_engine(args.database_url)
            upgrade(engine)
            result["fill"] = {"reused": True, "end": end.isoformat(), "first": (end - timedelta(days=365)).isoformat()}
        else:
            cluster.start()
            url = cluster.create_database("dash")
            engine = make_engine(url)
            upgrade(engine)
            print(f"filling {args.inspections:,} inspections", flush=True)
            result["fill"] = fill(engine, inspections=args.inspections, stations=args.stations, end=end)
            print(json.dumps(result["fill"]), flush=True)
        spans = windows(end)
        scores: dict[str, Sequence[float]] = {
            f"2026.{k}": [0.05 + 0.4 * (i / 999) for i in range(1000)] for k in range(1, 5)
        }

        def board(w: Window) -> Callable[[], object]:
            def call() -> object:
                with session_scope(engine, readonly=True) as session:
                    return build_dashboard(session, w, validation_scores=scores)

            return call

        if args.raw_first:
            result["before_rollup_ms"] = {}
            for name in ("shift", "day", "week"):
                start = time.perf_counter()
                board(spans[name])()
                result["before_rollup_ms"][name] = round((time.perf_counter() - start) * 1000.0, 1)
                print(f"  raw {name}: {result['before_rollup_ms'][name]} ms", flush=True)
        start = time.perf_counter()
        first = roll_up(engine)
        result["rollup_backlog"] = {
            "rows": first.rows,
            "review_events": first.reviews,
            "audit_answers": first.audits,
            "chunks": first.chunks,
            "seconds": round(time.perf_counter() - start, 1),
        }
        # the roll-up tables were just filled in one go: give the planner their statistics now (a plant's
        # autovacuum does the same within a minute of the first roll-up pass)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ROLLUP_TABLES:
                conn.execute(text(f"ANALYZE {table}"))
        start = time.perf_counter()
        again = roll_up(engine)
        result["rollup_idle_pass_ms"] = round((time.perf_counter() - start) * 1000.0, 1)
        assert again.rows == 0
        print(json.dumps(result["rollup_backlog"]), flush=True)
        if cluster is not None:
            freeze(engine, stations=args.stations, t0=datetime.fromisoformat(result["fill"]["first"]))
        result["build_dashboard"] = {}
        for name, w in spans.items():
            result["build_dashboard"][name] = timed(board(w), args.repeats)
            print(f"  build_dashboard {name}: {result['build_dashboard'][name]}", flush=True)
        if not args.no_http:
            result["http"] = http_times(engine, spans, args.repeats)
        result["load_after"] = load_average()
        engine.dispose()
    finally:
        if cluster is not None:
            cluster.destroy()
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if args.out:
        args.out.write_text(text_out + "\n")
    return 0


def http_times(engine: Engine, spans: dict[str, Window], repeats: int) -> dict[str, Any]:
    """``/dashboard``, the first station's p-chart SVG, and the page with every chart it shows (what
    a browser fetches, here one request after another), through the app, signed in as a reviewer."""
    from httpx import Response
    from webseed import TEST_OPTIONS, TestClient, add_users, build_app, login

    from vinspect.api.auth import PasswordService
    from vinspect.store import EvidenceStore
    from vinspect.store.review_queries import StoreHandle

    data = Path(tempfile.mkdtemp(prefix="vinspect-dash-"))
    store = StoreHandle(engine=engine, evidence=EvidenceStore(data / "evidence", fsync=False))
    with engine.connect() as conn:  # a kept database (--database-url) has the accounts of an earlier run
        known = conn.execute(text("SELECT count(*) FROM users WHERE username = 'reviewer'")).scalar_one()
    if not known:
        add_users(
            store,
            PasswordService(time_cost=TEST_OPTIONS.argon2_time_cost, memory_cost_kib=TEST_OPTIONS.argon2_memory_kib),
        )
    out: dict[str, Any] = {}
    with TestClient(build_app(data, store), base_url="http://127.0.0.1:8600", follow_redirects=False) as client:
        login(client, "reviewer")
        for name in ("day", "week", "month", "year"):
            w = spans[name]
            query = f"since={w.since:%Y-%m-%d}&until={(w.until - DAY):%Y-%m-%d}"

            def page(q: str = query) -> object:
                response = client.get(f"/dashboard?{q}")
                assert response.status_code == 200, response.text[:500]
                return response

            def svg(q: str = query) -> object:
                response = client.get(f"/dashboard/charts/pchart-st-1.svg?{q}")
                assert response.status_code == 200, response.text[:500]
                return response

            def everything(q: str = query) -> object:
                """The page and every chart it shows, one request after another (one connection)."""
                response = page(q)
                assert isinstance(response, Response)
                charts = sorted(set(re.findall(r'src="(/dashboard/charts/[^"]+)"', response.text)))
                for url in charts:
                    got = client.get(html.unescape(url))
                    assert got.status_code == 200, (url, got.text[:500])
                return len(charts)

            out[f"page_{name}"] = timed(page, repeats)
            out[f"pchart_svg_{name}"] = timed(svg, max(3, repeats // 4))
            out[f"charts_{name}"] = everything()
            out[f"page_and_charts_{name}"] = timed(everything, max(3, repeats // 4))
            print(
                f"  http {name}: {out[f'page_{name}']} svg {out[f'pchart_svg_{name}']} "
                f"page + {out[f'charts_{name}']} charts {out[f'page_and_charts_{name}']}",
                flush=True,
            )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
