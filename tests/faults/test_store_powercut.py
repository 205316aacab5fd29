"""Simulated power cuts (goal D2): zero acknowledged NCRs lost, and the harness proves it bites.

See :mod:`powercut` for the model. Each test cuts power repeatedly while the real StoreSink
writes NCRs with evidence, then checks the last durable image on a copy. The two controls run
the same cuts with one durability step removed and must lose something, else the harness would
be passing by not looking.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from powercut import build_shim, clone_store, cut_rounds

from vinspect.store import repository as repo
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore, ScrubReport, scrub
from vinspect.store.migrations import upgrade
from vinspect.store.tables import InspectionRecord, NcrRecord
from vinspect.store.verify import verify_store

CUTS = 30
CONTROL_CUTS = 4


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"))


def _initial(tmp_path: Path) -> Path:
    initial = tmp_path / "initial"
    initial.mkdir()
    engine = make_engine(f"sqlite:///{initial / 'vinspect.db'}")
    upgrade(engine)
    engine.dispose()
    return initial


def _inspect(image: Path, scratch: Path) -> tuple[set[str], str, bool, ScrubReport, int]:
    """(stored NCR uuids, integrity_check, audit+records verify, scrub, books discrepancy) of a copy."""
    copy = scratch / f"verify-{image.name}"
    clone_store(image, copy)  # recovery on open rewrites the database: never touch the image itself
    with sqlite3.connect(copy / "vinspect.db") as raw:
        integrity = raw.execute("PRAGMA integrity_check").fetchone()[0]
    engine = make_engine(f"sqlite:///{copy / 'vinspect.db'}")
    try:
        with session_scope(engine, readonly=True) as session:
            stored = set(session.scalars(repo.select(NcrRecord.ncr_uuid)))
            verified = verify_store(session=session).ok
            report = scrub(EvidenceStore(copy / "evidence"), session=session)
            books = repo.count_books(session=session)
            rows = session.scalar(repo.select(repo.func.count()).select_from(InspectionRecord))
    finally:
        engine.dispose()
    assert books.triggers == rows
    return stored, integrity, verified, report, books.discrepancy


def test_store_power_cuts_lose_no_acknowledged_ncr(shim: Path, tmp_path: Path) -> None:
    rounds = cut_rounds(initial=_initial(tmp_path), workdir=tmp_path, shim=shim, cuts=CUTS, mode="full")
    acknowledged = set().union(*(r.acknowledged for r in rounds))
    assert len(acknowledged) >= CUTS  # the cuts landed while NCRs were being written
    stored, integrity, verified, report, discrepancy = _inspect(rounds[-1].image, tmp_path)
    lost = acknowledged - stored
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged NCRs lost to power cuts"
    assert integrity == "ok" and verified and discrepancy == 0
    assert report.ok and report.checked >= len(acknowledged), report


def test_store_power_cut_control_synchronous_normal_loses_ncrs(shim: Path, tmp_path: Path) -> None:
    """Without a sync at each commit, acknowledged NCRs vanish: the harness sees unsynced data."""
    rounds = cut_rounds(initial=_initial(tmp_path), workdir=tmp_path, shim=shim, cuts=CONTROL_CUTS, mode="normal")
    acknowledged = set().union(*(r.acknowledged for r in rounds))
    stored, integrity, _verified, _report, _ = _inspect(rounds[-1].image, tmp_path)
    assert acknowledged and len(acknowledged - stored) > 0
    assert integrity == "ok"  # WAL loses the tail of the log, never consistency


def test_store_power_cut_control_unsynced_evidence_goes_missing(shim: Path, tmp_path: Path) -> None:
    """Without fsync of the evidence files and folders, committed NCRs point at lost images."""
    rounds = cut_rounds(initial=_initial(tmp_path), workdir=tmp_path, shim=shim, cuts=CONTROL_CUTS,
                        mode="evidence_nofsync")
    stored, _integrity, _verified, report, _ = _inspect(rounds[-1].image, tmp_path)
    assert stored and not report.ok
    assert len(report.missing) + len(report.altered) >= len(stored)  # not one image survived
