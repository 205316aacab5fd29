"""Goal D5 on PostgreSQL: the app role can read and append quality records, and change nothing."""

from __future__ import annotations

import argparse
import uuid

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from store_factories import DEFAULTS, make_inspection
from store_pg import PgCluster
from store_qms_stub import QmsStub

from vinspect.cli.store import register
from vinspect.errors import StoreError
from vinspect.store import repository as repo
from vinspect.store.analytics_rollup import roll_up
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.ncr import NcrFilter
from vinspect.store.outbox import OutboxRelay, RelayConfig, outbox_counts
from vinspect.store.roles import APPEND_ONLY_TABLES, grant_app_role
from vinspect.store.shadow_records import StoreShadowRecorder, merged_stats
from vinspect.store.sink import StoreSink
from vinspect.store.verify import verify_store

pytestmark = pytest.mark.postgres


@pytest.fixture
def owner_url(pg_cluster: PgCluster) -> str:
    url = pg_cluster.create_database("roles")
    try:
        yield url
    finally:
        pg_cluster.drop_database(url)


def _app_role(pg_cluster: PgCluster) -> str:
    role = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(
        f"host=127.0.0.1 port={pg_cluster.port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    return role


def _grant_via_cli(owner_url: str, role: str, capsys: pytest.CaptureFixture[str], tmp_path) -> str:
    parser = argparse.ArgumentParser(prog="vinspect")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["db", "grant", "--role", role, "--database-url", owner_url, "--data-dir", str(tmp_path / "data")]
    )
    assert args.handler(args) == 0  # the owner migrates, then grants
    return capsys.readouterr().out


def test_app_role_appends_and_delivers_but_cannot_change_or_unprotect_records(
    pg_cluster: PgCluster, owner_url: str, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    role = _app_role(pg_cluster)
    printed = _grant_via_cli(owner_url, role, capsys, tmp_path)
    assert f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY_TABLES)} TO {role};" in printed
    app_url = make_url(owner_url).set(username=role).render_as_string(hide_password=False)
    engine = make_engine(app_url)
    try:
        sink = StoreSink(engine, EvidenceStore(tmp_path / "evidence"), defaults=DEFAULTS)
        assert sink.write_batch([make_inspection(1), make_inspection(2)]) == [None, None]  # the line's work
        with QmsStub() as stub:
            summary = OutboxRelay(engine, RelayConfig(url=stub.url)).drain(max_seconds=30)
        assert summary.delivered == 2  # delivery state is the one thing it updates
        assert roll_up(engine).rows == 2  # and the analytics roll-up's derived counts (the app's evaluator)
        with session_scope(engine, readonly=True) as session:
            assert repo.count_ncrs(NcrFilter(), session=session) == 2
            assert outbox_counts(session=session) == {"DELIVERED": 2}
        refused = {
            "UPDATE ncrs SET defect_code = 'none'": "permission denied for table ncrs",
            "DELETE FROM audit_records": "permission denied for table audit_records",
            "TRUNCATE inspections": "permission denied for table inspections",
            "DROP TRIGGER ncrs_append_only ON ncrs": "must be owner of (table|relation) ncrs",
            "ALTER TABLE ncr_events DISABLE TRIGGER ALL": "must be owner of (table|relation) ncr_events",
        }
        for statement, message in refused.items():
            with engine.connect() as conn, pytest.raises(ProgrammingError, match=message):
                conn.execute(text(statement))
        with session_scope(engine, readonly=True) as session:
            assert verify_store(session=session).ok
    finally:
        engine.dispose()


def test_grant_refuses_sqlite_and_odd_role_names(tmp_path, owner_url: str) -> None:
    sqlite = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    with pytest.raises(StoreError, match="SQLite has no roles"):
        grant_app_role(sqlite, "app")
    sqlite.dispose()
    engine = make_engine(owner_url)
    try:
        with pytest.raises(StoreError, match="plain lower-case identifier"):
            grant_app_role(engine, "app; DROP TABLE ncrs")
        with pytest.raises(StoreError, match="does not exist"):
            grant_app_role(engine, "nobody_here")
    finally:
        engine.dispose()


def test_app_role_records_a_shadow_but_cannot_change_its_disagreements(
    pg_cluster: PgCluster, owner_url: str, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    role = _app_role(pg_cluster)
    _grant_via_cli(owner_url, role, capsys, tmp_path)
    app_url = make_url(owner_url).set(username=role).render_as_string(hide_password=False)
    engine = make_engine(app_url)
    recorder = StoreShadowRecorder(engine, EvidenceStore(tmp_path / "evidence"), station_id="st-1")
    try:
        doc = {"candidate": {"name": "m", "version": "2", "sha256": "ab" * 32}, "parts": 1, "agree": 0}
        recorder.stats(doc)
        recorder.stats({**doc, "parts": 2})  # the station's latest statistics: an update it may make
        row = {
            "inspection_id": "st-1-0001",
            "captured_at": "2026-12-06T01:00:00+00:00",
            "active": {"verdict": "PASS", "score": 0.2, "reasons": []},
            "shadow": {"verdict": "FAIL", "score": 0.9},
        }
        recorder.disagreement("m@2", row, None)
        with session_scope(engine, readonly=True) as session:
            assert merged_stats(session=session, candidate="m@2")["parts"] == 2  # type: ignore[index]
        with engine.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text("UPDATE shadow_disagreements SET shadow_verdict = 'PASS'"))
    finally:
        recorder.close()
        engine.dispose()
