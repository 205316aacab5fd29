"""Idempotency keys of signed requests: a replayed request signs nothing new.

The first use of a key (per user) appends an audit row ``signature.request`` whose ``entity_id``
is the SHA-256 of ``<user id>:<key>`` and whose ``new_value`` names what was signed; a later
request with the same key finds that row, so the caller returns the original result instead of
signing again. Checked under the writer lock, inside the signing transaction.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from vinspect.errors import StateError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.db import lock_writers
from vinspect.store.tables import AuditRecord

__all__ = ["first_use", "seen_before"]

_ENTITY = "signed_request"


def _entity_id(user_id: int, key: str) -> str:
    return hashlib.sha256(f"{user_id}:{key}".encode()).hexdigest()


def seen_before(*, session: Session, user_id: int, key: str, target: str) -> bool:
    """True when ``key`` already signed ``target`` for this user (a replay).

    Raises:
        StateError: the key was used for a different request.
    """
    used = session.scalar(
        select(AuditRecord.new_value)
        .where(AuditRecord.entity == _ENTITY, AuditRecord.entity_id == _entity_id(user_id, key))
        .limit(1)
    )
    if used is None:
        return False
    if used != target:
        raise StateError(f"idempotency key already used for another signed request ({used})")
    return True


def first_use(*, session: Session, user_id: int, key: str, target: str, source: str | None = None) -> bool:
    """Record the key (writer lock held); False when it was seen before (nothing may be signed)."""
    lock_writers(session)
    if seen_before(session=session, user_id=user_id, key=key, target=target):
        return False
    append_audit(
        AuditEntry(
            actor=f"user:{user_id}",
            action="signature.request",
            entity=_ENTITY,
            entity_id=_entity_id(user_id, key),
            new_value=target,
            source=source,
        ),
        session=session,
    )
    return True
