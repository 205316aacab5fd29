"""Exports: JSON / JSON Lines / CSV, filtered, every document valid against the published schema."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from store_factories import DEFAULTS, make_inspection

from vinspect.store import repository as repo
from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.export import CSV_COLUMNS, ExportFormat, export_ncrs, export_to_path, schema
from vinspect.store.ncr import (
    DispositionCode,
    DispositionInput,
    NcrFilter,
    NcrStatus,
    ReviewDecision,
    ReviewInput,
    Role,
)
from vinspect.store.sink import StoreSink
from vinspect.types import Verdict

GOLDEN = Path(__file__).parent / "golden" / "ncr_csv_columns.txt"


def _validator() -> Callable[[dict[str, Any]], list[str]]:
    """Draft 2020-12 validation with formats, by jsonschema if installed, else jsonschema_rs."""
    try:
        import jsonschema

        checker = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker())
        return lambda doc: [e.message for e in checker.iter_errors(doc)]
    except ImportError:
        pass
    try:
        import jsonschema_rs
    except ImportError:
        pytest.skip("needs jsonschema (or jsonschema_rs) to validate against the published schema")
    rs = jsonschema_rs.Draft202012Validator(schema(), validate_formats=True)
    return lambda doc: [str(e) for e in rs.iter_errors(doc)]


@pytest.fixture(scope="module")
def filled(module_store: tuple[Engine, EvidenceStore]) -> Iterator[Engine]:
    engine, evidence = module_store
    sink = StoreSink(engine, evidence, defaults=DEFAULTS)
    for seq in range(8):
        sink.write(
            make_inspection(
                seq,
                station="st-1" if seq < 5 else "st-2",
                verdict=Verdict.REVIEW if seq == 7 else Verdict.FAIL,
                reasons=("late",) if seq == 6 else None,
                with_frame=seq != 6,
            )
        )
    sink.close()
    with session_scope(engine) as session:
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
            display_name="Quinn Q",
            role=Role.QUALITY_ENGINEER,
            password_hash="h",
            actor="system:bootstrap",
        ).id
        first = repo.list_ncrs(NcrFilter(), session=session)[0]["ncr_uuid"]
        repo.claim_ncr(first, session=session, user_id=rita)
        repo.add_review(
            first,
            session=session,
            review=ReviewInput(
                user_id=rita, decision=ReviewDecision.CONFIRMED_DEFECT, reason="crack", notify=("QA lead",)
            ),
        )
        repo.add_disposition(
            first,
            session=session,
            disposition=DispositionInput(
                user_id=quinn,
                code=DispositionCode.USE_AS_IS,
                quantity=1,
                justification="cosmetic, concession C-9",
                customer_concession_ref="C-9",
            ),
        )
    yield engine


def _export(engine: Engine, fmt: ExportFormat, filters: NcrFilter | None = None) -> str:
    out = io.StringIO()
    with session_scope(engine, readonly=True) as session:
        export_ncrs(out, session=session, fmt=fmt, filters=filters or NcrFilter())
    return out.getvalue()


def test_export_json_documents_validate_against_the_published_schema(filled: Engine) -> None:
    docs = json.loads(_export(filled, ExportFormat.JSON))
    validate = _validator()
    assert len(docs) == 8
    for doc in docs:
        assert validate(doc) == [], doc["ncr_number"]
    assert docs[0]["disposition"]["customer_concession_ref"] == "C-9"
    assert docs[0]["signatures"][1]["printed_name"] == "Quinn Q"
    assert schema()["$id"].endswith(docs[0]["schema_version"])


def test_export_schema_rejects_a_broken_document(filled: Engine) -> None:
    doc = json.loads(_export(filled, ExportFormat.JSON))[0]
    validate = _validator()
    for mutate in ({"status": "LOST"}, {"ncr_uuid": "nope"}, {"extra_field": 1}, {"evidence": [{"kind": "x"}]}):
        assert validate({**doc, **mutate}) != [], mutate


def test_export_jsonl_equals_json(filled: Engine) -> None:
    lines = _export(filled, ExportFormat.JSONL).splitlines()
    assert [json.loads(line) for line in lines] == json.loads(_export(filled, ExportFormat.JSON))


def test_export_csv_columns_match_the_golden_file_and_flatten(filled: Engine) -> None:
    text = _export(filled, ExportFormat.CSV)
    assert "\r\n" in text  # RFC 4180 line ends
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert GOLDEN.read_text("utf-8").split() == list(CSV_COLUMNS)
    assert rows[0]["disposition.code"] == "USE_AS_IS" and rows[0]["review.notify"] == '["QA lead"]'
    assert rows[0]["detected_by.kind"] == "SYSTEM" and rows[6]["inference.reasons"] == '["late"]'
    assert json.loads(rows[0]["signatures"])[0]["meaning"] == "REVIEW"
    assert rows[1]["review.decision"] == "" and rows[1]["status"] == "OPEN"


@pytest.mark.parametrize(
    ("filters", "count"),
    [
        (NcrFilter(station_id="st-2"), 3),
        (NcrFilter(status=NcrStatus.DISPOSITIONED), 1),
        (NcrFilter(defect_code="late"), 1),
        (NcrFilter(status=NcrStatus.OPEN, station_id="st-1"), 4),
    ],
)
def test_export_filters(filled: Engine, filters: NcrFilter, count: int) -> None:
    assert len(json.loads(_export(filled, ExportFormat.JSON, filters))) == count


def test_export_to_path_writes_atomically(filled: Engine, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "ncrs.jsonl"
    dest.parent.mkdir()
    with session_scope(filled, readonly=True) as session:
        summary = export_to_path(dest, session=session, fmt=ExportFormat.JSONL, filters=NcrFilter())
    assert summary.count == 8 and len(dest.read_text("utf-8").splitlines()) == 8
    assert [p.name for p in dest.parent.iterdir()] == ["ncrs.jsonl"]
