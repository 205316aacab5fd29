"""What distributing one bundle through the store costs (issue 18): pack, store, and one station's pull.

For a real bundle folder (default: the demo's trained bundle), on a private PostgreSQL 15 (and on
SQLite with ``--sqlite``), each round times:

* ``pack``: the deterministic tar of the folder (``vinspect.models.archive.pack_bundle``);
* ``distribute``: the transaction that stores the archive and assigns it to ``--stations``
  stations (``vinspect.store.distribution.distribute``, audit row included);
* ``pull``: one station's ``AssignmentWatch.poll()`` until it hands the folder over: read the
  assignment, fetch the archive, check its SHA-256, unpack, install into the registry (which
  checks model.onnx's SHA-256) and compare the input (here against no running model, so the input
  check reads nothing). The gate (ONNX load + golden self-test) is
  not included: it is the same as any hot swap.

Usage: ``python bench/distribution_bench.py --bundle demo-data/bundle --rounds 5 --out
bench/results/distribution.json``. Timings on a shared machine are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "store"))

from store_pg import PgCluster, pg_available  # noqa: E402

from vinspect.models.archive import archive_sha256, pack_bundle  # noqa: E402
from vinspect.models.manifest import read_manifest  # noqa: E402
from vinspect.models.registry import ModelRegistry  # noqa: E402
from vinspect.store import make_engine, session_scope, upgrade  # noqa: E402
from vinspect.store.distribution import distribute  # noqa: E402
from vinspect.store.model_pull import AssignmentWatch  # noqa: E402
from vinspect.store.stations import StationIdentity, report_station  # noqa: E402
from vinspect.types import ModelRef  # noqa: E402


def one_round(url: str, bundle: Path, work: Path, *, stations: int, version: str) -> dict[str, float]:
    engine = make_engine(url)
    upgrade(engine)
    ids = [f"st{k + 1:02d}" for k in range(stations)]
    for sid in ids:
        report_station(
            engine,
            StationIdentity(station_id=sid),
            {"state": "OPERATIONAL"},
            started_at=datetime.now(UTC),
            period_s=2.0,
            parts_per_s=None,
            reject_rate=None,
        )
    m = read_manifest(bundle)
    t0 = time.perf_counter()
    data = pack_bundle(bundle)
    t1 = time.perf_counter()
    with session_scope(engine) as s:  # each round: a copy under a fresh version (a stored version is never replaced)
        distribute(
            session=s,
            name=m.name,
            version=version,
            sha256=m.sha256,
            archive=data,
            archive_sha256=archive_sha256(data),
            station_ids=ids,
            approval="bench",
            actor="bench",
        )
    t2 = time.perf_counter()
    registry = ModelRegistry(work / "models")
    watch = AssignmentWatch(
        engine,
        station_id=ids[0],
        registry=registry,
        name=m.name,
        check_s=0.0,
        running=ModelRef(name=m.name, version="none", sha256="0" * 64),
    )
    t3 = time.perf_counter()
    path = watch.poll()
    t4 = time.perf_counter()
    engine.dispose()
    assert path is not None, "the pull did not hand the bundle over"
    return {"archive_bytes": float(len(data)), "pack_s": t1 - t0, "distribute_s": t2 - t1, "pull_s": t4 - t3}


def _versioned_copy(bundle: Path, work: Path, version: str) -> Path:
    import shutil

    dest = work / f"bundle-{version}"
    shutil.copytree(bundle, dest)
    manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
    manifest["version"] = version
    (dest / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "demo-data" / "bundle", help="bundle folder")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per database (default 5)")
    ap.add_argument("--stations", type=int, default=8, help="stations assigned per distribution (default 8)")
    ap.add_argument("--sqlite", action="store_true", help="also on SQLite")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args()
    results: dict[str, Any] = {
        "bundle": str(args.bundle),
        "rounds": args.rounds,
        "stations": args.stations,
        "load_average": os.getloadavg(),
        "databases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        targets: list[tuple[str, str]] = []
        cluster = None
        if pg_available() is None:
            cluster = PgCluster()
            cluster.start()
            targets.append(("postgresql", cluster.create_database("dist")))
        if args.sqlite:
            targets.append(("sqlite", f"sqlite:///{work / 'store.db'}"))
        try:
            for label, url in targets:
                rounds = []
                for k in range(args.rounds):
                    version = f"bench-{k + 1}"
                    copy = _versioned_copy(args.bundle, work / label, version)
                    rounds.append(
                        one_round(url, copy, work / label / f"station-{k}", stations=args.stations, version=version)
                    )
                summary = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
                results["databases"][label] = {"median": summary, "rounds": rounds}
                print(
                    f"{label}: archive {summary['archive_bytes'] / 1e6:.1f} MB; median pack "
                    f"{summary['pack_s'] * 1e3:.0f} ms, store+assign {summary['distribute_s'] * 1e3:.0f} ms, "
                    f"one station's pull+verify+install {summary['pull_s'] * 1e3:.0f} ms"
                )
        finally:
            if cluster is not None:
                cluster.destroy()
    results["load_average_after"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
