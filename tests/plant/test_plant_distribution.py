"""Issue 18: model distribution to chosen stations, with three real ``vinspect run`` stations on PostgreSQL.

Each station runs ``model: {name: tiny}`` (version 1, from its own registry) and reports into one
fresh PostgreSQL. ``vinspect models distribute`` (from a fourth data directory, the quality
engineer's) assigns version 2 to st01 and st02: both pull it from the store, verify it, pass its
golden self-test and switch (their inspection rows then carry version 2's sha256), and st03,
not assigned, stays on version 1. Then st01 is given a bundle with another input size, st02 one
whose golden self-test fails, and st03 one whose stored bytes were altered: each refuses, says
why in the store, and keeps judging with the model it had.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from plant_run import ROOT, Plant
from sqlalchemy import Engine, select, update

from testkit.bundles import state_operating_point, write_golden_samples, write_tiny_bundle
from vinspect.errors import StoreError
from vinspect.models.archive import archive_sha256, pack_bundle
from vinspect.models.manifest import read_manifest
from vinspect.models.registry import ModelRegistry
from vinspect.store.audit_key import KEY_FILE, attach, load_keyring
from vinspect.store.db import make_engine, session_scope
from vinspect.store.distribution import Assignment, current_assignments, distribute
from vinspect.store.stations import list_stations
from vinspect.store.tables import AuditRecord, InspectionRecord, ModelBundleRecord
from vinspect.store.verify import verify_store

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
GOLDEN = [
    ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255),
    ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255),
]
WRONG_GOLDEN = [("good", np.full((20, 20), 50, np.uint8), "FAIL", 50 / 255)]
GOOD = list(np.linspace(0.15, 0.30, 60))
BAD = list(np.linspace(0.45, 0.9, 30))


def _bundle(root: Path, version: str, *, size: int = 32, golden: list = GOLDEN) -> Path:  # type: ignore[type-arg]
    b = write_tiny_bundle(root / f"tiny-{version}", version=version, doc=f"v{version}")
    state_operating_point(b, GOOD, BAD)  # stated rates without warnings: a plain activation needs no signature
    write_golden_samples(b, golden)
    if size != 32:
        m = json.loads((b / "manifest.json").read_text(encoding="utf-8"))
        m["input"]["model_size_px"] = [size, size]
        (b / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    return b


def _wait_for(what: str, check: object, *, timeout_s: float = 90.0) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()  # type: ignore[operator]
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


def _cli(args: list[str], *, url: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VINSPECT_")} | {"VINSPECT_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "vinspect", "models", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )


def _outcomes(engine: Engine) -> dict[str, Assignment]:
    with session_scope(engine, readonly=True) as s:
        return current_assignments(session=s)


def _shas_by_part(engine: Engine, station: str) -> list[str | None]:
    with session_scope(engine, readonly=True) as s:
        return list(
            s.scalars(
                select(InspectionRecord.model_sha256)
                .where(InspectionRecord.station_id == station)
                .order_by(InspectionRecord.part_seq)
            )
        )


def test_distribution_switches_assigned_stations_and_refusals_say_why(plant_db: str, tmp_path: Path) -> None:
    bundles = tmp_path / "bundles"
    v1, v2 = _bundle(bundles, "1"), _bundle(bundles, "2")
    v3, v4, v5 = _bundle(bundles, "3", size=64), _bundle(bundles, "4", golden=WRONG_GOLDEN), _bundle(bundles, "5")
    sha = {v: read_manifest(b).sha256 for v, b in (("1", v1), ("2", v2), ("3", v3), ("4", v4), ("5", v5))}
    assert len(set(sha.values())) == 5
    plant = Plant(tmp_path, plant_db, 3, fps=10, lines=1, model="{name: tiny}")
    for st in plant.stations:
        ModelRegistry(st.data / "models").install(v1, activate=True)
    qe = tmp_path / "qe"  # the quality engineer's data directory: the candidates, the plant's audit key
    qe.mkdir(mode=0o750)
    shutil.copy2(plant.key_dir / KEY_FILE, qe / KEY_FILE)
    for b in (v2, v3, v4):
        ModelRegistry(qe / "models").install(b)
    engine = make_engine(plant_db)
    plant.start()
    try:
        _wait_for(
            "three stations running tiny 1",
            lambda: len([v for v in _stations(engine) if v.model_version == "1" and v.triggers > 0]) == 3,
        )
        unknown = _cli(
            ["distribute", "--name", "tiny", "--version", "2", "--stations", "st01,st09"], url=plant_db, data=qe
        )
        assert unknown.returncode == 2 and "unknown station(s) st09" in unknown.stderr
        done = _cli(
            ["distribute", "--name", "tiny", "--version", "2", "--stations", "st01,st02"], url=plant_db, data=qe
        )
        assert done.returncode == 0, done.stderr
        assert "assigned tiny 2" in done.stdout and "st01, st02" in done.stdout
        _wait_for(
            "st01 and st02 to switch",
            lambda: all(
                (a := _outcomes(engine).get(s)) is not None and a.outcome == "SWITCHED" for s in ("st01", "st02")
            ),
        )
        _wait_for(
            "st01 and st02 to report version 2",
            lambda: (
                {v.station_id: v.model_sha256 for v in _stations(engine)}
                == {"st01": sha["2"], "st02": sha["2"], "st03": sha["1"]}
            ),
            timeout_s=30,
        )
        # refusals: another input size (st01), a failing golden self-test (st02), altered bytes (st03)
        for version, station in (("3", "st01"), ("4", "st02")):
            r = _cli(
                ["distribute", "--name", "tiny", "--version", version, "--stations", station], url=plant_db, data=qe
            )
            assert r.returncode == 0, r.stderr
        _tampered_assignment(engine, plant.key_dir, v5, "st03")
        _wait_for(
            "three refusals",
            lambda: all(
                (a := _outcomes(engine).get(s)) is not None and a.outcome == "REFUSED" for s in ("st01", "st02", "st03")
            ),
        )
        time.sleep(2.0)  # the stations keep judging after refusing
        listing = _cli(["distribution"], url=plant_db, data=qe)
    finally:
        plant.stop()
        plant.wait(timeout_s=60)
    outcomes = _outcomes(engine)
    assert "wrong input size: the bundle takes 64x64 px" in (outcomes["st01"].outcome_reason or "")
    assert "golden self-test failed" in (outcomes["st02"].outcome_reason or "")
    assert "sha256 mismatch" in (outcomes["st03"].outcome_reason or "")
    assert listing.returncode == 0 and "REFUSED: wrong input size" in listing.stdout
    for st in plant.stations:
        assert st.proc is not None and st.proc.returncode == 0, st.err[-2000:]
        assert st.closing["books_reconciled"], st.station_id
    for station in ("st01", "st02"):  # one switch, from 1 to 2, never to a refused version
        shas = _shas_by_part(engine, station)
        first_v2 = shas.index(sha["2"])
        assert 0 < first_v2 < len(shas) - 1
        assert set(shas[:first_v2]) == {sha["1"]} and set(shas[first_v2:]) == {sha["2"]}
        assert ModelRegistry(tmp_path / station / "models").active_version("tiny") == "2"
    assert set(_shas_by_part(engine, "st03")) == {sha["1"]}
    assert ModelRegistry(tmp_path / "st03" / "models").active_version("tiny") == "1"
    with session_scope(engine, readonly=True) as s:
        actions = [r.action for r in s.scalars(select(AuditRecord).where(AuditRecord.entity == "model"))]
    assert actions.count("model.distribute") == 4 and actions.count("model.switched") == 2
    assert actions.count("model.refused") == 3
    keyring = load_keyring(plant.key_dir / KEY_FILE)
    assert keyring is not None
    attach(engine, keyring, anchor_path=None)
    try:
        with session_scope(engine, readonly=True) as s:
            report = verify_store(session=s, keyring=keyring)
    finally:
        engine.dispose()
    assert report.ok, report.problems


def _stations(engine: Engine) -> list:  # type: ignore[type-arg]
    try:
        with session_scope(engine, readonly=True) as s:
            return list_stations(session=s)
    except StoreError:  # not migrated yet: the stations are still starting
        return []


def _tampered_assignment(engine: Engine, key_dir: Path, folder: Path, station: str) -> None:
    """Assign a bundle whose stored bytes are altered in the same transaction (so no station can
    ever read the unaltered ones): what a station sees when the table was edited after storing."""
    keyring = load_keyring(key_dir / KEY_FILE)
    assert keyring is not None
    writer = make_engine(str(engine.url.render_as_string(hide_password=False)))
    attach(writer, keyring, anchor_path=None)
    m, data = read_manifest(folder), pack_bundle(folder)
    try:
        with session_scope(writer) as s:
            distribute(
                session=s,
                name=m.name,
                version=m.version,
                sha256=m.sha256,
                archive=data,
                archive_sha256=archive_sha256(data),
                station_ids=[station],
                approval="test",
                actor="test",
            )
            s.execute(
                update(ModelBundleRecord)
                .where(ModelBundleRecord.version == m.version)
                .values(archive=data.replace(b"PASS", b"FAIL"))
            )
    finally:
        writer.dispose()
