"""Backup and restore with verification (goal D10) on SQLite (online backup) and PostgreSQL (pg_dump)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from store_factories import DEFAULTS, make_inspection
from store_pg import PgCluster

from vinspect.errors import StoreError
from vinspect.store.backup import BackupManifest, backup_store, restore_store
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.sink import StoreSink
from vinspect.store.verify import record_counts
from vinspect.types import Verdict


def _fill(engine: Engine, evidence: EvidenceStore, n: int = 30) -> None:
    sink = StoreSink(engine, evidence, defaults=DEFAULTS, batch_size=7)
    for seq in range(n):
        sink.write(make_inspection(seq, verdict=Verdict.FAIL if seq % 3 == 0 else Verdict.PASS, with_map=False))
    sink.close()


def _target_url(engine: Engine, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if engine.dialect.name == "sqlite":
        return f"sqlite:///{tmp_path / 'restored' / 'vinspect.db'}"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database("restore")


def test_backup_restores_to_an_identical_verified_store(
    engine: Engine, evidence: EvidenceStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _fill(engine, evidence)
    dest = tmp_path / "backup.bin"
    manifest = backup_store(engine, dest)
    assert manifest.counts["ncrs"] == 10 and manifest.counts["inspections"] == 30 and manifest.chain_seq > 0
    assert BackupManifest.read(dest) == manifest
    with session_scope(engine, readonly=True) as session:
        after = record_counts(session)
    assert after["audit_records"] == manifest.counts["audit_records"] + 1  # the backup itself is audited
    target = _target_url(engine, tmp_path, request)
    report = restore_store(dest, url=target)
    assert report.ok and report.counts == manifest.counts
    restored = make_engine(target)
    try:
        with session_scope(restored, readonly=True) as session:
            assert record_counts(session)["audit_records"] == manifest.counts["audit_records"] + 1  # restore audited
    finally:
        restored.dispose()


def test_backup_refuses_an_altered_file_and_a_non_empty_target(
    engine: Engine, evidence: EvidenceStore, tmp_path: Path, store_url: str
) -> None:
    _fill(engine, evidence, n=6)
    dest = tmp_path / "backup.bin"
    backup_store(engine, dest)
    with pytest.raises(StoreError, match=r"exists|not empty"):
        restore_store(dest, url=store_url)
    data = bytearray(dest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dest.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="sha256"):
        restore_store(dest, url=f"sqlite:///{tmp_path / 'new.db'}")
