"""Restart cost of store-based recovery (issue 16): a SQLite store with N committed inspections,
then what ``vinspect run`` does before its first part: open the engine, check the schema, recount
the station's books, find the next part sequence, look for records a JSONL copy lacks. Then the
whole restart ``vinspect run`` does (:func:`vinspect.cli.restart.recover`) after a kill that left
``--unrecorded`` numbers of a run of ``--run-length`` parts without a record (the admitted mark
says so): find them, commit a FAIL ``crash`` record and NCR for each, recount.

    python bench/restart_bench.py --inspections 1000000

Prints one JSON document (fill time, recovery time per step, the recovered books).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vinspect.cli.restart import recover  # noqa: E402
from vinspect.pipeline.decide import DecisionPolicy  # noqa: E402
from vinspect.pipeline.part_numbers import PartNumbers, mark_path  # noqa: E402
from vinspect.store import EvidenceStore, NcrDefaults, StoreSink, make_engine, session_scope, upgrade  # noqa: E402
from vinspect.store.recovery import records_after, recover_station, unrecorded_seqs  # noqa: E402
from vinspect.store.repository import add_inspections  # noqa: E402
from vinspect.types import Decision, Inspection, ModelRef, StageTimings, Verdict  # noqa: E402

MODEL = ModelRef(name="tile-anomaly", version="bench", sha256="ab" * 32)


def _inspection(seq: int) -> Inspection:
    fail = seq % 20 == 0
    decision = Decision(
        verdict=Verdict.FAIL if fail else Verdict.PASS,
        reasons=("score",) if fail else (),
        policy_id="p1",
        fail_at=0.7,
        review_at=0.5,
    )
    return Inspection(
        inspection_id=f"{seq:016x}-{seq:08d}-beef",
        station_id="line-1",
        part_seq=seq,
        frame=None,
        prediction=None,
        decision=decision,
        timings=StageTimings(),
        model=MODEL,
    )


def _after_a_kill(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, object]:
    """The full restart after a kill: the mark says ``--unrecorded`` more numbers were handed out."""
    run_first = max(0, args.inspections - args.run_length)
    numbers = PartNumbers(mark_path(tmp, "line-1"), start=run_first)
    numbers.admit(args.inspections + args.unrecorded - 1)  # never closed: as after SIGKILL
    policy = DecisionPolicy(fail_at=0.7, review_at=0.5, policy_id="p1")
    defaults = NcrDefaults(
        part_number="TILE-100",
        part_revision="C",
        part_name="tile",
        requirement_ref="DWG-1",
        site_id="bench",
        line_id="l1",
    )
    engine = make_engine(url)
    with session_scope(engine, readonly=True) as session:  # the scan alone, for the breakdown
        t0 = time.perf_counter()
        gaps = unrecorded_seqs("line-1", first=run_first, end=args.inspections + args.unrecorded, session=session)
        scan_s = time.perf_counter() - t0
    engine.dispose()
    t0 = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    with StoreSink(engine, EvidenceStore(tmp / "evidence"), defaults=defaults) as sink:
        got = recover("line-1", data_dir=tmp, policy=policy, sinks=[sink], jsonl=None, engine=engine)
    total = time.perf_counter() - t0
    engine.dispose()
    assert got.books is not None
    return {
        "total_s": round(total, 3),
        "of_which_scan_s": round(scan_s, 3),
        "gaps_found": len(gaps),
        "run_length": args.run_length,
        "crash_records": got.crash_records,
        "next_part_seq": got.start,
        "triggers": got.books.triggers,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inspections", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument(
        "--run-length",
        type=int,
        default=1_000_000,
        help="parts of the killed run (its numbers are scanned for missing records)",
    )
    parser.add_argument("--unrecorded", type=int, default=32, help="numbers the killed run left without a record")
    args = parser.parse_args()
    result: dict[str, object] = {
        "command": "python bench/restart_bench.py " + " ".join(sys.argv[1:]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with tempfile.TemporaryDirectory(prefix="restart-bench-") as tmp:
        url = f"sqlite:///{tmp}/vinspect.db"
        engine = make_engine(url)
        upgrade(engine)
        t0 = time.perf_counter()
        for start in range(0, args.inspections, args.batch):
            batch = [_inspection(s) for s in range(start, min(start + args.batch, args.inspections))]
            with session_scope(engine) as session:
                add_inspections(batch, session=session, checked=True)
        result["fill_s"] = round(time.perf_counter() - t0, 1)
        engine.dispose()
        steps: dict[str, float] = {}
        t0 = time.perf_counter()
        engine = make_engine(url)
        upgrade(engine)
        steps["open_and_check_schema_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        with session_scope(engine, readonly=True) as session:
            state = recover_station("line-1", session=session)
            steps["recount_books_and_next_seq_s"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            missing = records_after("line-1", part_seq=state.next_part_seq - 5, session=session)
            steps["records_a_jsonl_copy_lacks_s"] = time.perf_counter() - t2
        steps["total_s"] = time.perf_counter() - t0
        engine.dispose()
        result["inspections"] = args.inspections
        result["restart"] = {k: round(v, 3) for k, v in steps.items()}
        result["recovered"] = {
            "triggers": state.books.triggers,
            "next_part_seq": state.next_part_seq,
            "re_derived_lines": len(missing),
        }
        result["after_a_kill"] = _after_a_kill(url, Path(tmp), args)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
