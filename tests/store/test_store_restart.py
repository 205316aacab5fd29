"""``vinspect run``'s restart against a real store (SQLite and PostgreSQL), in process and deterministic:
the numbers a killed run handed out are all accounted for, from the JSONL copy where it holds the
record and as FAIL ``crash`` records otherwise; after a power cut the skip is on the audit trail."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from store_factories import DEFAULTS, make_inspection

from vinspect.cli.restart import recover
from vinspect.pipeline.decide import DecisionPolicy
from vinspect.pipeline.part_numbers import PartNumbers, boot_id, mark_path
from vinspect.pipeline.record import JsonlSink
from vinspect.store import StoreSink, session_scope
from vinspect.store.recovery import next_part_seq, skipped_ranges, unrecorded_seqs
from vinspect.store.repository import add_inspections
from vinspect.store.tables import InspectionRecord, NcrRecord
from vinspect.store.verify import verify_store
from vinspect.types import Verdict

POLICY = DecisionPolicy(fail_at=0.6, review_at=0.5, policy_id="p1")


def _killed_run(data: Path, jsonl: Path, *, handed_out: int, boot: str) -> None:
    """What a kill leaves: numbers 0.. handed out, PASS lines 0 and 1 in the JSONL copy, nothing committed."""
    numbers = PartNumbers(mark_path(data, "st-1"), start=0, block=16, boot=boot)
    for seq in range(handed_out):
        numbers.admit(seq)  # never closed: no clean flag, as after SIGKILL
    with JsonlSink(jsonl) as sink:
        for seq in (0, 1):
            sink.write(make_inspection(seq, verdict=Verdict.PASS, station="st-1"))


def test_restart_after_a_kill_accounts_for_every_number(tmp_path, engine, evidence) -> None:
    data, jsonl = tmp_path / "data", tmp_path / "data" / "inspections.jsonl"
    data.mkdir()
    _killed_run(data, jsonl, handed_out=4, boot=boot_id())
    with StoreSink(engine, evidence, defaults=DEFAULTS) as store, JsonlSink(jsonl) as copy:
        got = recover("st-1", data_dir=data, policy=POLICY, sinks=[store, copy], jsonl=jsonl, engine=engine)
    assert got.start == 4 and got.plan.exact and got.crash_records == 2  # 0 and 1 came from the copy
    assert got.books is not None and got.books.triggers == 4 and got.books.passed == 2
    assert dict(got.books.failed_fault) == {"crash": 2}
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [rec["part_seq"] for rec in lines] == [0, 1, 2, 3]  # the copy's own lines are not written again
    with session_scope(engine, readonly=True) as session:
        rows = {r.part_seq: r for r in session.scalars(select(InspectionRecord))}
        ncr_seqs = set(
            session.scalars(
                select(InspectionRecord.part_seq).join(
                    NcrRecord, NcrRecord.inspection_id == InspectionRecord.inspection_id
                )
            )
        )
        assert verify_store(session=session).ok
    assert sorted(rows) == [0, 1, 2, 3]
    assert [rows[s].verdict for s in (0, 1)] == ["PASS", "PASS"]  # taken from the copy, same inspection id
    assert [rows[s].inspection_id for s in (0, 1)] == [lines[0]["inspection_id"], lines[1]["inspection_id"]]
    assert all(rows[s].verdict == "FAIL" and json.loads(rows[s].reasons) == ["crash"] for s in (2, 3))
    assert ncr_seqs == {2, 3}  # each crash record is a reject with an NCR for someone to look at


def test_restart_after_a_power_cut_skips_to_the_ceiling_on_the_audit_trail(tmp_path, engine, evidence) -> None:
    data, jsonl = tmp_path / "data", tmp_path / "data" / "inspections.jsonl"
    data.mkdir()
    _killed_run(data, jsonl, handed_out=3, boot="a-boot-before-the-power-cut")
    with StoreSink(engine, evidence, defaults=DEFAULTS) as store, JsonlSink(jsonl) as copy:
        got = recover("st-1", data_dir=data, policy=POLICY, sinks=[store, copy], jsonl=jsonl, engine=engine)
    assert not got.plan.exact and got.plan.skipped == (3, 16) and got.start == 16
    with session_scope(engine, readonly=True) as session:
        assert skipped_ranges("st-1", session=session) == [(3, 15)]
        assert sorted(session.scalars(select(InspectionRecord.part_seq))) == [0, 1, 2]
        assert verify_store(session=session).ok


def test_unrecorded_seqs_finds_every_gap_in_one_walk(engine) -> None:
    with session_scope(engine) as session:
        add_inspections(
            [make_inspection(s, verdict=Verdict.PASS, station="st-1") for s in (2, 3, 5, 9)], session=session
        )
        add_inspections([make_inspection(4, verdict=Verdict.PASS, station="other")], session=session)
    with session_scope(engine, readonly=True) as session:

        def gaps(first: int, end: int) -> list[int]:
            return unrecorded_seqs("st-1", first=first, end=end, session=session)

        assert gaps(0, 12) == [0, 1, 4, 6, 7, 8, 10, 11]
        assert gaps(3, 6) == [4] and gaps(2, 4) == [] and gaps(10, 13) == [10, 11, 12] and gaps(5, 5) == []
        assert next_part_seq("st-1", session=session) == 10 and next_part_seq("none", session=session) == 0
