"""Engines refuse non-durable settings; the shipped migrations build exactly the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from store_pg import PgCluster

from vinspect.errors import StoreError
from vinspect.store.db import make_engine, session_scope
from vinspect.store.migrations import check_current, upgrade
from vinspect.store.tables import APPEND_ONLY_TABLES, Base


def test_db_sqlite_connections_are_wal_full_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        for _ in range(3):  # every pooled connection, not only the first
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://x@localhost/db", "not a url"])
def test_db_refuses_non_durable_or_unknown_urls(url: str) -> None:
    with pytest.raises(StoreError):
        make_engine(url)


@pytest.mark.postgres
def test_db_postgres_refuses_synchronous_commit_off(pg_cluster: PgCluster) -> None:
    """fsync and full_page_writes are server-wide; they go through the same check."""
    url = pg_cluster.create_database()
    name = url.rsplit("/", 1)[1]
    admin = make_engine(pg_cluster.url("postgres")).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        engine = make_engine(url)
        with pytest.raises(StoreError, match="synchronous_commit"), engine.connect():
            pass
        engine.dispose()
    finally:
        admin.engine.dispose()
        pg_cluster.drop_database(url)


def test_db_migrations_match_models_and_are_idempotent(engine: Engine) -> None:
    upgrade(engine)  # second run is a no-op
    check_current(engine)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diffs == []


def test_db_check_current_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(StoreError, match="schema revision"):
            check_current(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize("verb", ["UPDATE", "DELETE"])
def test_db_append_only_tables_refuse_update_and_delete(engine: Engine, table: str, verb: str) -> None:
    with session_scope(engine) as session:
        session.execute(
            text(
                "INSERT INTO users (username, display_name, role, password_hash, active, created_at) "
                "VALUES ('u', 'U', 'admin', 'h', true, CURRENT_TIMESTAMP)"
            )
        )
    _insert_one(engine, table)
    sql = f"UPDATE {table} SET id = id" if verb == "UPDATE" else f"DELETE FROM {table}"
    with pytest.raises(StoreError, match="append-only"), session_scope(engine) as session:
        session.execute(text(sql))


def _insert_one(engine: Engine, table: str) -> None:
    from store_factories import DEFAULTS, make_inspection

    from vinspect.store.evidence import StoredEvidence
    from vinspect.store.repository import open_ncr

    ev = StoredEvidence(kind="image", sha256="a" * 64, media_type="image/png", uri="urn:x", size_bytes=1)
    with session_scope(engine) as session:
        open_ncr(make_inspection(1), session=session, defaults=DEFAULTS, evidence=[ev])
        if table == "signatures":
            session.execute(
                text(
                    "INSERT INTO signatures (entity, entity_id, signer_user_id, printed_name, meaning, "
                    "signed_at, record_sha256, auth_method) VALUES ('ncr', 'x', 1, 'U', 'REVIEW', "
                    "CURRENT_TIMESTAMP, 'h', 'password')"
                )
            )
        if table == "station_configs":
            session.execute(
                text(
                    "INSERT INTO signatures (entity, entity_id, signer_user_id, printed_name, meaning, "
                    "signed_at, record_sha256, auth_method) VALUES ('station_config', 'st@h', 1, 'U', "
                    "'CONFIG_APPROVAL', CURRENT_TIMESTAMP, 'h', 'password')"
                )
            )
            session.execute(
                text(
                    "INSERT INTO station_configs (station_id, config_sha256, config_text, source_path, "
                    "approved_by_user_id, approved_by, approved_at, reason, signature_id) VALUES ('st', "
                    "'h', '{}', 'p', 1, 'U', CURRENT_TIMESTAMP, 'r', (SELECT max(id) FROM signatures))"
                )
            )
        if table == "spc_baselines":
            session.execute(
                text(
                    "INSERT INTO spc_baselines (station_id, chart, window_from, window_to, "
                    "subgroup_minutes, p_bar, subgroups, parts, defects, approved_by, reason, created_at) "
                    "VALUES ('st', 'reject_rate', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 60, 0.1, 20, 100, "
                    "10, 'user:1', 'r', CURRENT_TIMESTAMP)"
                )
            )
        if table == "capa_links":
            session.execute(
                text(
                    "INSERT INTO capas (capa_number, title, status, source, source_ref, defect_codes, "
                    "opened_by, opened_at, baseline) VALUES ('CAPA-1', 't', 'OPEN', 'pareto', 'x', '[]', "
                    "1, CURRENT_TIMESTAMP, '{}')"
                )
            )
            session.execute(
                text(
                    "INSERT INTO capa_links (capa_id, ncr_uuid, linked_at, linked_by) "
                    "VALUES (1, 'x', CURRENT_TIMESTAMP, 'user:1')"
                )
            )
        if table == "shadow_disagreements":
            session.execute(
                text(
                    "INSERT INTO shadow_disagreements (station_id, candidate, inspection_id, captured_at, "
                    "active_verdict, active_reasons, shadow_verdict, recorded_at) VALUES ('st', 'm@2', 'x', "
                    "CURRENT_TIMESTAMP, 'PASS', '[]', 'FAIL', CURRENT_TIMESTAMP)"
                )
            )
        if table == "pass_evidence":
            session.execute(
                text(
                    "INSERT INTO pass_evidence (inspection_id, ordinal, kind, sha256, media_type, uri, "
                    "size_bytes, recorded_at) VALUES ('x', 0, 'image', 'a', 'image/png', 'urn:x', 1, "
                    "CURRENT_TIMESTAMP)"
                )
            )
