"""Simulated power cuts (goal D2): zero acknowledged NCRs lost, and the harness proves it bites.

See :mod:`powercut` for the model. Each test cuts power repeatedly while the real StoreSink
writes NCRs with evidence, then checks the last durable image on a copy. The two controls run
the same cuts with one durability step removed and must lose something, else the harness would
be passing by not looking.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from powercut import build_shim, cut_rounds, inspect_image, new_store

CUTS = 30
CONTROL_CUTS = 4


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"))


def test_store_power_cuts_lose_no_acknowledged_ncr(shim: Path, tmp_path: Path) -> None:
    rounds = cut_rounds(initial=new_store(tmp_path / "initial"), workdir=tmp_path, shim=shim, cuts=CUTS, mode="full")
    acknowledged = set().union(*(r.acknowledged for r in rounds))
    assert len(acknowledged) >= CUTS  # the cuts landed while NCRs were being written
    state = inspect_image(rounds[-1].image, tmp_path)
    lost = acknowledged - state.stored
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged NCRs lost to power cuts"
    assert state.report.integrity == "ok" and state.report.ok and state.books.discrepancy == 0
    assert state.scrub.ok and state.scrub.checked >= len(acknowledged), state.scrub


def test_store_power_cut_control_synchronous_normal_loses_ncrs(shim: Path, tmp_path: Path) -> None:
    """Without a sync at each commit, acknowledged NCRs vanish: the harness sees unsynced data."""
    rounds = cut_rounds(
        initial=new_store(tmp_path / "initial"), workdir=tmp_path, shim=shim, cuts=CONTROL_CUTS, mode="normal"
    )
    acknowledged = set().union(*(r.acknowledged for r in rounds))
    state = inspect_image(rounds[-1].image, tmp_path)
    assert acknowledged and len(acknowledged - state.stored) > 0
    assert state.report.integrity == "ok"  # WAL loses the tail of the log, never consistency


def test_store_power_cut_control_unsynced_evidence_goes_missing(shim: Path, tmp_path: Path) -> None:
    """Without fsync of the evidence files and folders, committed NCRs point at lost images."""
    rounds = cut_rounds(
        initial=new_store(tmp_path / "initial"), workdir=tmp_path, shim=shim, cuts=CONTROL_CUTS, mode="evidence_nofsync"
    )
    state = inspect_image(rounds[-1].image, tmp_path)
    assert state.stored and not state.scrub.ok
    assert len(state.scrub.missing) + len(state.scrub.altered) >= len(state.stored)  # not one image survived
