"""StoreSink: NCR per reject, evidence on disk, plain rows batched, visible only after commit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import IntegrityError
from store_factories import DEFAULTS, make_inspection

from vinspect.errors import StoreError
from vinspect.store import repository as repo
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore, scrub
from vinspect.store.ncr import NcrFilter, NcrRef
from vinspect.store.sink import StoreSink
from vinspect.store.tables import InspectionRecord, NcrRecord
from vinspect.store.verify import verify_store
from vinspect.types import Verdict


def _count(engine: Engine, table: type) -> int:
    with session_scope(engine, readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


@pytest.mark.parametrize(("ncr_on_review", "expected"), [(True, 2), (False, 1)])
def test_sink_opens_ncrs_for_fail_and_configurable_review(
    engine: Engine, evidence: EvidenceStore, ncr_on_review: bool, expected: int
) -> None:
    sink = StoreSink(engine, evidence, defaults=DEFAULTS, ncr_on_review=ncr_on_review)
    for seq, verdict in enumerate((Verdict.FAIL, Verdict.REVIEW, Verdict.PASS)):
        sink.write(make_inspection(seq, verdict=verdict))
    sink.close()
    assert _count(engine, NcrRecord) == expected
    assert _count(engine, InspectionRecord) == 3


def test_sink_stores_image_and_heatmap_by_sha256(engine: Engine, evidence: EvidenceStore) -> None:
    refs: list[NcrRef] = []
    insp = make_inspection(3)
    StoreSink(engine, evidence, defaults=DEFAULTS, on_ncr=refs.append).write(insp)
    with session_scope(engine, readonly=True) as session:
        doc = repo.get_ncr(refs[0].ncr_uuid, session=session)
        assert scrub(evidence, session=session).ok
    assert doc is not None and [e["kind"] for e in doc["evidence"]] == ["image", "heatmap"]
    image = doc["evidence"][0]
    path = evidence.path_for(image["sha256"])
    assert path == evidence.root.resolve() / image["sha256"][:2] / f"{image['sha256']}.png"
    decoded = cv2.imdecode(np.frombuffer(evidence.read(image["sha256"]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert insp.frame is not None and np.array_equal(decoded, insp.frame.image)  # lossless
    heat = cv2.imdecode(np.frombuffer(evidence.read(doc["evidence"][1]["sha256"]), np.uint8), cv2.IMREAD_COLOR)
    assert heat.shape == (*insp.frame.image.shape[:2], 3)  # smoothed up to the image (was the 32x32 map)


def test_sink_without_frame_or_map_still_opens_the_ncr(engine: Engine, evidence: EvidenceStore) -> None:
    refs: list[NcrRef] = []
    sink = StoreSink(engine, evidence, defaults=DEFAULTS, on_ncr=refs.append)
    sink.write(make_inspection(1, reasons=("missing_frame",), with_frame=False, with_map=False))
    with session_scope(engine, readonly=True) as session:
        doc = repo.get_ncr(refs[0].ncr_uuid, session=session)
    assert doc is not None and doc["evidence"] == [] and doc["machine_verdict"] == "ERROR_REJECT"
    assert doc["camera_id"] == "unknown" and doc["defect_code"] == "missing_frame"


def test_sink_batches_pass_rows_and_flushes_them_with_the_next_ncr(engine: Engine, evidence: EvidenceStore) -> None:
    sink = StoreSink(engine, evidence, defaults=DEFAULTS, batch_size=10, flush_interval_s=3600)
    for seq in range(5):
        sink.write(make_inspection(seq, verdict=Verdict.PASS))
    assert _count(engine, InspectionRecord) == 0  # still batched
    sink.write(make_inspection(5))
    assert _count(engine, InspectionRecord) == 6  # committed together with the NCR
    for seq in range(6, 16):
        sink.write(make_inspection(seq, verdict=Verdict.PASS))
    assert _count(engine, InspectionRecord) == 16  # a full batch commits by itself
    sink.write(make_inspection(16, verdict=Verdict.PASS))
    sink.close()
    assert _count(engine, InspectionRecord) == 17
    with session_scope(engine, readonly=True) as session:
        books = repo.count_books(session=session)
        assert verify_store(session=session).ok
    assert (books.triggers, books.passed, books.failed_defect, books.discrepancy) == (17, 16, 1, 0)


def test_sink_ncr_is_invisible_until_its_commit_returns(
    engine: Engine, evidence: EvidenceStore, store_url: str
) -> None:
    """Goal D3: at the moment COMMIT is issued, another connection still sees nothing."""
    reader = make_engine(store_url)
    seen_before_commit: list[int] = []

    def on_commit(_conn: object) -> None:
        with session_scope(reader, readonly=True) as session:
            seen_before_commit.append(repo.count_ncrs(NcrFilter(), session=session))

    event.listen(engine, "commit", on_commit)
    acknowledged: list[int] = []

    def ack(ref: NcrRef) -> None:
        with session_scope(reader, readonly=True) as session:
            acknowledged.append(repo.count_ncrs(NcrFilter(), session=session))

    try:
        StoreSink(engine, evidence, defaults=DEFAULTS, on_ncr=ack).write(make_inspection(1))
    finally:
        event.remove(engine, "commit", on_commit)
        reader.dispose()
    assert seen_before_commit == [0] and acknowledged == [1]


def test_sink_failed_commit_raises_and_keeps_pending_rows(tmp_path: Path, evidence: EvidenceStore) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")  # never migrated: every write fails
    sink = StoreSink(engine, evidence, defaults=DEFAULTS, batch_size=100)
    sink.write(make_inspection(1, verdict=Verdict.PASS))
    with pytest.raises(StoreError, match="no such table"):
        sink.write(make_inspection(2))
    with pytest.raises(StoreError, match="no such table"):
        sink.flush()
    engine.dispose()


def test_sink_write_batch_is_one_commit_and_acks_only_after_it(
    engine: Engine, evidence: EvidenceStore, store_url: str
) -> None:
    """Group commit: rejects and plain rows of one run share a transaction; acks follow the commit."""
    reader = make_engine(store_url)
    commits: list[int] = []
    acknowledged: list[tuple[str, int]] = []

    def on_commit(_conn: object) -> None:
        commits.append(_count(reader, NcrRecord))  # what others see while COMMIT is being issued

    def ack(ref: NcrRef) -> None:
        acknowledged.append((ref.ncr_number, _count(reader, NcrRecord)))

    verdicts = [Verdict.FAIL, Verdict.PASS, Verdict.REVIEW, Verdict.FAIL, Verdict.PASS, Verdict.FAIL]
    batch = [make_inspection(seq, verdict=v) for seq, v in enumerate(verdicts)]
    sink = StoreSink(engine, evidence, defaults=DEFAULTS, on_ncr=ack, batch_size=100)
    event.listen(engine, "commit", on_commit)
    try:
        assert sink.write_batch(batch) == [None] * 6
    finally:
        event.remove(engine, "commit", on_commit)
    assert commits == [0]  # one transaction for the whole run, invisible until it commits
    assert [n for n, _ in acknowledged] == [f"NCR-2026-{i:06d}" for i in (1, 2, 3, 4)]
    assert all(seen == 4 for _, seen in acknowledged)  # 4 = the 4 NCRs of the run, all committed
    assert _count(engine, InspectionRecord) == 6  # plain rows of the run are in that commit too
    with session_scope(reader, readonly=True) as session:
        assert verify_store(session=session).ok and scrub(evidence, session=session).checked == 8
        assert [d["inference"]["inference_id"] for d in repo.list_ncrs(NcrFilter(), session=session)] == [
            batch[i].inspection_id for i in (0, 2, 3, 5)
        ]
    reader.dispose()


def test_sink_write_batch_failure_costs_only_the_bad_inspection(engine: Engine, evidence: EvidenceStore) -> None:
    """A run whose transaction fails is retried one by one: only the bad record fails."""
    refs: list[NcrRef] = []
    sink = StoreSink(engine, evidence, defaults=DEFAULTS, on_ncr=refs.append)
    sink.write(make_inspection(2))
    reused = replace(make_inspection(2), inspection_id="st-1-other")  # part seq 2 again, another inspection
    results = sink.write_batch(
        [make_inspection(1), reused, make_inspection(3, verdict=Verdict.PASS), make_inspection(4)]
    )
    assert [r is None for r in results] == [True, False, True, True]
    assert isinstance(results[1], StoreError) and "part number was reused" in str(results[1])
    sink.close()
    assert len(refs) == 3 and _count(engine, NcrRecord) == 3 and _count(engine, InspectionRecord) == 4
    with session_scope(engine, readonly=True) as session:
        assert verify_store(session=session).ok


def test_sink_stores_a_record_delivered_twice_once(engine: Engine, evidence: EvidenceStore) -> None:
    """Idempotent records: a retried delivery (same inspection id) is acknowledged with the NCR it already has."""
    refs: list[NcrRef] = []
    sink = StoreSink(engine, evidence, defaults=DEFAULTS, on_ncr=refs.append)
    first = [make_inspection(1), make_inspection(2, verdict=Verdict.PASS), make_inspection(3)]
    assert sink.write_batch(first) == [None, None, None]
    again = [*first, make_inspection(4)]
    assert sink.write_batch(again) == [None] * 4  # after a crash the record thread delivers them again
    sink.write(make_inspection(1))  # and one alone
    sink.close()
    numbers = [r.ncr_number for r in refs]
    assert numbers == [
        "NCR-2026-000001",
        "NCR-2026-000002",
        "NCR-2026-000001",
        "NCR-2026-000002",
        "NCR-2026-000003",
        "NCR-2026-000001",
    ]
    assert _count(engine, NcrRecord) == 3 and _count(engine, InspectionRecord) == 4
    with session_scope(engine, readonly=True) as session:
        assert verify_store(session=session).ok


def test_store_refuses_a_second_row_for_one_part_number(engine: Engine) -> None:
    """The unique key (station, part seq) holds even for a writer that bypasses the sink's check."""
    from sqlalchemy import text

    from vinspect.store.repository import add_inspections

    with session_scope(engine) as session:
        add_inspections([make_inspection(5, verdict=Verdict.PASS)], session=session)
    with pytest.raises(IntegrityError, match=r"(?i)unique|duplicate"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO inspections (inspection_id, station_id, part_seq, verdict, reasons, policy_id, "
                "fail_at, review_at, recorded_at) VALUES ('x', 'st-1', 5, 'PASS', '[]', 'p1', 0.7, 0.5, "
                "CURRENT_TIMESTAMP)"
            )
        )


def test_sink_write_batch_reports_a_failed_acknowledgement_per_ncr(engine: Engine, evidence: EvidenceStore) -> None:
    """The commit stands; only the NCR whose acknowledgement hook failed is reported."""

    def ack(ref: NcrRef) -> None:
        if ref.ncr_number.endswith("000002"):
            raise OSError("ack pipe closed")

    sink = StoreSink(engine, evidence, defaults=DEFAULTS, on_ncr=ack)
    results = sink.write_batch([make_inspection(1), make_inspection(2), make_inspection(3)])
    assert [type(r).__name__ for r in results] == ["NoneType", "OSError", "NoneType"]
    assert _count(engine, NcrRecord) == 3  # committed once, never retried
