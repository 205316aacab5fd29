"""Issue 16: a keyed audit chain (HMAC with a key outside the database, signed anchor file), user
accounts under the chain, and idempotent-record migration 0003 on a store that has duplicates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text
from store_factories import DEFAULTS, make_inspection
from test_store_cli import run
from test_store_tamper import privileged

from vinspect.errors import ConfigError
from vinspect.store import repository as repo
from vinspect.store.audit import AuditEntry, append_audit, verify_chain
from vinspect.store.audit_key import (
    ANCHOR_FILE,
    KEY_FILE,
    attach,
    flush_anchors,
    load_keyring,
    open_keyring,
    read_anchor,
    rotate_key,
)
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.migrations import _config, upgrade
from vinspect.store.ncr import Role
from vinspect.store.sink import StoreSink
from vinspect.store.tables import AuditRecord
from vinspect.store.users import audit_user_change
from vinspect.store.verify import verify_store
from vinspect.types import Verdict


def _write(engine: Engine, evidence: EvidenceStore, seqs: range) -> None:
    sink = StoreSink(engine, evidence, defaults=DEFAULTS)
    for seq in seqs:
        sink.write(make_inspection(seq, verdict=Verdict.FAIL if seq % 2 else Verdict.PASS))
    sink.close()
    flush_anchors()  # the anchor is written off the commit path; make it current for the checks


@pytest.fixture
def keyed(engine: Engine, evidence: EvidenceStore, tmp_path: Path) -> tuple[Engine, Path]:
    """A store whose first rows are unkeyed (written before the key existed), the rest keyed."""
    _write(engine, evidence, range(0, 3))
    data = tmp_path / "data"
    data.mkdir()
    attach(engine, open_keyring(data), anchor_path=data / ANCHOR_FILE)
    _write(engine, evidence, range(3, 8))
    return engine, data


def _verify(engine: Engine, data: Path, *, with_anchor: bool = True):  # type: ignore[no-untyped-def]
    ring = load_keyring(data / KEY_FILE)
    signed = read_anchor(data / ANCHOR_FILE, ring) if with_anchor else None
    from vinspect.store.audit import ChainAnchor

    anchor = None if signed is None else ChainAnchor(seq=signed.seq, row_hash=signed.row_hash)
    with session_scope(engine, readonly=True) as session:
        return verify_store(session=session, keyring=ring, anchor=anchor)


def test_keyed_rows_verify_and_old_rows_are_reported_unkeyed(keyed: tuple[Engine, Path]) -> None:
    engine, data = keyed
    report = _verify(engine, data)
    assert report.ok, (report.chain, report.problems)
    with session_scope(engine, readonly=True) as session:
        rows = session.query(AuditRecord).order_by(AuditRecord.seq).all()
    unkeyed = [r.seq for r in rows if r.key_id is None]
    assert unkeyed == list(range(1, len(unkeyed) + 1)) and report.chain.unkeyed == len(unkeyed) > 0
    assert all(r.mac is not None and len(r.mac) == 64 for r in rows[len(unkeyed) :])
    assert read_anchor(data / ANCHOR_FILE, load_keyring(data / KEY_FILE)).seq == rows[-1].seq  # type: ignore[union-attr]
    assert os.stat(data / KEY_FILE).st_mode & 0o777 == 0o600


def test_forged_append_with_correct_plain_hashes_is_detected(keyed: tuple[Engine, Path], store_url: str) -> None:
    engine, data = keyed
    forger = make_engine(store_url)  # database access, no key file: computes every plain hash correctly
    try:
        with session_scope(forger) as session:
            append_audit(AuditEntry(actor="user:1", action="ncr.close", entity="ncr", entity_id="x"), session=session)
        report = _verify(engine, data, with_anchor=False)
        assert not report.chain.ok and "without the audit key" in (report.chain.problem or "")
        with session_scope(engine, readonly=True) as session:  # detected without the key file, too
            assert not verify_chain(session=session).ok
    finally:
        forger.dispose()


def test_forged_mac_and_unknown_key_are_detected(keyed: tuple[Engine, Path]) -> None:
    engine, data = keyed
    ring = load_keyring(data / KEY_FILE)
    assert ring is not None
    with privileged(engine) as (conn, session):
        conn.execute(
            text("UPDATE audit_records SET mac = :m WHERE seq = (SELECT MAX(seq) FROM audit_records)"), {"m": "0" * 64}
        )
        report = verify_chain(session=session, keyring=ring)
    assert not report.ok and "HMAC does not match" in (report.problem or "")
    with privileged(engine) as (conn, session):
        conn.execute(
            text("UPDATE audit_records SET key_id = 'k-other' WHERE seq = (SELECT MAX(seq) FROM audit_records)")
        )
        report = verify_chain(session=session, keyring=ring)
    assert not report.ok and "not in the audit key file" in (report.problem or "")


def test_deleting_the_newest_rows_is_detected_by_the_signed_anchor(keyed: tuple[Engine, Path]) -> None:
    engine, data = keyed
    ring = load_keyring(data / KEY_FILE)
    signed = read_anchor(data / ANCHOR_FILE, ring)
    assert signed is not None
    from vinspect.store.audit import ChainAnchor

    anchor = ChainAnchor(seq=signed.seq, row_hash=signed.row_hash)
    with privileged(engine) as (conn, session):
        conn.execute(text("DELETE FROM audit_records WHERE seq > :s"), {"s": signed.seq - 2})
        assert verify_chain(session=session, keyring=ring).ok  # no broken link without the anchor
        report = verify_chain(session=session, keyring=ring, anchor=anchor)
    assert not report.ok and "newest rows were deleted" in (report.problem or "")


def test_anchor_file_forged_is_refused(keyed: tuple[Engine, Path]) -> None:
    _, data = keyed
    path = data / ANCHOR_FILE
    path.write_text(path.read_text().replace('"seq": ', '"seq": 1'))
    with pytest.raises(ConfigError, match="HMAC does not match"):
        read_anchor(path, load_keyring(data / KEY_FILE))


def test_key_rotation_keeps_old_rows_verifiable(keyed: tuple[Engine, Path], evidence: EvidenceStore) -> None:
    engine, data = keyed
    old = load_keyring(data / KEY_FILE)
    new = rotate_key(data)
    assert old is not None and new.current != old.current and set(old.keys) < set(new.keys)
    attach(engine, new, anchor_path=data / ANCHOR_FILE)
    _write(engine, evidence, range(8, 10))
    report = _verify(engine, data)
    assert report.ok, (report.chain, report.problems)
    with session_scope(engine, readonly=True) as session:
        used = {k for (k,) in session.execute(text("SELECT DISTINCT key_id FROM audit_records")) if k}
        assert used == {old.current, new.current}
        only_new = type(new)(current=new.current, keys={new.current: new.keys[new.current]})
        report_new_only = verify_chain(session=session, keyring=only_new)
    assert not report_new_only.ok and old.current in (report_new_only.problem or "")


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    open_keyring(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_keyring(tmp_path / KEY_FILE)


USER_TAMPERING = {
    "active": ("UPDATE users SET active = true WHERE username = 'rita'", "field active is True but audit seq"),
    "password_hash": (
        "UPDATE users SET password_hash = 'argon2-forged' WHERE username = 'quinn'",
        "field password_hash differs but audit seq",
    ),
    "role": ("UPDATE users SET role = 'admin' WHERE username = 'quinn'", "field role is 'admin' but audit seq"),
}


@pytest.mark.parametrize("case", sorted(USER_TAMPERING))
def test_user_rows_changed_outside_the_app_are_named(engine: Engine, case: str) -> None:
    with session_scope(engine) as session:
        rita = repo.create_user(
            "rita",
            session=session,
            display_name="Rita",
            role=Role.REVIEWER,
            password_hash="h1",
            actor="system:bootstrap",
        )
        repo.create_user(
            "quinn",
            session=session,
            display_name="Quinn",
            role=Role.QUALITY_ENGINEER,
            password_hash="h2",
            actor="system:bootstrap",
        )
        repo.set_user_active(rita.id, session=session, active=False, actor="user:2", reason="left the company")
    with session_scope(engine, readonly=True) as session:
        assert verify_store(session=session).ok
    sql, expected = USER_TAMPERING[case]
    with privileged(engine) as (conn, session):
        conn.execute(text(sql))
        session.expire_all()
        report = verify_store(session=session)
    assert report.chain.ok and any(p.startswith("users ") and expected in p for p in report.problems), report.problems


def test_audited_user_changes_pass_verification(engine: Engine) -> None:
    """A change made through the application (with its audit link) is not a mismatch."""
    from vinspect.store.tables import UserRecord

    with session_scope(engine) as session:
        user = repo.create_user(
            "pat", session=session, display_name="Pat", role=Role.REVIEWER, password_hash="h1", actor="system:bootstrap"
        )
        row = session.get(UserRecord, user.id)
        assert row is not None
        row.password_hash = "h2"
        audit_user_change(
            row,
            session=session,
            actor="user:1",
            action="user.reset_password",
            field="password_hash",
            old_value=None,
            new_value=None,
            reason="forgotten",
        )
        row.role = "admin"
        audit_user_change(
            row,
            session=session,
            actor="user:1",
            action="user.set_role",
            field="role",
            old_value="reviewer",
            new_value="admin",
            reason="promotion",
        )
    with session_scope(engine, readonly=True) as session:
        report = verify_store(session=session)
    assert report.ok, report.problems


def test_legacy_user_rows_still_name_an_unaudited_reactivation(tmp_path: Path) -> None:
    """Accounts audited before the state column: the last user.set_active link still declares the flag."""
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    try:
        upgrade(engine)
        with session_scope(engine) as session:
            user = repo.create_user(
                "lee",
                session=session,
                display_name="Lee",
                role=Role.REVIEWER,
                password_hash="h",
                actor="system:bootstrap",
            )
            repo.set_user_active(user.id, session=session, active=False, actor="user:1", reason="left")
        with privileged(engine) as (conn, session):  # make the links look like pre-0003 rows (no state)
            rows = conn.execute(text("SELECT seq FROM audit_records ORDER BY seq")).scalars().all()
            conn.execute(text("UPDATE audit_records SET state = NULL"))
            from vinspect.store.audit import GENESIS_HASH, compute_row_hash

            prev = GENESIS_HASH
            for seq in rows:
                row = session.query(AuditRecord).filter(AuditRecord.seq == seq).one()
                session.refresh(row)
                values = {
                    c: getattr(row, c)
                    for c in (
                        "seq",
                        "at",
                        "actor",
                        "action",
                        "entity",
                        "entity_id",
                        "field",
                        "old_value",
                        "new_value",
                        "reason",
                        "source",
                        "record_sha256",
                        "state",
                    )
                }
                values["prev_hash"] = prev
                prev = compute_row_hash(values)
                conn.execute(
                    text("UPDATE audit_records SET prev_hash = :p, row_hash = :h WHERE seq = :s"),
                    {"p": values["prev_hash"], "h": prev, "s": seq},
                )
            conn.execute(text("UPDATE users SET active = 1"))
            session.expire_all()
            report = verify_store(session=session)
        assert report.chain.ok, report.chain
        assert any("field active is True" in p for p in report.problems), report.problems
    finally:
        engine.dispose()


def test_migration_0003_on_a_store_that_already_has_duplicates(store_url: str) -> None:
    """A store hit by the old bug (one part number twice) still upgrades; new duplicates are refused."""
    engine = make_engine(store_url)
    try:
        config = _config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
        insert = text(
            "INSERT INTO inspections (inspection_id, station_id, part_seq, verdict, reasons, policy_id, "
            "fail_at, review_at, recorded_at) VALUES (:i, 's', :p, 'FAIL', '[]', 'p', 0.7, 0.5, "
            "CURRENT_TIMESTAMP)"
        )
        with engine.begin() as conn:
            for i, seq in enumerate([1, 2, 2, 3]):
                conn.execute(insert, {"i": f"old-{i}", "p": seq})
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(insert, {"i": "new-1", "p": 4})
        with pytest.raises(Exception, match=r"(?i)unique"), engine.begin() as conn:
            conn.execute(insert, {"i": "new-2", "p": 4})
        from sqlalchemy import inspect

        indexes = {i["name"] for i in inspect(engine).get_indexes("inspections")}
        assert {"uq_inspections_station_part", "ix_inspections_station_part"} <= indexes  # partial + lookup
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM inspections WHERE part_seq = 2")).scalar() == 2
    finally:
        engine.dispose()


def test_audit_cli_reports_unkeyed_rows_and_a_forged_append(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "vinspect-data"
    data.mkdir()
    url = f"sqlite:///{data / 'vinspect.db'}"
    engine = make_engine(url)
    upgrade(engine)
    evidence = EvidenceStore(data / "evidence")
    _write(engine, evidence, range(0, 2))
    attach(engine, open_keyring(data), anchor_path=data / ANCHOR_FILE)
    _write(engine, evidence, range(2, 4))
    engine.dispose()
    code, out = run(capsys, "audit", "verify", "--data-dir", str(data))
    assert code == 0 and "unkeyed rows: " in out and "HMAC checked on" in out and out.endswith("OK\n"), out
    code, out = run(capsys, "audit", "rotate-key", "--data-dir", str(data))
    assert code == 0 and "is now current" in out
    forger = make_engine(url)
    with session_scope(forger) as session:
        append_audit(
            AuditEntry(actor="user:1", action="user.set_active", entity="user", entity_id="1"), session=session
        )
    forger.dispose()
    code, out = run(capsys, "audit", "verify", "--data-dir", str(data))
    assert code == 1 and "without the audit key (forged)" in out and out.endswith("FAILED\n"), out
