"""A store-backed station's shadow in the store (issue 20, migration 0011): the real shadow sink writes its
statistics (upserted per station) and disagreements (append-only, frames in the evidence store), and
the readers merge the stations, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text

from vinspect.errors import StoreError
from vinspect.models.runtime import load_bundle
from vinspect.pipeline.gating import policy_for
from vinspect.pipeline.shadow import ShadowSink
from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.shadow_records import (
    StoreShadowRecorder,
    candidates,
    count_disagreements,
    find_disagreement,
    merged_stats,
    recent_disagreements,
    shadow_stats_with,
    station_stats,
)
from vinspect.types import Decision, Frame, Inspection, StageTimings, Verdict


def _part(station: str, seq: int, level: int, active: Verdict) -> Inspection:
    frame = Frame(
        image=np.full((32, 32), level, np.uint8),
        source_id="cam",
        frame_id=seq,
        captured_at=datetime.now(UTC),
        pixel_format="Mono8",
        origin="synthetic",
        part_id=f"P{seq}",
    )
    decision = Decision(verdict=active, reasons=(), policy_id="a", fail_at=0.6, review_at=0.5)
    return Inspection(
        inspection_id=f"{station}-{seq:04d}",
        station_id=station,
        part_seq=seq,
        frame=frame,
        prediction=None,
        decision=decision,
        timings=StageTimings(),
        model=None,
    )


def _run(engine: Engine, evidence_root: Path, bundle: Any, station: str, parts: list[tuple[int, int]]) -> None:
    recorder = StoreShadowRecorder(engine, EvidenceStore(evidence_root), station_id=station)
    with ShadowSink(
        bundle,
        policy=policy_for(bundle),
        out=evidence_root.parent / "unused",
        deadline_ms=None,
        queue_size=64,
        active_model="tiny",
        recorder=recorder,
    ) as sink:
        for seq, level in parts:
            sink.write(_part(station, seq, level, Verdict.PASS))


def test_shadow_sink_writes_statistics_and_disagreements_to_the_store(
    engine: Engine, tmp_path: Path, tiny_bundle_factory: Any
) -> None:
    bundle = load_bundle(tiny_bundle_factory(fail_at=0.4, review_at=0.3, version="2"))
    evidence = tmp_path / "evidence"
    _run(engine, evidence, bundle, "st-a", [(1, 25), (2, 115), (3, 120)])  # 2 and 3: the candidate FAILs
    _run(engine, evidence, bundle, "st-b", [(1, 20), (2, 130)])
    _run(engine, evidence, bundle, "st-a", [(4, 20)])  # the station restarted: its row is replaced
    assert not (tmp_path / "unused").exists()  # nothing under the data directory for a store-backed station
    with session_scope(engine, readonly=True) as session:
        assert candidates(session=session) == ["tiny@2"]
        per_station = {s["station_id"]: s for s in station_stats(session=session, candidate="tiny@2")}
        assert per_station["st-a"]["parts"] == 1 and per_station["st-b"]["parts"] == 2
        merged = merged_stats(session=session, candidate="tiny@2")
        assert merged is not None and merged["parts"] == 3 and merged["agree"] == 2
        assert merged["stations"] == ["st-a", "st-b"] and merged["agreement"] == pytest.approx(2 / 3)
        assert count_disagreements(session=session, candidate="tiny@2") == 3
        rows = recent_disagreements(session=session, candidate="tiny@2", limit=2)
        assert [r["inspection_id"] for r in rows] == ["st-b-0002", "st-a-0003"]  # newest first
        row = find_disagreement(session=session, candidate="tiny@2", inspection_id="st-a-0002")
    assert row is not None and row["station_id"] == "st-a" and row["active"]["model"] == "tiny"
    assert row["active"]["verdict"] == "PASS" and row["shadow"]["verdict"] == "FAIL"
    store = EvidenceStore(evidence)
    try:
        png = store.read(row["image_sha256"])
    finally:
        store.close()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(StoreError, match="append-only"), session_scope(engine) as session:
        session.execute(text("UPDATE shadow_disagreements SET shadow_verdict = 'PASS'"))
    local = {"parts": 4, "agree": 4, "disagree": {}, "active_model": "tiny"}  # a store-less station's stats.json
    with session_scope(engine, readonly=True) as session:
        both = shadow_stats_with(session=session, candidate="tiny@2", local=local)
        assert both is not None and both["parts"] == 7 and both["agree"] == 6
        assert shadow_stats_with(session=session, candidate="other@1", local=local) == local
        assert shadow_stats_with(session=session, candidate="other@1", local=None) is None


def test_a_failing_store_is_counted_never_raised(tmp_path: Path, tiny_bundle_factory: Any) -> None:
    bundle = load_bundle(tiny_bundle_factory(fail_at=0.4, review_at=0.3, version="2"))

    class Broken:
        def stats(self, doc: dict[str, Any]) -> None:
            raise StoreError("database is gone")

        def disagreement(self, candidate: str, row: dict[str, Any], png: bytes | None) -> None:
            raise StoreError("database is gone")

        def close(self) -> None:
            pass

    with ShadowSink(
        bundle, policy=policy_for(bundle), out=tmp_path / "x", deadline_ms=None, queue_size=8, recorder=Broken()
    ) as sink:
        sink.write(_part("st", 1, 120, Verdict.PASS))
    stats = sink.stats()
    assert stats["parts"] == 1 and stats["record_errors"] >= 2  # the disagreement and the statistics
