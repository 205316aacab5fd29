"""NCR store throughput on SQLite (WAL, synchronous=FULL) and PostgreSQL (issue #5), plus kill -9.

Measures, through the real ``StoreSink`` (the path the line uses):

1. ``ncr``: FAIL inspections, each opening an NCR with a PNG frame image and a heatmap written
   to the content-addressed evidence store (fsync of file and directory) and committed durably
   before it is acknowledged. Two shapes:

   * ``ncr_line`` (the target): a producer thread offers rejects at ``--offered`` per second into
     a queue and one record thread drains it exactly as the station's does
     (``take_run`` + ``deliver``: whatever queued up is group-committed, up to ``--record-batch``).
     Reports the acknowledged rate, the *sustained* rate (slowest 1-second window), latency
     from offer to acknowledgement p50/p99, the largest backlog and the mean group size.
     Target >= 200 NCRs/s sustained.
   * ``ncr_serial``: one ``write`` at a time, each waiting for its own commit (no backlog, so
     no grouping): the cost of one isolated NCR.
2. ``inspections``: PASS inspections, batched ``--batch`` per transaction. Target >= 2,000/s.
3. The same on a private PostgreSQL 15 cluster (started and removed here) unless --skip-postgres.
4. ``--kills N``: the T2-size kill -9 run of tests/faults/test_store_kill.py on SQLite.
5. ``--powercuts N``: the T2-size simulated power-cut run of tests/faults/test_store_powercut.py.

After each phase the store is verified (integrity, audit chain, every record, evidence scrub);
the timing excludes that. Results go to bench/results/store.json with the exact command and the
load average before and after: the bench machine is shared (2 cores), so numbers taken while
others run are lower bounds.

    python bench/store_bench.py --ncrs 2000 --inspections 20000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import queue
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vinspect.pipeline.record import RECORD_BATCH, deliver, take_run  # noqa: E402
from vinspect.store import EvidenceStore, StoreSink, make_engine, scrub, session_scope, upgrade  # noqa: E402
from vinspect.store.audit_key import ANCHOR_FILE, AuditKeyring, attach, open_keyring  # noqa: E402
from vinspect.store.ncr import NcrDefaults  # noqa: E402
from vinspect.store.verify import verify_store  # noqa: E402
from vinspect.types import (  # noqa: E402
    Decision,
    Frame,
    Inspection,
    ModelRef,
    Prediction,
    Region,
    StageTimings,
    Verdict,
)

DEFAULTS = NcrDefaults(
    part_number="TILE-100",
    part_revision="C",
    part_name="Magnetic tile",
    requirement_ref="DWG-100 rev C char 7",
    site_id="plant-1",
    line_id="line-2",
)
MODEL = ModelRef(name="tile-anomaly", version="bench", sha256="ab" * 32)
T0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


def _load(relative: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _frame_image(seq: int, size: int) -> np.ndarray:
    """A textured part with sensor noise and a dark scratch: compresses like a real frame."""
    rng = np.random.default_rng(seq)
    y, x = np.mgrid[0:size, 0:size]
    base = 120 + 40 * np.sin(x / 9.0) * np.cos(y / 13.0) + rng.normal(0, 4, (size, size))
    base[size // 3 : size // 3 + 3, size // 4 : size // 2] -= 60
    image = np.clip(base, 0, 255).astype(np.uint8)
    image.flags.writeable = False
    return image


def _inspection(seq: int, *, verdict: Verdict, size: int) -> Inspection:
    frame = (
        Frame(
            image=_frame_image(seq, size),
            source_id="cam-1",
            frame_id=seq,
            captured_at=T0 + timedelta(milliseconds=seq),
            pixel_format="Mono8",
            origin="synthetic",
            part_id=f"SN-{seq:08d}",
        )
        if verdict is not Verdict.PASS
        else None
    )
    amap = (
        np.random.default_rng(seq).random((size // 4, size // 4), dtype=np.float32)
        if verdict is not Verdict.PASS
        else None
    )
    score = 0.9 if verdict is Verdict.FAIL else 0.1
    prediction = Prediction(
        score=score,
        anomaly_map=amap,
        defect_code="crack",
        regions=(Region(label="crack", score=score, box_xyxy=(1, 2, 30, 40), area_px=80),),
    )
    reasons = ("score",) if verdict is Verdict.FAIL else ()
    return Inspection(
        inspection_id=f"b-{verdict}-{seq:09d}",
        station_id="st-1",
        part_seq=seq,
        frame=frame,
        prediction=prediction,
        timings=StageTimings(),
        model=MODEL,
        decision=Decision(verdict=verdict, reasons=reasons, policy_id="p", fail_at=0.7, review_at=0.5),
    )


def _rate_stats(stamps: list[float], latencies: list[float]) -> dict[str, float]:
    elapsed = stamps[-1] - stamps[0] + latencies[0]
    windows = []
    start = 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] > 1.0:
            start += 1
        if stamp - stamps[0] >= 1.0:
            windows.append(end - start + 1)
    lat = np.array(latencies) * 1000
    return {
        "count": len(stamps),
        "seconds": round(elapsed, 3),
        "rate_per_s": round(len(stamps) / elapsed, 1),
        "sustained_min_1s_window_per_s": float(min(windows)) if windows else round(len(stamps) / elapsed, 1),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 2),
        "latency_ms_max": round(float(lat.max()), 2),
    }


def _timed(writes: list[Inspection], write: Callable[[Inspection], None]) -> dict[str, float]:
    stamps, latencies = [], []
    for inspection in writes:
        t0 = time.perf_counter()
        write(inspection)
        t1 = time.perf_counter()
        stamps.append(t1)
        latencies.append(t1 - t0)
    return _rate_stats(stamps, latencies)


def _line(fails: list[Inspection], sink: StoreSink, args: argparse.Namespace) -> dict[str, float]:
    """Offer rejects at a fixed rate; one record thread drains them like the station's.

    An NCR counts as acknowledged when ``deliver`` returns for its group (after the commit).
    """
    records: queue.Queue[Inspection | None] = queue.Queue()
    offered: dict[str, float] = {}
    acked: dict[str, float] = {}
    groups: list[int] = []
    backlog = 0

    def record() -> None:
        while True:
            batch, done = take_run(records, limit=args.record_batch)
            if batch:
                groups.append(len(batch))
                errors = deliver(sink, batch)
                if any(errors):
                    raise RuntimeError(f"sink failed: {next(e for e in errors if e)}")
                now = time.perf_counter()
                acked.update((i.inspection_id, now) for i in batch)
            if done:
                return

    thread = threading.Thread(target=record, name="bench-record")
    thread.start()
    period = 1.0 / args.offered
    start = time.perf_counter()
    for n, inspection in enumerate(fails):
        delay = start + n * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        offered[inspection.inspection_id] = time.perf_counter()
        records.put(inspection)
        backlog = max(backlog, records.qsize())
    records.put(None)
    thread.join()
    order = sorted(fails, key=lambda i: acked[i.inspection_id])
    stamps = [acked[i.inspection_id] for i in order]
    latencies = [acked[i.inspection_id] - offered[i.inspection_id] for i in order]
    stats = _rate_stats(stamps, latencies)
    stats.update(
        {
            "offered_per_s": args.offered,
            "max_backlog": backlog,
            "mean_group": round(float(np.mean(groups)), 2),
            "max_group": max(groups),
        }
    )
    return stats


def _verified(url: str, evidence: EvidenceStore, keyring: AuditKeyring | None = None) -> bool:
    engine = make_engine(url)
    try:
        with session_scope(engine, readonly=True) as session:
            report = verify_store(session=session, keyring=keyring)
            return report.ok and scrub(evidence, session=session).ok
    finally:
        engine.dispose()


def bench_backend(url: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    keyring = None if args.no_audit_key else open_keyring(workdir)  # signed rows + anchor file, as the station
    if keyring is not None:
        attach(engine, keyring, anchor_path=workdir / ANCHOR_FILE)
    evidence = EvidenceStore(workdir / "evidence")
    sink = StoreSink(engine, evidence, defaults=DEFAULTS, batch_size=args.batch, flush_interval_s=3600)
    warm = [_inspection(i, verdict=Verdict.FAIL, size=args.image_size) for i in range(50)]
    serial = [_inspection(1000 + i, verdict=Verdict.FAIL, size=args.image_size) for i in range(args.ncrs // 2)]
    fails = [_inspection(100_000 + i, verdict=Verdict.FAIL, size=args.image_size) for i in range(args.ncrs)]
    passes = [_inspection(10_000_000 + i, verdict=Verdict.PASS, size=args.image_size) for i in range(args.inspections)]
    for inspection in warm:
        sink.write(inspection)
    ncr_serial = _timed(serial, sink.write)
    ncr_line = _line(fails, sink, args)
    t0 = time.perf_counter()
    for inspection in passes:
        sink.write(inspection)
    sink.flush()
    seconds = time.perf_counter() - t0
    evidence.close()
    engine.dispose()
    rows = {
        "count": len(passes),
        "batch": args.batch,
        "seconds": round(seconds, 3),
        "rate_per_s": round(len(passes) / seconds, 1),
    }
    return {
        "ncr_line": ncr_line,
        "ncr_serial": ncr_serial,
        "inspections_batched": rows,
        "audit_key": keyring is not None,
        "verified": _verified(url, evidence, keyring),
    }


def _pg(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    store_pg = _load("tests/store/store_pg.py", "store_pg")
    reason = store_pg.pg_available()
    if reason is not None:
        return {"skipped": reason}
    cluster = store_pg.PgCluster()
    try:
        cluster.start()
        result = bench_backend(cluster.create_database("bench"), workdir, args)
        result["server"] = "PostgreSQL 15 (private cluster, fsync=on, synchronous_commit=on, loopback TCP)"
        return result
    finally:
        cluster.destroy()


def _kills(workdir: Path, kills: int) -> dict[str, Any]:
    _load("tests/store/store_factories.py", "store_factories")
    sys.path.insert(0, str(ROOT / "tests" / "faults"))
    harness = _load("tests/faults/test_store_kill.py", "store_kill_harness")
    url = f"sqlite:///{workdir / 'vinspect.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    t0 = time.perf_counter()
    acknowledged = harness._kill_rounds(url, workdir, kills=kills)
    harness._verify(url, workdir, acknowledged)  # raises on any loss or verification failure
    return {
        "kills": kills,
        "acknowledged_ncrs": len(acknowledged),
        "lost": 0,
        "verified": True,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _powercuts(workdir: Path, cuts: int) -> dict[str, Any]:
    _load("tests/store/store_factories.py", "store_factories")
    sys.path.insert(0, str(ROOT / "tests" / "faults"))
    powercut = _load("tests/faults/powercut.py", "powercut")
    t0 = time.perf_counter()
    rounds = powercut.cut_rounds(
        initial=powercut.new_store(workdir / "initial"),
        workdir=workdir,
        shim=powercut.build_shim(workdir),
        cuts=cuts,
        mode="full",
    )
    acknowledged = set().union(*(r.acknowledged for r in rounds))
    state = powercut.inspect_image(rounds[-1].image, workdir)
    return {
        "cuts": cuts,
        "acknowledged_ncrs": len(acknowledged),
        "lost": len(acknowledged - state.stored),
        "integrity_check": state.report.integrity,
        "audit_and_records_verified": state.report.ok,
        "evidence_scrub_ok": state.scrub.ok,
        "books_discrepancy": state.books.discrepancy,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _targets(results: dict[str, Any]) -> dict[str, bool]:
    sqlite_run = results["sqlite"]
    return {
        "sqlite_ncr_sustained_ge_200_per_s": sqlite_run["ncr_line"]["sustained_min_1s_window_per_s"] >= 200,
        "sqlite_ncr_mean_ge_200_per_s": sqlite_run["ncr_line"]["rate_per_s"] >= 200,
        "sqlite_inspections_ge_2000_per_s": sqlite_run["inspections_batched"]["rate_per_s"] >= 2000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ncrs", type=int, default=2000)
    parser.add_argument("--inspections", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=200, help="PASS rows per transaction")
    parser.add_argument("--offered", type=float, default=300.0, help="rejects offered per second (ncr_line)")
    parser.add_argument("--record-batch", type=int, default=RECORD_BATCH, help="largest group commit (the station's)")
    parser.add_argument("--image-size", type=int, default=256, help="square Mono8 frame edge, px")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--no-audit-key",
        action="store_true",
        help="write unkeyed audit rows (no HMAC, no anchor file): the pre-issue-16 cost",
    )
    parser.add_argument("--kills", type=int, default=0, help="also run N kill -9 rounds on SQLite (T2: 2000)")
    parser.add_argument("--powercuts", type=int, default=0, help="also run N simulated power cuts on SQLite (T2: 2000)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "store.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(),
            "loadavg_before": [round(x, 2) for x in load_before],
        },
        "image": f"{args.image_size}x{args.image_size} Mono8 PNG + {args.image_size // 4}^2 heatmap PNG per NCR",
    }
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        (Path(tmp) / "sqlite").mkdir()
        results["sqlite"] = bench_backend(f"sqlite:///{tmp}/sqlite/vinspect.db", Path(tmp) / "sqlite", args)
        if not args.skip_postgres:
            (Path(tmp) / "pg").mkdir()
            results["postgres"] = _pg(Path(tmp) / "pg", args)
        if args.kills:
            (Path(tmp) / "kill").mkdir()
            results["kill9"] = _kills(Path(tmp) / "kill", args.kills)
        if args.powercuts:
            (Path(tmp) / "powercut").mkdir()
            results["powercut"] = _powercuts(Path(tmp) / "powercut", args.powercuts)
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["targets_met"] = _targets(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
