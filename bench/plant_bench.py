"""Plant benchmark (issue 18): 1, 2, 4, 8 real ``vinspect run`` processes writing one PostgreSQL.

Each station is a separate process (synthetic source at ``--fps`` parts/s with REJECT overflow,
the tiny ONNX bundle of the tests: ~15 % FAIL and ~10 % REVIEW, each opening an NCR with two
evidence PNGs; PASS rows batched; JSONL too; null signaller) with its own data directory and the
plant's one audit key, all started together against a fresh database on a private PostgreSQL 15
cluster (started and removed here). Per station count it reports:

* stored inspections/s and NCRs/s (rows committed during the run / run length, from the database),
* each station's frame -> signal p99 (its closing books: ``latency_ms.p99_ms``) and overflow rejects
  (parts the station could not take in time: the CPU, not the store, when they appear),
* how often a writer waited for the plant-wide writer advisory lock (``pg_locks`` sampled every
  50 ms: mean and max number of sessions waiting),
* ``audit verify`` and NCR numbering (unique, gap-free) after the run.

The machine is shared (2 cores, other jobs running): numbers are lower bounds; the load average
before and after is recorded. Results: bench/results/plant.json.

    python bench/plant_bench.py --stations 1 2 4 8 --seconds 30 --fps 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "plant"))
sys.path.insert(0, str(ROOT / "tests" / "store"))

from plant_run import Plant  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from store_pg import PgCluster, pg_available  # noqa: E402

from vinspect.store.audit_key import load_keyring  # noqa: E402
from vinspect.store.db import _WRITER_LOCK_KEY, make_engine, session_scope  # noqa: E402
from vinspect.store.tables import InspectionRecord, NcrRecord  # noqa: E402
from vinspect.store.verify import verify_store  # noqa: E402


class LockSampler:
    """Samples the number of sessions waiting on the writer advisory lock every ``period_s``."""

    def __init__(self, url: str, period_s: float = 0.05) -> None:
        self.engine = make_engine(url, application_name="plant bench sampler")
        self.period_s = period_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            while not self._stop.wait(self.period_s):
                self.samples.append(
                    int(
                        conn.execute(
                            text(
                                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                "AND classid = 0 AND objid = :k"
                            ),
                            {"k": _WRITER_LOCK_KEY},
                        ).scalar()
                        or 0
                    )
                )

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.dispose()


def check_store(url: str, key_dir: Path) -> dict[str, Any]:
    engine = make_engine(url)
    from vinspect.store.audit_key import attach

    keyring = load_keyring(key_dir / "audit-key")
    assert keyring is not None
    attach(engine, keyring, anchor_path=None)
    try:
        with session_scope(engine, readonly=True) as session:
            per_station = dict(
                session.execute(
                    select(InspectionRecord.station_id, func.count()).group_by(InspectionRecord.station_id)
                ).all()
            )
            ncr_per_station = dict(
                session.execute(select(NcrRecord.station_id, func.count()).group_by(NcrRecord.station_id)).all()
            )
            seqs = sorted(session.scalars(select(NcrRecord.ncr_seq)))
            numbers = list(session.scalars(select(NcrRecord.ncr_number)))
            first, last = session.execute(
                select(func.min(InspectionRecord.recorded_at), func.max(InspectionRecord.recorded_at))
            ).one()
            report = verify_store(session=session, keyring=keyring)
            sizes = {
                table: int(session.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar() or 0)
                for table in ("inspections", "ncrs", "ncr_evidence", "ncr_events", "audit_records", "outbox")
            }
    finally:
        engine.dispose()
    return {
        "inspections_by_station": per_station,
        "ncrs_by_station": ncr_per_station,
        "ncr_numbers_unique": len(set(numbers)) == len(numbers),
        "ncr_seq_gap_free": seqs == list(range(1, len(seqs) + 1)),
        "verify_ok": report.ok,
        "verify_problems": [str(p) for p in report.problems][:5],
        "audit_rows": report.chain.rows_checked,
        "table_bytes": sizes,
        "first_recorded": first.isoformat() if first else None,
        "last_recorded": last.isoformat() if last else None,
    }


def run_once(cluster: PgCluster, n: int, *, seconds: float, fps: float, work: Path) -> dict[str, Any]:
    url = cluster.create_database(f"bench{n}")
    plant = Plant(work / f"n{n}", url, n, fps=fps)
    started = time.monotonic()
    with LockSampler(url) as sampler:
        plant.start(duration_s=seconds)
        plant.wait(timeout_s=seconds + 240)
    wall = time.monotonic() - started
    failed = [
        (st.station_id, st.proc.returncode if st.proc else None, st.err[-800:])
        for st in plant.stations
        if not st.closing
    ]
    store = check_store(url, plant.key_dir)
    store["evidence_bytes"] = sum(
        f.stat().st_size for st in plant.stations for f in (st.data / "evidence").rglob("*") if f.is_file()
    )
    cluster.drop_database(url)
    stations = []
    for st in plant.stations:
        c = st.closing
        if not c:
            continue
        books = c["books"]
        stations.append(
            {
                "station": st.station_id,
                "parts": books["triggers"],
                "overflow_rejects": books["failed_fault"].get("overflow", 0),
                "late": books["failed_fault"].get("late", 0),
                "record_dropped": (c.get("extras") or {}).get("record_dropped", 0),
                "record_queue_depth_at_close": c.get("record_queue_depth"),
                "sink_errors": (c.get("extras") or {}).get("sink_errors"),
                "state_at_close": c.get("state"),
                "line_stopped": c.get("line_stopped"),
                "stored": store["inspections_by_station"].get(st.station_id, 0),
                "p50_ms": c["latency_ms"].get("p50_ms"),
                "p99_ms": c["latency_ms"].get("p99_ms"),
                "max_ms": c["latency_ms"].get("max_ms"),
                "books_reconciled": c["books_reconciled"],
            }
        )
    total = sum(store["inspections_by_station"].values())
    ncrs = sum(store["ncrs_by_station"].values())
    span = seconds  # every station runs --duration-s seconds after its own start-up
    lock_waiting = sampler.samples or [0]
    return {
        "stations": n,
        "seconds": seconds,
        "fps_offered_per_station": fps,
        "wall_s": round(wall, 1),
        "inspections_stored": total,
        "ncrs_stored": ncrs,
        "inspections_per_s": round(total / span, 1),
        "ncrs_per_s": round(ncrs / span, 1),
        "p99_ms_per_station": [s["p99_ms"] for s in stations],
        "p99_ms_max": max((s["p99_ms"] or 0) for s in stations) if stations else None,
        "overflow_rejects": sum(s["overflow_rejects"] for s in stations),
        "record_dropped": sum(s["record_dropped"] for s in stations),
        "writer_lock_waiting_mean": round(sum(lock_waiting) / len(lock_waiting), 2),
        "writer_lock_waiting_max": max(lock_waiting),
        "per_station": stations,
        "failed_stations": failed,
        "store": store,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "plant.json")
    args = parser.parse_args()
    reason = pg_available()
    if reason is not None:
        sys.exit(f"plant bench needs PostgreSQL: {reason}")
    load_before = os.getloadavg()
    results = []
    cluster = PgCluster()
    try:
        cluster.start()
        with tempfile.TemporaryDirectory(prefix="vinspect-plant-") as tmp:
            for n in args.stations:
                row = run_once(cluster, n, seconds=args.seconds, fps=args.fps, work=Path(tmp))
                results.append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in ("per_station", "store")}), flush=True)
    finally:
        cluster.destroy()
    doc = {
        "command": "python bench/plant_bench.py " + " ".join(sys.argv[1:]),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "shared": True,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
