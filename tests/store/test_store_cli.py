"""``vinspect ncr|audit|backup|restore|evidence|outbox`` through register() on a real parser."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from store_factories import DEFAULTS, make_inspection
from store_qms_stub import QmsStub

from vinspect.cli.store import register, store_location
from vinspect.errors import StoreError
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.migrations import upgrade
from vinspect.store.sink import StoreSink


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="vinspect")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.handler(args)
    return code, capsys.readouterr().out


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "vinspect-data"
    _, url = store_location(directory, None)
    directory.mkdir()
    engine = make_engine(url)
    upgrade(engine)
    evidence = EvidenceStore(directory / "evidence")
    sink = StoreSink(engine, evidence, defaults=DEFAULTS)
    for seq in range(5):
        sink.write(make_inspection(seq, station="st-1" if seq < 3 else "st-2", with_map=seq != 0))
    sink.close()
    evidence.close()
    engine.dispose()
    return directory


def test_cli_default_location_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    _, url = store_location(tmp_path / "d", None)
    assert url == f"sqlite:///{(tmp_path / 'd').resolve() / 'vinspect.db'}"
    assert store_location(None, "postgresql+psycopg://x@h/db")[1] == "postgresql+psycopg://x@h/db"


def test_cli_ncr_list_show_export(data_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out = run(capsys, "ncr", "list", "--data-dir", str(data_dir), "--station", "st-2")
    assert code == 0 and len(out.splitlines()) == 2 and "NCR-2026-000004" in out
    code, out = run(capsys, "ncr", "show", "NCR-2026-000001", "--data-dir", str(data_dir))
    assert code == 0 and json.loads(out)["ncr_number"] == "NCR-2026-000001"
    for fmt in ("json", "csv", "jsonl"):
        dest = tmp_path / f"out.{fmt}"
        code, _ = run(
            capsys,
            "ncr",
            "export",
            "--data-dir",
            str(data_dir),
            "--format",
            fmt,
            "--out",
            str(dest),
            "--since",
            "2026-01-15T08:00:01Z",
            "--until",
            "2026-01-15T08:00:04",
            "--status",
            "OPEN",
        )
        assert code == 0 and dest.exists()
    assert len(json.loads((tmp_path / "out.json").read_text())) == 3
    with pytest.raises(StoreError, match="not found"):
        run(capsys, "ncr", "show", "NCR-2026-000099", "--data-dir", str(data_dir))


def test_cli_audit_verify_reports_the_first_broken_link(
    data_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    anchor = tmp_path / "head.json"
    code, out = run(capsys, "audit", "verify", "--data-dir", str(data_dir), "--write-anchor", str(anchor))
    assert code == 0 and out.endswith("OK\n") and json.loads(anchor.read_text())["seq"] > 5
    engine = make_engine(store_location(data_dir, None)[1])
    with session_scope(engine) as session:  # an insider with the file: drop the trigger, edit seq 4
        session.execute(text("DROP TRIGGER audit_records_no_update"))
        session.execute(text("UPDATE audit_records SET actor = 'user:9' WHERE seq = 4"))
    engine.dispose()
    code, out = run(capsys, "audit", "verify", "--data-dir", str(data_dir), "--anchor", str(anchor))
    assert code == 1 and "FIRST BROKEN LINK: seq 4:" in out and out.endswith("FAILED\n")


def test_cli_backup_restore_scrub(data_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    backup = tmp_path / "b.sqlite"
    code, out = run(capsys, "backup", "--data-dir", str(data_dir), "--out", str(backup))
    assert code == 0 and "verified" in out
    code, out = run(capsys, "restore", "--from", str(backup), "--data-dir", str(tmp_path / "restored"))
    assert code == 0 and "'ncrs': 5" in out
    code, out = run(capsys, "evidence", "scrub", "--data-dir", str(data_dir))
    assert code == 0 and "checked: 9" in out
    next((data_dir / "evidence").rglob("*.png")).unlink()
    code, out = run(capsys, "evidence", "scrub", "--data-dir", str(data_dir))
    assert code == 1 and "MISSING: " in out


def test_cli_outbox_drain(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with QmsStub(["500", "reset"]) as stub:
        code, out = run(
            capsys,
            "outbox",
            "drain",
            "--data-dir",
            str(data_dir),
            "--url",
            stub.url,
            "--timeout-s",
            "1",
            "--max-seconds",
            "30",
        )
    assert code == 0 and out.startswith("delivered 5,") and len(stub.applies) == 5


def test_cli_missing_store_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(StoreError, match="no store"):
        run(capsys, "ncr", "list", "--data-dir", str(tmp_path / "nowhere"))
