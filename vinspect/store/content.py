"""The hashed content of each stored record, shared by the writers and the verifier.

Every append-only row is covered by an audit link whose ``record_sha256`` is the hash of the
row's content as defined here (inspections by batch: the hash of the concatenated row hashes).
Changing a definition invalidates every stored hash, so these functions change only together
with a schema migration that says how old rows are verified.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from vinspect.store.canonical import content_sha256, format_utc, sha256_hex
from vinspect.store.tables import (
    EvidenceRecord,
    InspectionRecord,
    NcrEvent,
    NcrRecord,
    SignatureRecord,
    UserRecord,
)

__all__ = [
    "event_content",
    "event_sha256",
    "inspection_batch_sha256",
    "inspection_sha256",
    "ncr_content",
    "ncr_sha256",
    "signature_sha256",
    "user_sha256",
]


Values = Mapping[str, Any]  # column values about to be inserted, ``id`` included


def _t(value: object) -> object:
    return format_utc(value) if isinstance(value, datetime) else value


def _get(row: object, name: str) -> Any:
    return row.get(name) if isinstance(row, Mapping) else getattr(row, name)


def _columns(row: object, names: Sequence[str]) -> dict[str, object]:
    """Named fields of a stored row or of the values about to be inserted (a mapping)."""
    return {name: _t(_get(row, name)) for name in names}


_INSPECTION_COLUMNS = (
    "id",
    "inspection_id",
    "station_id",
    "part_seq",
    "verdict",
    "reasons",
    "policy_id",
    "fail_at",
    "review_at",
    "score",
    "model_name",
    "model_version",
    "model_sha256",
    "source_id",
    "frame_id",
    "captured_at",
    "part_id",
    "error",
    "recorded_at",
)
_NCR_COLUMNS = (
    "id",
    "ncr_uuid",
    "ncr_seq",
    "ncr_number",
    "schema_version",
    "detected_at",
    "created_at",
    "site_id",
    "line_id",
    "station_id",
    "camera_id",
    "detection_point",
    "detected_by_kind",
    "detected_by_id",
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
    "inference",
    "containment",
    "related_ncr_uuids",
    "inspection_id",
)
_EVIDENCE_COLUMNS = (
    "id",
    "ncr_id",
    "ordinal",
    "kind",
    "sha256",
    "media_type",
    "uri",
    "size_bytes",
    "captured_at",
    "camera_settings",
)
_EVENT_COLUMNS = (
    "id",
    "ncr_id",
    "revision",
    "kind",
    "from_status",
    "to_status",
    "at",
    "actor",
    "reason",
    "payload",
    "signature_id",
)
_SIGNATURE_COLUMNS = (
    "id",
    "entity",
    "entity_id",
    "signer_user_id",
    "printed_name",
    "meaning",
    "signed_at",
    "record_sha256",
    "auth_method",
)
_USER_COLUMNS = ("id", "username", "display_name", "role", "created_at")


def inspection_sha256(row: InspectionRecord | Values) -> str:
    """Hash of one inspection row. ``part_number`` (migration 0008) and ``config_sha256`` (migration
    0010) are hashed only when set, so rows written before them verify unchanged."""
    content = _columns(row, _INSPECTION_COLUMNS)
    part_number = _get(row, "part_number")
    if part_number is not None:
        content["part_number"] = part_number
    if (config := _get(row, "config_sha256")) is not None:
        content["config_sha256"] = config
    return content_sha256(content)


def inspection_batch_sha256(rows: Sequence[InspectionRecord | Values]) -> str:
    """Hash of a batch: sha256 over the row hashes in id order."""
    ordered = sorted(rows, key=lambda r: int(_get(r, "id")))
    return sha256_hex("".join(inspection_sha256(r) for r in ordered).encode("ascii"))


def ncr_content(ncr: NcrRecord | Values, evidence: Sequence[EvidenceRecord | Values]) -> dict[str, object]:
    """The original NCR as created, with its evidence references."""
    content = _columns(ncr, _NCR_COLUMNS)
    ordered = sorted(evidence, key=lambda e: int(_get(e, "ordinal")))
    content["evidence"] = [_columns(e, _EVIDENCE_COLUMNS) for e in ordered]
    return content


def ncr_sha256(ncr: NcrRecord | Values, evidence: Sequence[EvidenceRecord | Values]) -> str:
    """Hash of :func:`ncr_content`."""
    return content_sha256(ncr_content(ncr, evidence))


def event_content(event: NcrEvent | Values) -> dict[str, object]:
    """All columns of an event (the signature id included)."""
    return _columns(event, _EVENT_COLUMNS)


def event_sha256(event: NcrEvent | Values) -> str:
    """Hash of :func:`event_content`."""
    return content_sha256(event_content(event))


def signature_sha256(signature: SignatureRecord) -> str:
    """Hash of a signature row (its binding ``record_sha256`` included)."""
    return content_sha256(_columns(signature, _SIGNATURE_COLUMNS))


def user_sha256(user: UserRecord) -> str:
    """Hash of the identity fields that never change (active and password are audited apart)."""
    return content_sha256(_columns(user, _USER_COLUMNS))


def loads(text: str) -> object:
    """Parse a canonical-JSON column."""
    return json.loads(text)
