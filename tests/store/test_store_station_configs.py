"""Approved station configurations under ``audit verify`` (issue 20 item 7): an edited text, a row
inserted outside the application and a signature moved to another version are each named."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from vinspect.store import make_engine, session_scope, upgrade, verify_store
from vinspect.store.ncr import Role
from vinspect.store.station_configs import approve_config, config_diff, station_history
from vinspect.store.users import create_user

V1 = '{"deadline_ms":150.0,"station_id":"st"}'
V2 = '{"deadline_ms":200.0,"station_id":"st"}'


def _store(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    upgrade(engine)
    with session_scope(engine) as session:
        qe = create_user(
            "quinn",
            session=session,
            display_name="Quinn",
            role=Role.QUALITY_ENGINEER,
            password_hash="h",
            actor="system:test",
        )
        approve_config(
            session=session,
            station_id="st",
            config_text=V1,
            source_path="/s.yaml",
            signer_user_id=qe.id,
            reason="first",
        )
        approve_config(
            session=session,
            station_id="st",
            config_text=V2,
            source_path="/s.yaml",
            signer_user_id=qe.id,
            reason="slower conveyor",
        )
    return engine


def _problems(engine) -> list[str]:  # type: ignore[no-untyped-def]
    with session_scope(engine, readonly=True) as session:
        return list(verify_store(session=session).problems)


def test_versions_chain_and_verify(tmp_path: Path) -> None:
    engine = _store(tmp_path)
    with session_scope(engine, readonly=True) as session:
        history = station_history(session=session, station_id="st")
    assert [h.reason for h in history] == ["first", "slower conveyor"]
    assert history[1].previous_sha256 == history[0].config_sha256
    assert config_diff(V1, V2) == [
        "--- approved",
        "+++ this file",
        "@@ -1,3 +1,3 @@",
        " {",
        '- "deadline_ms": 150.0,',
        '+ "deadline_ms": 200.0,',
        '  "station_id": "st"',
    ]
    assert _problems(engine) == []


def test_an_edited_text_and_a_foreign_row_are_named(tmp_path: Path) -> None:
    engine = _store(tmp_path)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER station_configs_no_update")
        conn.execute(
            text("UPDATE station_configs SET config_text = :t WHERE id = 1"),
            {"t": '{"deadline_ms":900.0,"station_id":"st"}'},
        )
        conn.execute(
            text(
                "INSERT INTO station_configs (station_id, config_sha256, config_text, source_path, "
                "approved_by_user_id, approved_by, approved_at, reason, signature_id) SELECT 'st', "
                "'ab', '{}', 'p', 1, 'Quinn', approved_at, 'r', signature_id FROM station_configs "
                "WHERE id = 2"
            )
        )
    problems = _problems(engine)
    assert any("station_config 1 (st" in p and "no longer hashes to its version (edited)" in p for p in problems)
    assert any("station_config 3 (st ab)" in p and "approved another version" in p for p in problems), problems
