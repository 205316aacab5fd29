"""Signatures on records other than NCRs (CAPA steps and closures, alarm acknowledgements).

The signed content (record, what was signed, signer, meaning, time) is kept as canonical JSON in
the audit row of ``action`` next to the ``signature.create`` row; ``record_sha256`` is the
SHA-256 of that content, so :func:`verify_record_signature` re-checks the binding (21 CFR 11.70)
the same way model-promotion signatures are checked.

:func:`create_signature` and :func:`signer_fields` are the steps every kept-content signature
shares (these records, and model promotions and rollbacks in :mod:`vinspect.store.promotion`):
the signature row bound to the content's hash with its ``signature.create`` audit row, and the
signer's fields the content must carry for :func:`any_row_binds` to accept it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from vinspect.errors import StateError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, content_sha256, format_utc
from vinspect.store.content import signature_sha256
from vinspect.store.ncr import SIGNING_ROLES, Role, SignatureMeaning
from vinspect.store.tables import AuditRecord, SignatureRecord, UserRecord

__all__ = [
    "RECORD_ENTITIES",
    "Signer",
    "any_row_binds",
    "create_signature",
    "sign_record",
    "signer_fields",
    "verify_record_signature",
]

RECORD_ENTITIES = frozenset({"capa", "alarm", "station_config", "shadow"})  # shadow: store.shadow_judgements


class Signer(Protocol):
    """Who signs: a user row or the :class:`vinspect.store.users.User` read from it."""

    @property
    def id(self) -> int: ...

    @property
    def display_name(self) -> str: ...


def signer_fields(signer: Signer, meaning: SignatureMeaning, at: datetime) -> dict[str, Any]:
    """The fields a signed content carries about its signature (what :func:`any_row_binds` checks)."""
    return {
        "meaning": str(meaning),
        "signer_user_id": signer.id,
        "printed_name": signer.display_name,
        "signed_at": format_utc(at),
    }


def create_signature(
    *,
    session: Session,
    entity: str,
    entity_id: str,
    signer: Signer,
    meaning: SignatureMeaning,
    content: Mapping[str, Any],
    actor: str,
    reason: str | None,
    source: str | None,
    at: datetime,
    auth_method: str,
) -> SignatureRecord:
    """Add the signature binding ``content`` (its SHA-256) and audit it as ``signature.create``,
    inside the caller's transaction; the caller keeps ``content`` in an audit row of its own."""
    sig = SignatureRecord(
        entity=entity,
        entity_id=entity_id[:64],
        signer_user_id=signer.id,
        printed_name=signer.display_name,
        meaning=str(meaning),
        signed_at=at,
        record_sha256=content_sha256(content),
        auth_method=auth_method,
    )
    session.add(sig)
    session.flush()
    append_audit(
        AuditEntry(
            actor=actor,
            action="signature.create",
            entity="signature",
            entity_id=str(sig.id),
            field="meaning",
            new_value=sig.meaning,
            reason=reason,
            record_sha256=signature_sha256(sig),
            source=source,
        ),
        session=session,
        at=at,
    )
    return sig


def sign_record(
    *,
    session: Session,
    entity: str,
    entity_id: str,
    signer: UserRecord,
    meaning: SignatureMeaning,
    content: Mapping[str, Any],
    action: str,
    reason: str | None,
    source: str | None,
    at: datetime,
    auth_method: str = "password",
) -> SignatureRecord:
    """Sign ``content`` about ``entity``/``entity_id`` inside the caller's transaction (writer lock held).

    Raises:
        StateError: the signer's role may not sign with ``meaning``.
    """
    if entity not in RECORD_ENTITIES:
        raise StateError(f"records of kind {entity!r} are not signed here")
    if Role(signer.role) not in SIGNING_ROLES[meaning]:
        raise StateError(f"{signer.username} ({signer.role}) may not sign {meaning}")
    signed = {**content, "entity": entity, "entity_id": entity_id, **signer_fields(signer, meaning, at)}
    actor = f"user:{signer.id}"
    sig = create_signature(
        session=session,
        entity=entity,
        entity_id=entity_id,
        signer=signer,
        meaning=meaning,
        content=signed,
        actor=actor,
        reason=reason,
        source=source,
        at=at,
        auth_method=auth_method,
    )
    append_audit(
        AuditEntry(
            actor=actor,
            action=action,
            entity=entity,
            entity_id=entity_id[:64],
            field="signed_content",
            new_value=canonical_json(signed).decode("utf-8"),
            reason=reason,
            record_sha256=sig.record_sha256,
            source=source,
        ),
        session=session,
        at=at,
    )
    return sig


def verify_record_signature(sig: SignatureRecord, *, session: Session) -> bool:
    """True when the signature still matches the signed content kept in its audit row."""
    rows = session.scalars(
        select(AuditRecord).where(
            AuditRecord.entity == sig.entity,
            AuditRecord.entity_id == sig.entity_id,
            AuditRecord.record_sha256 == sig.record_sha256,
            AuditRecord.field == "signed_content",
        )
    )
    return any_row_binds(sig, rows)


def any_row_binds(sig: SignatureRecord, rows: Iterable[AuditRecord]) -> bool:
    """True when one of ``rows`` keeps content that hashes to the signature's ``record_sha256`` and
    names the same signer, meaning, printed name and time (the check every kept-content signature
    shares: CAPA and alarm signatures here, model acceptance and promotion in their modules)."""
    for row in rows:
        try:
            content = json.loads(row.new_value or "")
        except ValueError:
            continue
        if not isinstance(content, dict) or content_sha256(content) != sig.record_sha256:
            continue
        if (
            content.get("signer_user_id") == sig.signer_user_id
            and content.get("meaning") == sig.meaning
            and content.get("printed_name") == sig.printed_name
            and content.get("signed_at") == format_utc(sig.signed_at)
        ):
            return True
    return False
