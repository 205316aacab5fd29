"""Model activation records: who put which model version on the line, and the risk they accepted.

A bundle whose stated operating point misses its targets (good and defective parts overlap, or
the escape rate is unknown) runs only after a quality engineer accepts the stated rates. The
acceptance is an electronic signature (meaning ``MODEL_PROMOTION``) bound to the SHA-256 of the
canonical content it covers: model name, version and sha256, the warnings and rates shown, the
reason, the signer and the time. The content itself is kept in the ``model.risk_accepted`` audit
row, so :func:`verify_model_signature` can re-check the binding; every activation through the
app or the CLI adds a ``model.activate`` row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vinspect.errors import StateError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, format_utc
from vinspect.store.db import lock_writers
from vinspect.store.ncr import SIGNING_ROLES, Role, SignatureMeaning
from vinspect.store.signed_records import any_row_binds, create_signature
from vinspect.store.tables import AuditRecord, SignatureRecord
from vinspect.store.users import get_user

__all__ = ["ModelActivation", "record_model_activation", "verify_model_signature"]

ACCEPTED_ACTION = "model.risk_accepted"
# audit rows that keep the content a model signature binds (risk acceptance here; criteria signed
# in the app, promotion and rollback signatures in vinspect.store.promotion)
SIGNED_CONTENT_ACTIONS = (ACCEPTED_ACTION, "model.criteria", "model.promotion_signed", "model.rollback")


def _entity_id(name: str, version: str) -> str:
    return f"{name}@{version}"[:64]


class ModelActivation:
    """What an activation record says (plain values for callers outside the store)."""

    def __init__(self, *, entity_id: str, signature_id: int | None, record_sha256: str | None) -> None:
        self.entity_id = entity_id
        self.signature_id = signature_id
        self.record_sha256 = record_sha256


def record_model_activation(
    *,
    session: Session,
    user_id: int | None,
    actor: str,
    name: str,
    version: str,
    sha256: str,
    warnings: Sequence[str],
    rates: Mapping[str, Any] | None,
    reason: str | None,
    source: str | None,
    accept_risk: bool,
    auth_method: str = "password",
    at: datetime | None = None,
) -> ModelActivation:
    """Audit an activation inside the caller's transaction; sign the accepted risk when there is one.

    Args:
        user_id: the signer (required when ``warnings`` is not empty).
        actor: the audit actor (``user:<id>`` or ``cli:<login>``).
        warnings: the bundle's plain-words warnings; not empty means a signed acceptance is needed.
        rates: the operating point shown to the signer (``OperatingPoint`` as JSON), or None.
        accept_risk: the user explicitly accepted the stated rates.

    Raises:
        StateError: warnings without an explicit acceptance, a missing reason, or a signer who
            may not sign a model promotion (only quality engineers may).
    """
    lock_writers(session)
    now = at or datetime.now(UTC)
    entity_id = _entity_id(name, version)
    sig: SignatureRecord | None = None
    if warnings:
        if not accept_risk:
            raise StateError(f"{name} {version}: activation needs an explicit acceptance of the stated rates")
        if reason is None or not reason.strip():
            raise StateError("accepting a model's risk needs a reason")
        signer = get_user(session=session, user_id=user_id) if user_id is not None else None
        if signer is None or not signer.active:
            raise StateError("accepting a model's risk needs an active signing user")
        if Role(signer.role) not in SIGNING_ROLES[SignatureMeaning.MODEL_PROMOTION]:
            raise StateError(
                f"{signer.username} ({signer.role}) may not sign {SignatureMeaning.MODEL_PROMOTION}: "
                "a quality engineer accepts a model's risk"
            )
        content = {
            "model": name,
            "version": version,
            "sha256": sha256,
            "warnings": list(warnings),
            "rates": dict(rates) if rates is not None else None,
            "reason": reason,
            "meaning": str(SignatureMeaning.MODEL_PROMOTION),
            "signer_user_id": signer.id,
            "printed_name": signer.display_name,
            "signed_at": format_utc(now),
        }
        sig = create_signature(
            session=session,
            entity="model",
            entity_id=entity_id,
            signer=signer,
            meaning=SignatureMeaning.MODEL_PROMOTION,
            content=content,
            actor=actor,
            reason=reason,
            source=source,
            at=now,
            auth_method=auth_method,
        )
        append_audit(
            AuditEntry(
                actor=actor,
                action=ACCEPTED_ACTION,
                entity="model",
                entity_id=entity_id,
                field="accepted_rates",
                new_value=canonical_json(content).decode("utf-8"),
                reason=reason,
                record_sha256=sig.record_sha256,
                source=source,
            ),
            session=session,
            at=now,
        )
    append_audit(
        AuditEntry(
            actor=actor,
            action="model.activate",
            entity="model",
            entity_id=entity_id,
            field="sha256",
            new_value=sha256,
            reason=reason,
            source=source,
        ),
        session=session,
        at=now,
    )
    return ModelActivation(
        entity_id=entity_id,
        signature_id=None if sig is None else sig.id,
        record_sha256=None if sig is None else sig.record_sha256,
    )


def verify_model_signature(sig: SignatureRecord, *, session: Session) -> bool:
    """True when a model signature still matches the accepted content kept in its audit row."""
    rows = session.scalars(
        select(AuditRecord).where(
            AuditRecord.action.in_(SIGNED_CONTENT_ACTIONS),
            AuditRecord.entity == "model",
            AuditRecord.entity_id == sig.entity_id,
            AuditRecord.record_sha256 == sig.record_sha256,
        )
    )
    return any_row_binds(sig, rows)
