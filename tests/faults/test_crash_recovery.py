"""Crash recovery from the store (issue 16): kill -9 in each window, deterministically, then restart.

A test-only crash point (``VINSPECT_CRASH_AT``, see :mod:`vinspect.crashpoints`) makes the real
``vinspect run`` process exit like a SIGKILL at a named place: before the group commit, between
the commit and the acknowledgement / JSONL line, and in the middle of a JSONL line. After a
restart: no part number stored twice, no second NCR for a part, and the books the station opens
with equal a recount of the store. Plus the two reproductions of issue 16.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from test_station_faults import GOLDEN, cli

from testkit.bundles import write_golden_samples
from testkit.stations import approve_station
from vinspect.crashpoints import CRASH_ENV, EXIT_STATUS
from vinspect.pipeline.part_numbers import mark_path, read_mark
from vinspect.store.db import make_engine, session_scope
from vinspect.store.recovery import skipped_ranges
from vinspect.store.repository import count_books
from vinspect.store.tables import InspectionRecord, NcrRecord
from vinspect.store.verify import verify_store
from vinspect.types import Books

PRODUCT = "{part_number: TL-1, part_revision: A, part_name: tile, requirement_ref: DWG-1, site_id: p1, line_id: l1}"


def _station(tmp_path: Path, bundle: Path, *, sinks: str, name: str = "station.yaml") -> Path:
    write_golden_samples(bundle, GOLDEN)
    path = tmp_path / name
    path.write_text(
        f"station_id: t1\ndeadline_ms: 200\nmodel: {{path: {bundle}}}\nsignal: {{kind: null}}\n"
        "source: {kind: synthetic, fps: 60, size_px: 64, defect_rate: 0.3, overflow: reject}\n"
        f"policy: {{fail_at: 0.31, review_at: 0.3}}\nsinks: {sinks}\n"
    )
    return path


@pytest.fixture()
def store_station(tmp_path, tiny_bundle) -> Path:
    return _station(tmp_path, tiny_bundle, sinks=f"[{{kind: store, product: {PRODUCT}}}, {{kind: jsonl}}]")


@pytest.fixture()
def jsonl_station(tmp_path, tiny_bundle) -> Path:
    return _station(tmp_path, tiny_bundle, sinks="[jsonl]", name="jsonl-station.yaml")


def run_station(
    station: Path,
    data: Path,
    parts: int,
    *,
    crash_at: str | None = None,
    database_url: str | None = None,
    approve: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``vinspect run`` in its own process; a store-backed station file is approved first (``approve``)."""
    if approve and "kind: store" in station.read_text():
        approve_station(station, data, database_url=database_url)
    env = {k: v for k, v in os.environ.items() if k not in (CRASH_ENV, "VINSPECT_DATABASE_URL")}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    if database_url is not None:
        env["VINSPECT_DATABASE_URL"] = database_url
    return subprocess.run(
        [*cli(), "--station", str(station), "--data-dir", str(data), "--max-parts", str(parts)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )


def closing_books(done: subprocess.CompletedProcess[str]) -> Books:
    assert done.returncode == 0, done.stderr
    closing = json.loads(done.stdout.strip().splitlines()[-1])
    assert closing["books_reconciled"]
    b = closing["books"]
    return Books(
        triggers=b["triggers"],
        passed=b["passed"],
        review=b["review"],
        failed_defect=b["failed_defect"],
        failed_fault=b["failed_fault"],
    )


def jsonl_seqs(data: Path) -> list[int]:
    lines = (data / "inspections.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"", "a torn last line was left behind"
    return [json.loads(line)["part_seq"] for line in lines[:-1]]


def assert_store_consistent(data: Path, books: Books, *, url: str | None = None) -> list[int]:
    """No part stored twice, one NCR per part at most, books == recount; returns the stored part seqs."""
    engine = make_engine(url or f"sqlite:///{data / 'vinspect.db'}")
    try:
        with session_scope(engine, readonly=True) as session:
            seqs = list(
                session.scalars(
                    InspectionRecord.__table__.select()
                    .with_only_columns(InspectionRecord.part_seq)
                    .where(InspectionRecord.station_id == "t1")
                )
            )
            ncr_parts = list(
                session.scalars(
                    NcrRecord.__table__.select()
                    .with_only_columns(InspectionRecord.part_seq)
                    .join_from(NcrRecord, InspectionRecord, NcrRecord.inspection_id == InspectionRecord.inspection_id)
                )
            )
            recount = count_books(session=session, station_id="t1")
            report = verify_store(session=session)
    finally:
        engine.dispose()
    assert [s for s, n in Counter(seqs).items() if n > 1] == [], "a part number was stored twice"
    assert [s for s, n in Counter(ncr_parts).items() if n > 1] == [], "a part got two NCRs"
    assert books == recount
    assert report.ok, (report.chain, report.problems)
    return sorted(seqs)


def test_repro_a_jsonl_lines_lost_from_the_last_fail_on(tmp_path, store_station) -> None:
    """Issue 16 #1: delete the JSONL lines from the last FAIL on, restart: no part number reused."""
    data = tmp_path / "data"
    first = closing_books(run_station(store_station, data, 20))
    path = data / "inspections.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    last_fail = max(i for i, line in enumerate(lines) if json.loads(line)["verdict"] == "FAIL")
    path.write_text("".join(lines[:last_fail]))
    done = run_station(store_station, data, 5)
    books = closing_books(done)
    assert books.triggers == first.triggers + 5 == 25
    assert f"re-derived {len(lines) - last_fail} committed record line(s)" in done.stderr
    seqs = assert_store_consistent(data, books)
    assert seqs == list(range(25)) and jsonl_seqs(data) == list(range(25))


def test_repro_b_torn_jsonl_line_does_not_swallow_the_next_record(tmp_path, jsonl_station) -> None:
    """Issue 16 #2: a torn partial line after a 10-part run; then 5 parts, then 1: the books say 16."""
    data = tmp_path / "data"
    assert closing_books(run_station(jsonl_station, data, 10)).triggers == 10
    path = data / "inspections.jsonl"
    raw = path.read_bytes()
    path.write_bytes(raw + raw[:300])
    assert closing_books(run_station(jsonl_station, data, 5)).triggers == 15
    assert closing_books(run_station(jsonl_station, data, 1)).triggers == 16
    assert jsonl_seqs(data) == list(range(16))


def test_store_station_truncates_a_torn_jsonl_line(tmp_path, store_station) -> None:
    data = tmp_path / "data"
    closing_books(run_station(store_station, data, 10))
    path = data / "inspections.jsonl"
    path.write_bytes(path.read_bytes() + b'{"schema_version":1,"part_')
    done = run_station(store_station, data, 3)
    assert "truncated 1 torn record line" in done.stderr
    assert_store_consistent(data, closing_books(done))
    assert jsonl_seqs(data) == list(range(13))


def stored_reasons(data: Path) -> dict[int, list[str]]:
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    try:
        with session_scope(engine, readonly=True) as session:
            rows = session.execute(
                select(InspectionRecord.part_seq, InspectionRecord.reasons).where(InspectionRecord.station_id == "t1")
            )
            return {seq: json.loads(reasons) for seq, reasons in rows}
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("point", "hit"),
    [("part.admitted", 10), ("store.before_commit", 3), ("store.after_commit", 3), ("jsonl.mid_line", 15)],
)
def test_kill_in_each_window_then_restart(tmp_path, store_station, point: str, hit: int) -> None:
    data = tmp_path / "data"
    crashed = run_station(store_station, data, 60, crash_at=f"{point}:{hit}")
    assert crashed.returncode == EXIT_STATUS, crashed.stderr  # died at the crash point, no cleanup ran
    before = jsonl_seqs(data) if point != "jsonl.mid_line" else None
    done = run_station(store_station, data, 8)
    books = closing_books(done)
    stored = assert_store_consistent(data, books)
    recorded = jsonl_seqs(data)
    assert len(recorded) == len(set(recorded)), "a part number appears twice in the JSONL copy"
    assert set(stored) <= set(recorded), "a committed record is missing from the JSONL copy"
    assert recorded[-8:] == list(range(recorded[-8], recorded[-8] + 8)) and recorded[-8] > max(stored[:-8])
    if point == "store.after_commit":  # committed but never written to the JSONL file: re-derived from the store
        assert before is not None and "re-derived" in done.stderr and len(recorded) > len(before) + 8
    if point == "jsonl.mid_line":
        assert "truncated 1 torn record line" in done.stderr
    # No number reused and none skipped: every number handed out has exactly one record.
    assert stored == list(range(len(stored))) == sorted(recorded) and books.triggers == len(stored)
    reasons = stored_reasons(data)
    crashed = [seq for seq, r in reasons.items() if r == ["crash"]]
    if point == "part.admitted":  # killed after marking part 9, before it had a verdict
        assert 9 in crashed and "recorded as FAIL crash" in done.stderr
    assert all(seq < len(stored) - 8 for seq in crashed)  # only the crashed run's numbers


def _patch_mark(path: Path, *, boot: bytes, next_seq: int) -> None:
    """What a power cut can leave: an older page of the mark (older ``next``) from another boot."""
    raw = bytearray(path.read_bytes())
    raw[16:56] = boot.ljust(40, b"\0")
    struct.pack_into("<Q", raw, 64, next_seq)
    path.write_bytes(bytes(raw))


def test_power_cut_skips_the_numbers_that_may_have_been_used_and_records_the_skip(tmp_path, store_station) -> None:
    data = tmp_path / "data"
    crashed = run_station(store_station, data, 60, crash_at="part.admitted:30")
    assert crashed.returncode == EXIT_STATUS, crashed.stderr
    mark = mark_path(data, "t1")
    before = read_mark(mark)
    assert before is not None and before.next == 30 and before.reserved_to >= 30
    _patch_mark(mark, boot=b"an-earlier-boot", next_seq=5)
    done = run_station(store_station, data, 4)
    books = closing_books(done)
    stored = assert_store_consistent(data, books)
    known = stored[stored.index(before.reserved_to) - 1] + 1  # one past the highest number proven handed out
    assert 5 <= known <= 30 and stored[:known] == list(range(known))  # gaps below it became crash records
    assert stored[known:] == list(range(before.reserved_to, before.reserved_to + 4))
    assert f"part numbers {known}..{before.reserved_to - 1} may have been handed out" in done.stderr
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    try:
        with session_scope(engine, readonly=True) as session:
            assert skipped_ranges("t1", session=session) == [(known, before.reserved_to - 1)]
    finally:
        engine.dispose()
    audit = subprocess.run(
        [*cli()[:-1], "audit", "verify", "--data-dir", str(data)], capture_output=True, text=True, timeout=90
    )
    assert audit.returncode == 0 and audit.stdout.endswith("OK\n"), audit.stdout + audit.stderr
    assert f"station t1: {known}..{before.reserved_to - 1}" in audit.stdout
    again = run_station(store_station, data, 2)  # a clean stop in between: nothing more skipped
    assert "skipped" not in again.stderr and closing_books(again).triggers == books.triggers + 2


def test_clean_runs_leave_no_crash_records(tmp_path, store_station) -> None:
    data = tmp_path / "data"
    closing_books(run_station(store_station, data, 6))
    done = run_station(store_station, data, 4)
    stored = assert_store_consistent(data, closing_books(done))
    assert stored == list(range(10)) and "crash" not in done.stderr
    assert not any(r == ["crash"] for r in stored_reasons(data).values())
    mark = read_mark(mark_path(data, "t1"))
    assert mark is not None and mark.clean and (mark.run_first, mark.next) == (6, 10)


def test_jsonl_station_records_the_numbers_a_kill_left_unrecorded(tmp_path, jsonl_station) -> None:
    data = tmp_path / "data"
    crashed = run_station(jsonl_station, data, 60, crash_at="part.admitted:12")
    assert crashed.returncode == EXIT_STATUS, crashed.stderr
    done = run_station(jsonl_station, data, 3)
    books = closing_books(done)
    recorded = jsonl_seqs(data)
    assert recorded == list(range(len(recorded))) and books.triggers == len(recorded) >= 15
    lines = [json.loads(line) for line in (data / "inspections.jsonl").read_text().splitlines()]
    crashed_seqs = [rec["part_seq"] for rec in lines if rec["reasons"] == ["crash"]]
    assert 11 in crashed_seqs and all(rec["verdict"] == "FAIL" for rec in lines if rec["reasons"] == ["crash"])
    assert books.failed_fault.get("crash") == len(crashed_seqs)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
    from store_pg import PgCluster, pg_available

    reason = pg_available()
    if reason is not None:
        pytest.skip(reason)
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster.create_database("crash")
    finally:
        cluster.destroy()


@pytest.mark.postgres
@pytest.mark.parametrize("point", ["part.admitted", "store.before_commit", "store.after_commit"])
def test_kill_then_restart_on_postgresql(tmp_path, store_station, pg_url: str, point: str) -> None:
    data = tmp_path / "data"
    station = tmp_path / "pg-station.yaml"  # a station id of its own: the module shares one database
    station.write_text(store_station.read_text().replace("station_id: t1", f"station_id: pg-{point[6:]}"))
    crashed = run_station(station, data, 60, crash_at=f"{point}:3", database_url=pg_url)
    assert crashed.returncode == EXIT_STATUS, crashed.stderr
    done = run_station(station, data, 8, database_url=pg_url)
    books = closing_books(done)
    engine = make_engine(pg_url)
    try:
        with session_scope(engine, readonly=True) as session:
            sid = f"pg-{point[6:]}"
            seqs = list(session.scalars(select(InspectionRecord.part_seq).where(InspectionRecord.station_id == sid)))
            ncr_parts = list(
                session.scalars(
                    select(InspectionRecord.part_seq)
                    .join(NcrRecord, NcrRecord.inspection_id == InspectionRecord.inspection_id)
                    .where(InspectionRecord.station_id == sid)
                )
            )
            assert books == count_books(session=session, station_id=sid)
            assert verify_store(session=session).ok
    finally:
        engine.dispose()
    assert len(seqs) == len(set(seqs)) == books.triggers and len(ncr_parts) == len(set(ncr_parts)) > 0
    assert sorted(seqs) == list(range(len(seqs))), "a part number was skipped or lost"
    recorded = jsonl_seqs(data)
    assert len(recorded) == len(set(recorded)) and set(seqs) <= set(recorded)


def test_an_unreadable_mark_stops_the_start_by_name(tmp_path, store_station) -> None:
    data = tmp_path / "data"
    closing_books(run_station(store_station, data, 3))
    mark = mark_path(data, "t1")
    mark.write_bytes(b"not a mark")
    done = run_station(store_station, data, 3)
    assert done.returncode == 2 and str(mark) in done.stderr and "Move it away" in done.stderr, done.stderr
