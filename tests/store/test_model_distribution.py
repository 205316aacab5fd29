"""Model distribution (issue 18) in one process on a real SQLite store: archives, approval, station
resolution, and the station-side watcher's pull / verify / report logic with real bundles on disk.

The end-to-end test with real ``vinspect run`` stations on PostgreSQL is
tests/plant/test_plant_distribution.py.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, select, update

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from testkit.bundles import state_operating_point, write_golden_samples, write_tiny_bundle  # noqa: E402
from vinspect.errors import ModelError, StateError  # noqa: E402
from vinspect.models.archive import archive_sha256, pack_bundle, unpack_bundle  # noqa: E402
from vinspect.models.manifest import read_manifest  # noqa: E402
from vinspect.models.promotion_criteria import Criteria  # noqa: E402
from vinspect.models.registry import ModelRegistry  # noqa: E402
from vinspect.store import make_engine, session_scope, upgrade  # noqa: E402
from vinspect.store.distribution import (  # noqa: E402
    approval_of,
    current_assignment,
    current_assignments,
    distribute,
    resolve_stations,
)
from vinspect.store.model_pull import AssignmentWatch  # noqa: E402
from vinspect.store.promotion import fix_criteria  # noqa: E402
from vinspect.store.stations import StationIdentity, report_station  # noqa: E402
from vinspect.store.tables import AuditRecord, ModelBundleRecord  # noqa: E402
from vinspect.types import ModelRef  # noqa: E402

GOLDEN = [
    ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
    ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255),
]
GOOD = list(np.linspace(0.15, 0.30, 60))
BAD = list(np.linspace(0.45, 0.9, 30))


def bundle(root: Path, version: str, *, size: int = 32) -> Path:
    b = write_tiny_bundle(root / f"tiny-{version}", version=version, doc=f"v{version}")
    state_operating_point(b, GOOD, BAD)
    write_golden_samples(b, GOLDEN)
    if size != 32:
        m = json.loads((b / "manifest.json").read_text())
        m["input"]["model_size_px"] = [size, size]
        (b / "manifest.json").write_text(json.dumps(m))
    return b


@pytest.fixture
def store(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    for sid, line in (("st01", "L1"), ("st02", "L1"), ("st03", "L2")):
        report_station(
            engine,
            StationIdentity(station_id=sid, line_id=line),
            {"state": "OPERATIONAL"},
            started_at=datetime.now(UTC),
            period_s=2.0,
            parts_per_s=None,
            reject_rate=None,
        )
    return engine


def _assign(engine: Engine, folder: Path, stations: list[str], *, archive: bytes | None = None) -> None:
    m = read_manifest(folder)
    data = pack_bundle(folder) if archive is None else archive
    with session_scope(engine) as s:
        distribute(
            session=s,
            name=m.name,
            version=m.version,
            sha256=m.sha256,
            archive=data,
            archive_sha256=archive_sha256(data),
            station_ids=stations,
            approval="test",
            actor="cli:test",
        )


def test_archive_is_deterministic_and_refuses_escaping_members(tmp_path: Path) -> None:
    b = bundle(tmp_path, "1")
    data = pack_bundle(b)
    assert pack_bundle(b) == data  # same bundle, same bytes, same sha256
    out = unpack_bundle(data, tmp_path / "out")
    assert read_manifest(out).sha256 == read_manifest(b).sha256
    assert (out / "golden" / "good.png").read_bytes() == (b / "golden" / "good.png").read_bytes()
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ModelError, match="cannot be unpacked"):
        unpack_bundle(evil.getvalue(), tmp_path / "evil")
    assert not (tmp_path / "escape.txt").exists()


def test_stations_are_resolved_by_id_or_line_and_unknown_ones_named(store: Engine) -> None:
    with session_scope(store, readonly=True) as s:
        assert resolve_stations(session=s, line_id="L1") == ["st01", "st02"]
        assert resolve_stations(session=s, station_ids=["st03", "st01"]) == ["st01", "st03"]
        with pytest.raises(StateError, match=r"unknown station.*st09"):
            resolve_stations(session=s, station_ids=["st01", "st09"])
        with pytest.raises(StateError, match="line 'L7'"):
            resolve_stations(session=s, line_id="L7")


def test_distribute_audits_and_never_replaces_a_stored_version(store: Engine, tmp_path: Path) -> None:
    v2 = bundle(tmp_path, "2")
    _assign(store, v2, ["st01", "st02"])
    with session_scope(store, readonly=True) as s:
        assigned = current_assignments(session=s)
        audit = s.scalars(select(AuditRecord).where(AuditRecord.action == "model.distribute")).one()
    assert sorted(assigned) == ["st01", "st02"] and assigned["st01"].outcome is None
    content = json.loads(audit.new_value or "")
    assert content["stations"] == ["st01", "st02"] and content["sha256"] == read_manifest(v2).sha256
    other = bundle(tmp_path / "other", "2")  # same version and model, but one more file: other archive bytes
    (other / "extra.txt").write_text("changed")
    with pytest.raises(StateError, match="already holds a different bundle"):
        _assign(store, other, ["st03"])


def test_a_version_under_promotion_control_needs_its_promotion(store: Engine, tmp_path: Path) -> None:
    m = read_manifest(bundle(tmp_path, "2"))
    with session_scope(store) as s:
        assert approval_of(session=s, name="tiny", version="2", sha256=m.sha256) is None
        fix_criteria(
            session=s,
            name="tiny",
            version="2",
            sha256=m.sha256,
            trained_by="trainer",
            criteria=Criteria(),
            actor="cli:test",
            reason="gate it",
        )
    with session_scope(store, readonly=True) as s, pytest.raises(StateError, match="was not promoted"):
        approval_of(session=s, name="tiny", version="2", sha256=m.sha256)


def _station(tmp_path: Path, store: Engine, sid: str = "st01") -> tuple[AssignmentWatch, ModelRegistry]:
    registry = ModelRegistry(tmp_path / sid / "models")
    entry = registry.install(bundle(tmp_path / "src", "1"), activate=True)
    running = ModelRef(name="tiny", version="1", sha256=entry.sha256)
    return AssignmentWatch(
        store, station_id=sid, registry=registry, name="tiny", running=running, check_s=0.0
    ), registry


def test_watch_pulls_verifies_and_reports_a_switch(store: Engine, tmp_path: Path) -> None:
    watch, registry = _station(tmp_path, store)
    assert watch.poll() is None  # nothing assigned
    v2 = bundle(tmp_path, "2")
    _assign(store, v2, ["st01"])
    path = watch.poll()
    assert path == registry.root / "tiny" / "2" and read_manifest(path).sha256 == read_manifest(v2).sha256
    assert watch.poll() is None  # handed over once; the gate's answer is awaited
    watch.switched(ModelRef(name="tiny", version="2", sha256=read_manifest(v2).sha256))
    watch.poll()
    a = current_assignment(store, "st01")
    assert a is not None and a.outcome == "SWITCHED" and a.outcome_at is not None
    assert registry.active_version("tiny") == "2"  # a restart runs what it switched to
    assert watch.poll() is None  # its own ACTIVE change is not a new swap


@pytest.mark.parametrize("case", ["input", "tampered", "gate", "other_model"])
def test_watch_refuses_and_says_why(store: Engine, tmp_path: Path, case: str) -> None:
    watch, registry = _station(tmp_path, store)
    if case == "input":
        _assign(store, bundle(tmp_path, "3", size=64), ["st01"])
        expected = "wrong input size: the bundle takes 64x64 px, 1 channel(s), this station's model takes 32x32"
    elif case == "tampered":
        v5 = bundle(tmp_path, "5")
        data = pack_bundle(v5)
        _assign(store, v5, ["st01"], archive=data)
        with session_scope(store) as s:  # the stored bytes are altered after the assignment
            s.execute(update(ModelBundleRecord).values(archive=data.replace(b"PASS", b"FAIL")))
        expected = "sha256 mismatch: the bundle archive pulled from the store"
    elif case == "other_model":
        other = write_tiny_bundle(tmp_path / "other", name="other", version="1")
        _assign(store, other, ["st01"])
        expected = "this station runs model 'tiny'; the assignment is for model 'other'"
    else:
        _assign(store, bundle(tmp_path, "4"), ["st01"])
        path = watch.poll()
        assert path is not None
        watch.refused(path, "golden self-test failed: golden sample golden/good.png: expected PASS, model says FAIL")
        expected = "golden self-test failed"
    assert watch.poll() is None
    a = current_assignment(store, "st01")
    assert a is not None and a.outcome == "REFUSED" and expected in (a.outcome_reason or "")
    assert registry.active_version("tiny") == "1"  # a refusing station stays on its model
    if case != "gate":
        assert not (registry.root / "tiny" / a.version).exists() or case == "other_model"
    with session_scope(store, readonly=True) as s:
        row = s.scalars(select(AuditRecord).where(AuditRecord.action == "model.refused")).one()
    assert row.actor == "station:st01" and expected in (row.reason or "")


def test_a_pinned_station_refuses_every_assignment(store: Engine, tmp_path: Path) -> None:
    watch = AssignmentWatch(
        store,
        station_id="st02",
        registry=None,
        name=None,
        running=None,
        check_s=0.0,
        pinned="the station file pins the bundle folder /x",
    )
    _assign(store, bundle(tmp_path, "2"), ["st02"])
    assert watch.poll() is None
    watch.poll()
    a = current_assignment(store, "st02")
    assert a is not None and a.outcome == "REFUSED" and "pins the bundle folder" in (a.outcome_reason or "")
