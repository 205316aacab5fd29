"""Store-based station recovery (issue 16) on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine
from store_factories import DEFAULTS, make_inspection

from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.recovery import records_after, recover_station
from vinspect.store.repository import count_books
from vinspect.store.sink import StoreSink
from vinspect.types import Books, Verdict


def test_recover_station_reads_books_next_seq_and_last_ncr(engine: Engine, evidence: EvidenceStore) -> None:
    sink = StoreSink(engine, evidence, defaults=DEFAULTS)
    for seq in range(7):
        sink.write(make_inspection(seq, verdict=Verdict.FAIL if seq in (2, 5) else Verdict.PASS))
    for seq in range(40, 43):
        sink.write(make_inspection(seq, station="st-2", verdict=Verdict.FAIL))
    sink.close()
    with session_scope(engine, readonly=True) as session:
        one = recover_station("st-1", session=session)
        two = recover_station("st-2", session=session)
        none = recover_station("st-9", session=session)
        assert one.books == count_books(session=session, station_id="st-1")
        tail = records_after("st-1", part_seq=5, session=session)
    assert one.books.triggers == 7 and one.books.failed_defect == 2 and one.next_part_seq == 7
    assert one.last_ncr_number == "NCR-2026-000002"
    assert two.next_part_seq == 43 and two.last_ncr_number == "NCR-2026-000005" and two.books.triggers == 3
    assert none.books == Books() and none.next_part_seq == 0 and none.last_ncr_number is None
    assert [r["part_seq"] for r in tail] == [5, 6] and [r["verdict"] for r in tail] == ["FAIL", "PASS"]
    assert tail[0]["recovered_from"] == "store" and tail[0]["reasons"] == ["score"]
    assert tail[0]["frame"]["part_id"] == "SN-000005" and tail[0]["model"]["name"] == "tile-anomaly"
