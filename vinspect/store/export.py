"""NCR export as JSON, JSON Lines and CSV (quality-domain §15), streamed, never buffered whole.

- JSON: one array of canonical NCR documents, each valid against the published schema
  ``schema/ncr-v1.schema.json`` (draft 2020-12; :func:`schema` loads it).
- JSON Lines: one document per line, flushed per line.
- CSV: RFC 4180, UTF-8, header row, one row per NCR; nested fields flattened with dots, lists
  and objects as JSON strings; the column order is :data:`CSV_COLUMNS` (pinned by a golden file).
  A text cell that begins with ``= + - @``, a tab or a carriage return gets a leading ``'`` (OWASP
  CSV injection), so a spreadsheet shows it as text instead of running it as a formula. JSON and
  JSON Lines carry every value exactly.
Files are fsynced at the end. Selection: :class:`~vinspect.store.ncr.NcrFilter`.
"""

from __future__ import annotations

import csv
import enum
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.orm import Session

from vinspect.errors import StoreError
from vinspect.files import replace_atomically
from vinspect.store.canonical import canonical_json
from vinspect.store.document import iter_documents
from vinspect.store.ncr import NcrFilter

__all__ = [
    "CSV_COLUMNS",
    "ExportFormat",
    "ExportSummary",
    "export_ncrs",
    "export_to_path",
    "flatten",
    "neutralise",
    "schema",
]

CSV_COLUMNS: tuple[str, ...] = (
    "schema_version",
    "ncr_uuid",
    "ncr_number",
    "status",
    "revision",
    "detected_at",
    "created_at",
    "site_id",
    "line_id",
    "station_id",
    "camera_id",
    "detection_point",
    "detected_by.kind",
    "detected_by.id",
    "part_number",
    "part_revision",
    "part_name",
    "serial_number",
    "lot_number",
    "work_order",
    "operation",
    "quantity_affected",
    "uom",
    "requirement_ref",
    "defect_code",
    "severity",
    "description",
    "machine_verdict",
    "inference.model_name",
    "inference.model_version",
    "inference.model_sha256",
    "inference.score",
    "inference.threshold",
    "inference.review_threshold",
    "inference.regions",
    "inference.inference_id",
    "inference.recipe_id",
    "inference.reasons",
    "inference.error",
    "evidence",
    "containment.action",
    "containment.reject_actuation_confirmed",
    "containment.location",
    "review.decision",
    "review.defect_code",
    "review.investigation_required",
    "review.investigation_notes",
    "review.notify",
    "review.mrb",
    "review.reviewer",
    "review.reviewed_at",
    "review.reason",
    "review.signature_id",
    "disposition.code",
    "disposition.quantity",
    "disposition.date",
    "disposition.justification",
    "disposition.authority.user_id",
    "disposition.authority.role",
    "disposition.design_authority_approval_ref",
    "disposition.customer_concession_ref",
    "disposition.rework_instruction_ref",
    "disposition.reinspection_result",
    "disposition.scrap_verified_unusable",
    "disposition.signature_id",
    "capa_ref",
    "eight_d_ref",
    "scar_ref",
    "cause_code",
    "corrective_action_ref",
    "related_ncr_uuids",
    "corrections",
    "signatures",
    "history",
    "content_sha256",
    "export_state",
    "capas",
)


class ExportFormat(enum.StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSummary:
    count: int
    fmt: ExportFormat


def schema() -> dict[str, Any]:
    """The published NCR JSON Schema (draft 2020-12) that every exported document satisfies."""
    text = resources.files("vinspect.store").joinpath("schema/ncr-v1.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """A CSV text cell a spreadsheet will not evaluate: a leading ``'`` before a formula start."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, int | float):
        return canonical_json(value).decode("utf-8")  # a number stays a number (e.g. -0.5)
    return neutralise(canonical_json(value).decode("utf-8"))


def flatten(document: dict[str, Any]) -> dict[str, str]:
    """One CSV row: dotted keys for nested objects, JSON strings for lists."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        else:
            flat[prefix] = _cell(value)

    walk("", document)
    return {column: flat.get(column, "") for column in CSV_COLUMNS}


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, sort_keys=True)


def export_ncrs(out: TextIO, *, session: Session, fmt: ExportFormat, filters: NcrFilter) -> ExportSummary:
    """Write matching NCRs to an open text stream in ``fmt``; returns how many were written."""
    count = 0
    writer: Any = None
    if fmt is ExportFormat.CSV:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
    elif fmt is ExportFormat.JSON:
        out.write("[")
    for document in iter_documents(filters, session=session, export_state=True):
        if fmt is ExportFormat.CSV:
            writer.writerow(flatten(document))
        elif fmt is ExportFormat.JSONL:
            out.write(_dump(document) + "\n")
            out.flush()
        else:
            out.write(("," if count else "") + "\n" + _dump(document))
        count += 1
    if fmt is ExportFormat.JSON:
        out.write("\n]\n")
    out.flush()
    return ExportSummary(count=count, fmt=fmt)


def export_to_path(path: Path, *, session: Session, fmt: ExportFormat, filters: NcrFilter) -> ExportSummary:
    """Export to a file (written to a temporary name, fsynced, then renamed into place)."""
    try:
        with replace_atomically(path, durable=True) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
            summary = export_ncrs(handle, session=session, fmt=fmt, filters=filters)
    except OSError as exc:
        raise StoreError(f"exporting to {path}: {exc}") from exc
    return summary
