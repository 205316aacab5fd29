"""NCR lifecycle steps (quality-domain §4–§7), each an appended, audited, signed event.

Every step loads the NCR's latest event (its status), checks the transition, optionally signs,
inserts one ``NcrEvent`` with revision + 1, appends its audit link and queues the new revision
for the QMS. A signature binds to the SHA-256 of the canonical signed content: the NCR's
original content hash plus the event it signs (kind, statuses, time, actor, reason, payload,
meaning, signer), so any later change of either makes :func:`verify_signature` fail.
Authentication (password re-entry at every signing) is the web layer's job; this layer checks
that the signer exists, is active and holds a role allowed for the meaning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from vinspect.errors import StateError, StoreError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, content_sha256, format_utc
from vinspect.store.content import event_sha256, ncr_sha256, signature_sha256
from vinspect.store.db import lock_writers
from vinspect.store.document import build_document
from vinspect.store.model_acceptance import verify_model_signature
from vinspect.store.ncr import (
    CORRECTABLE_FIELDS,
    LINK_FIELDS,
    SIGNING_ROLES,
    CloseInput,
    ContainmentInput,
    CorrectionInput,
    DispositionCode,
    DispositionInput,
    NcrRef,
    NcrStatus,
    ReviewDecision,
    ReviewInput,
    Role,
    SignatureMeaning,
)
from vinspect.store.outbox import enqueue
from vinspect.store.signed_records import RECORD_ENTITIES, verify_record_signature
from vinspect.store.tables import NcrEvent, NcrRecord, SignatureRecord, UserRecord

__all__ = [
    "TWO_PERSON_DISPOSITIONS",
    "add_correction",
    "add_disposition",
    "add_links",
    "add_review",
    "add_signature",
    "check_disposition",
    "check_review",
    "claim_ncr",
    "close_ncr",
    "record_containment",
    "supersede_review",
    "verify_signature",
    "void_duplicate",
]

S = NcrStatus
_ANY = frozenset(NcrStatus)
_REVIEWERS = frozenset({Role.REVIEWER, Role.QUALITY_ENGINEER})
_REVIEW_KINDS = ("REVIEWED", "SUPERSEDED")  # a supersede replaces the standing review (both signed)
# Dispositions that release a nonconforming part for use: the signer may not be the person whose
# review the disposition rests on (two-person rule; plants set theirs with VINSPECT_TWO_PERSON_DISPOSITIONS).
TWO_PERSON_DISPOSITIONS: frozenset[DispositionCode] = frozenset(
    {DispositionCode.USE_AS_IS, DispositionCode.REPAIR, DispositionCode.REGRADE}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Change:
    kind: str
    to_status: NcrStatus | None  # None keeps the current status
    actor: str
    allowed_from: Collection[NcrStatus]
    reason: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    signer: UserRecord | None = None
    meaning: SignatureMeaning | None = None
    auth_method: str = "password"
    check: Callable[[NcrRecord], None] | None = None  # runs under the writer lock, on the loaded NCR


def _user(session: Session, user_id: int, *, roles: Collection[Role] | None = None) -> UserRecord:
    user = session.get(UserRecord, user_id)
    if user is None or not user.active:
        raise StateError(f"user {user_id} does not exist or is deactivated")
    if roles is not None and Role(user.role) not in roles:
        raise StateError(f"user {user.username} ({user.role}) may not do this")
    return user


def _reason(text: str | None, what: str) -> str:
    if text is None or not text.strip():
        raise StateError(f"{what} needs a reason")
    return text


def _load(session: Session, ncr_uuid: str) -> NcrRecord:
    ncr = session.scalar(
        select(NcrRecord)
        .where(NcrRecord.ncr_uuid == ncr_uuid)
        .options(selectinload(NcrRecord.evidence), selectinload(NcrRecord.events))
    )
    if ncr is None or not ncr.events:
        raise StoreError(f"NCR {ncr_uuid} not found")
    return ncr


def signed_content(event: NcrEvent, ncr: NcrRecord, *, signature: SignatureRecord) -> dict[str, object]:
    """What a signature on ``event`` covers (hashed into ``record_sha256``)."""
    return {
        "ncr_uuid": ncr.ncr_uuid,
        "ncr_sha256": ncr_sha256(ncr, ncr.evidence),
        "revision": event.revision,
        "kind": event.kind,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "at": format_utc(event.at),
        "actor": event.actor,
        "reason": event.reason,
        "payload": json.loads(event.payload),
        "meaning": signature.meaning,
        "signer_user_id": signature.signer_user_id,
        "signed_at": format_utc(signature.signed_at),
    }


def _sign(session: Session, *, ncr: NcrRecord, event: NcrEvent, change: _Change) -> SignatureRecord:
    assert change.signer is not None and change.meaning is not None
    if Role(change.signer.role) not in SIGNING_ROLES[change.meaning]:
        raise StateError(f"{change.signer.username} ({change.signer.role}) may not sign {change.meaning}")
    sig = SignatureRecord(
        entity="ncr",
        entity_id=ncr.ncr_uuid,
        signer_user_id=change.signer.id,
        printed_name=change.signer.display_name,
        meaning=str(change.meaning),
        signed_at=event.at,
        record_sha256="",
        auth_method=change.auth_method,
    )
    sig.record_sha256 = content_sha256(signed_content(event, ncr, signature=sig))
    session.add(sig)
    session.flush()
    append_audit(
        AuditEntry(
            actor=change.actor,
            action="signature.create",
            entity="signature",
            entity_id=str(sig.id),
            field="meaning",
            new_value=sig.meaning,
            reason=change.reason,
            record_sha256=signature_sha256(sig),
        ),
        session=session,
        at=event.at,
    )
    return sig


def _append(ncr_uuid: str, change: _Change, *, session: Session, at: datetime | None) -> NcrRef:
    lock_writers(session)
    ncr = _load(session, ncr_uuid)
    latest = ncr.events[-1]
    current = NcrStatus(latest.to_status)
    if current not in change.allowed_from:
        raise StateError(f"NCR {ncr.ncr_number}: {change.kind} not allowed in status {current}")
    if change.check is not None:
        change.check(ncr)
    event = NcrEvent(
        ncr_id=ncr.id,
        revision=latest.revision + 1,
        kind=change.kind,
        from_status=str(current),
        to_status=str(change.to_status or current),
        at=at or datetime.now(UTC),
        actor=change.actor,
        reason=change.reason,
        payload=canonical_json(dict(change.payload)).decode("utf-8"),
        signature_id=None,
    )
    if change.signer is not None:
        event.signature_id = _sign(session, ncr=ncr, event=event, change=change).id
    session.add(event)
    session.flush()
    append_audit(
        AuditEntry(
            actor=change.actor,
            action=f"ncr.{change.kind.lower()}",
            entity="ncr_event",
            entity_id=str(event.id),
            field="status",
            old_value=event.from_status,
            new_value=event.to_status,
            reason=change.reason,
            record_sha256=event_sha256(event),
        ),
        session=session,
        at=event.at,
    )
    set_committed_value(ncr, "events", [*ncr.events, event])
    signatures = session.scalars(
        select(SignatureRecord)
        .where(SignatureRecord.entity == "ncr", SignatureRecord.entity_id == ncr.ncr_uuid)
        .order_by(SignatureRecord.id)
    )
    enqueue(build_document(ncr, signatures=list(signatures)), session=session, now=event.at)
    return NcrRef(ncr_uuid=ncr.ncr_uuid, ncr_number=ncr.ncr_number, revision=event.revision)


def record_containment(
    ncr_uuid: str, *, session: Session, containment: ContainmentInput, at: datetime | None = None
) -> NcrRef:
    """OPEN -> CONTAINED (or a containment update while CONTAINED)."""
    payload = {
        "action": containment.action,
        "reject_actuation_confirmed": containment.reject_actuation_confirmed,
        "location": containment.location,
    }
    return _append(
        ncr_uuid,
        _Change(
            kind="CONTAINED",
            to_status=S.CONTAINED,
            actor=containment.actor,
            allowed_from={S.OPEN, S.CONTAINED},
            reason=containment.reason,
            payload=payload,
        ),
        session=session,
        at=at,
    )


def claim_ncr(ncr_uuid: str, *, session: Session, user_id: int, at: datetime | None = None) -> NcrRef:
    """A reviewer takes the NCR: OPEN/CONTAINED -> UNDER_REVIEW."""
    user = _user(session, user_id, roles=_REVIEWERS)
    return _append(
        ncr_uuid,
        _Change(kind="CLAIMED", to_status=S.UNDER_REVIEW, actor=f"user:{user.id}", allowed_from={S.OPEN, S.CONTAINED}),
        session=session,
        at=at,
    )


def _review_payload(review: ReviewInput) -> dict[str, Any]:
    return {
        "decision": str(review.decision),
        "defect_code": review.defect_code,
        "investigation_required": review.investigation_required,
        "investigation_notes": review.investigation_notes,
        "notify": list(review.notify),
        "mrb": review.decision is ReviewDecision.NEEDS_MRB,
    }


def _one_review_per_claim(user: UserRecord) -> Callable[[NcrRecord], None]:
    """The reviewer holds the latest claim and has not yet signed a review under it."""

    def check(ncr: NcrRecord) -> None:
        claims = [e for e in ncr.events if e.kind == "CLAIMED"]
        if not claims:
            raise StateError(f"NCR {ncr.ncr_number}: not claimed")
        claim = claims[-1]
        if claim.actor != f"user:{user.id}":
            raise StateError(f"NCR {ncr.ncr_number}: claimed by {claim.actor}, not by {user.username}")
        if any(e.kind in _REVIEW_KINDS and e.revision > claim.revision for e in ncr.events):
            raise StateError(
                f"NCR {ncr.ncr_number}: already reviewed under this claim; changing a signed "
                "review needs a signed supersede by a quality engineer"
            )

    return check


def _gate(
    session: Session,
    ncr_uuid: str,
    allowed_from: Collection[NcrStatus],
    what: str,
    check: Callable[[NcrRecord], None] | None,
) -> None:
    ncr = _load(session, ncr_uuid)
    current = NcrStatus(ncr.events[-1].to_status)
    if current not in allowed_from:
        raise StateError(f"NCR {ncr.ncr_number}: {what} not allowed in status {current}")
    if check is not None:
        check(ncr)


def check_review(ncr_uuid: str, *, session: Session, user_id: int, supersede: bool = False) -> None:
    """Raise what :func:`add_review` (after a claim when OPEN/CONTAINED) or :func:`supersede_review` would.

    A read-only pre-check, so that the web layer answers a state conflict before it checks a password.
    """
    if supersede:
        _user(session, user_id, roles={Role.QUALITY_ENGINEER})
        _gate(session, ncr_uuid, {S.UNDER_REVIEW}, "SUPERSEDED", _has_review)
        return
    user = _user(session, user_id, roles=_REVIEWERS)
    ncr = _load(session, ncr_uuid)
    if NcrStatus(ncr.events[-1].to_status) not in (S.OPEN, S.CONTAINED):
        _gate(session, ncr_uuid, {S.UNDER_REVIEW}, "REVIEWED", _one_review_per_claim(user))


def check_disposition(
    ncr_uuid: str,
    *,
    session: Session,
    user_id: int,
    code: DispositionCode,
    two_person: Collection[str] = TWO_PERSON_DISPOSITIONS,
) -> None:
    """Raise what :func:`add_disposition` would for this signer and code (read-only pre-check)."""
    user = _user(session, user_id, roles={Role.QUALITY_ENGINEER})
    _gate(session, ncr_uuid, {S.UNDER_REVIEW}, "DISPOSITIONED", _disposable(user, code, two_person))


def add_review(
    ncr_uuid: str, *, session: Session, review: ReviewInput, auth_method: str = "password", at: datetime | None = None
) -> NcrRef:
    """Adjudicate (signed, meaning REVIEW): FALSE_REJECT voids, the others stay UNDER_REVIEW.

    One review per claim, by the claimer; a later change is :func:`supersede_review`.
    """
    user = _user(session, review.user_id, roles=_REVIEWERS)
    to = S.VOID if review.decision is ReviewDecision.FALSE_REJECT else S.UNDER_REVIEW
    return _append(
        ncr_uuid,
        _Change(
            kind="REVIEWED",
            to_status=to,
            actor=f"user:{user.id}",
            allowed_from={S.UNDER_REVIEW},
            reason=_reason(review.reason, "a review"),
            payload=_review_payload(review),
            signer=user,
            meaning=SignatureMeaning.REVIEW,
            auth_method=auth_method,
            check=_one_review_per_claim(user),
        ),
        session=session,
        at=at,
    )


def _has_review(ncr: NcrRecord) -> None:
    if not any(e.kind in _REVIEW_KINDS for e in ncr.events):
        raise StateError(f"NCR {ncr.ncr_number}: no signed review to supersede")


def supersede_review(
    ncr_uuid: str, *, session: Session, review: ReviewInput, auth_method: str = "password", at: datetime | None = None
) -> NcrRef:
    """Replace the standing signed review (e.g. the MRB's outcome): a quality engineer, a reason, signed.

    Appends a SUPERSEDED event (meaning REVIEW) whose decision becomes the NCR's review; the earlier
    review and its signature stay in the history unchanged. Only while UNDER_REVIEW.
    """
    user = _user(session, review.user_id, roles={Role.QUALITY_ENGINEER})
    to = S.VOID if review.decision is ReviewDecision.FALSE_REJECT else S.UNDER_REVIEW
    return _append(
        ncr_uuid,
        _Change(
            kind="SUPERSEDED",
            to_status=to,
            actor=f"user:{user.id}",
            allowed_from={S.UNDER_REVIEW},
            reason=_reason(review.reason, "superseding a review"),
            payload=_review_payload(review),
            signer=user,
            meaning=SignatureMeaning.REVIEW,
            auth_method=auth_method,
            check=_has_review,
        ),
        session=session,
        at=at,
    )


def _latest_review_event(ncr: NcrRecord) -> NcrEvent | None:
    reviews = [e for e in ncr.events if e.kind in _REVIEW_KINDS]
    return reviews[-1] if reviews else None


def _disposable(user: UserRecord, code: DispositionCode, two_person: Collection[str]) -> Callable[[NcrRecord], None]:
    def check(ncr: NcrRecord) -> None:
        review = _latest_review_event(ncr)
        decision = None if review is None else json.loads(review.payload)["decision"]
        if review is None or decision not in (ReviewDecision.CONFIRMED_DEFECT, ReviewDecision.NEEDS_MRB):
            raise StateError(f"NCR {ncr.ncr_number}: dispositions follow a CONFIRMED_DEFECT or MRB review")
        if str(code) in two_person and review.actor == f"user:{user.id}":
            raise StateError(
                f"NCR {ncr.ncr_number}: {code} releases the part, so it needs a second person: "
                f"{user.username} signed the review it rests on (two-person rule)"
            )

    return check


def add_disposition(
    ncr_uuid: str,
    *,
    session: Session,
    disposition: DispositionInput,
    auth_method: str = "password",
    at: datetime | None = None,
    two_person: Collection[str] = TWO_PERSON_DISPOSITIONS,
) -> NcrRef:
    """UNDER_REVIEW -> DISPOSITIONED (signed, meaning DISPOSITION) after a confirming review.

    Codes in ``two_person`` may not be signed by the signer of the review they rest on.
    """
    user = _user(session, disposition.user_id, roles={Role.QUALITY_ENGINEER})
    needs_reason = disposition.code in (DispositionCode.USE_AS_IS, DispositionCode.REPAIR)
    justification = (
        _reason(disposition.justification, f"{disposition.code}") if needs_reason else disposition.justification
    )
    payload = {
        "code": str(disposition.code),
        "quantity": disposition.quantity,
        "justification": justification,
        "authority": {"user_id": user.id, "role": user.role},
        "design_authority_approval_ref": disposition.design_authority_approval_ref,
        "customer_concession_ref": disposition.customer_concession_ref,
        "rework_instruction_ref": disposition.rework_instruction_ref,
        "reinspection_result": None,
        "scrap_verified_unusable": None,
    }
    return _append(
        ncr_uuid,
        _Change(
            kind="DISPOSITIONED",
            to_status=S.DISPOSITIONED,
            actor=f"user:{user.id}",
            allowed_from={S.UNDER_REVIEW},
            reason=justification or None,
            payload=payload,
            signer=user,
            meaning=SignatureMeaning.DISPOSITION,
            auth_method=auth_method,
            check=_disposable(user, disposition.code, two_person),
        ),
        session=session,
        at=at,
    )


def _close_gates(code: str, close: CloseInput) -> None:
    if code in (DispositionCode.REWORK, DispositionCode.REPAIR) and close.reinspection_result != "PASS":
        raise StateError(f"{code} closes only with reinspection_result PASS")
    if code == DispositionCode.SCRAP and close.scrap_verified_unusable is not True:
        raise StateError("SCRAP closes only once the part is verified unusable")


def close_ncr(
    ncr_uuid: str, *, session: Session, close: CloseInput, auth_method: str = "password", at: datetime | None = None
) -> NcrRef:
    """DISPOSITIONED -> CLOSED (signed, meaning APPROVAL) once the §3 gates are satisfied."""
    user = _user(session, close.user_id, roles={Role.QUALITY_ENGINEER})
    ncr = _load(session, ncr_uuid)
    dispositions = [e for e in ncr.events if e.kind == "DISPOSITIONED"]
    if dispositions:
        _close_gates(str(json.loads(dispositions[-1].payload)["code"]), close)
    payload = {
        "reinspection_result": close.reinspection_result,
        "scrap_verified_unusable": close.scrap_verified_unusable,
    }
    return _append(
        ncr_uuid,
        _Change(
            kind="CLOSED",
            to_status=S.CLOSED,
            actor=f"user:{user.id}",
            allowed_from={S.DISPOSITIONED},
            reason=_reason(close.reason, "closing"),
            payload=payload,
            signer=user,
            meaning=SignatureMeaning.APPROVAL,
            auth_method=auth_method,
        ),
        session=session,
        at=at,
    )


def void_duplicate(
    ncr_uuid: str,
    *,
    session: Session,
    user_id: int,
    reason: str,
    auth_method: str = "password",
    at: datetime | None = None,
) -> NcrRef:
    """OPEN/CONTAINED -> VOID for a duplicate record (quality engineer, signed APPROVAL)."""
    user = _user(session, user_id, roles={Role.QUALITY_ENGINEER})
    return _append(
        ncr_uuid,
        _Change(
            kind="VOIDED",
            to_status=S.VOID,
            actor=f"user:{user.id}",
            allowed_from={S.OPEN, S.CONTAINED},
            reason=_reason(reason, "voiding"),
            payload={"cause": "DUPLICATE"},
            signer=user,
            meaning=SignatureMeaning.APPROVAL,
            auth_method=auth_method,
        ),
        session=session,
        at=at,
    )


def add_correction(
    ncr_uuid: str,
    *,
    session: Session,
    correction: CorrectionInput,
    auth_method: str = "password",
    at: datetime | None = None,
) -> NcrRef:
    """Correct an original field by an appended, signed event; the original stays as it was."""
    if correction.field not in CORRECTABLE_FIELDS:
        raise StateError(f"field {correction.field!r} cannot be corrected")
    user = _user(session, correction.user_id)
    original = getattr(_load(session, ncr_uuid), correction.field)
    payload = {"field": correction.field, "original": original, "value": correction.value}
    return _append(
        ncr_uuid,
        _Change(
            kind="CORRECTED",
            to_status=None,
            actor=f"user:{user.id}",
            allowed_from=_ANY,
            reason=_reason(correction.reason, "a correction"),
            payload=payload,
            signer=user,
            meaning=SignatureMeaning.AUTHORSHIP,
            auth_method=auth_method,
        ),
        session=session,
        at=at,
    )


def add_links(
    ncr_uuid: str, *, session: Session, user_id: int, links: Mapping[str, str], reason: str, at: datetime | None = None
) -> NcrRef:
    """Link CAPA / 8D / SCAR / cause / corrective-action references (quality engineer)."""
    unknown = set(links) - LINK_FIELDS
    if unknown or not links:
        raise StateError(f"link fields must be among {sorted(LINK_FIELDS)}, got {sorted(links)}")
    user = _user(session, user_id, roles={Role.QUALITY_ENGINEER})
    return _append(
        ncr_uuid,
        _Change(
            kind="LINKED",
            to_status=None,
            actor=f"user:{user.id}",
            allowed_from=_ANY,
            reason=_reason(reason, "linking"),
            payload=dict(links),
        ),
        session=session,
        at=at,
    )


def add_signature(
    ncr_uuid: str,
    *,
    session: Session,
    user_id: int,
    meaning: SignatureMeaning,
    reason: str | None = None,
    auth_method: str = "password",
    at: datetime | None = None,
) -> NcrRef:
    """Sign the NCR as it stands (e.g. AUTHORSHIP, a second REVIEW) as a SIGNED event."""
    user = _user(session, user_id)
    return _append(
        ncr_uuid,
        _Change(
            kind="SIGNED",
            to_status=None,
            actor=f"user:{user.id}",
            allowed_from=_ANY,
            reason=reason,
            signer=user,
            meaning=meaning,
            auth_method=auth_method,
        ),
        session=session,
        at=at,
    )


def verify_signature(signature_id: int, *, session: Session) -> bool:
    """True when the signature still matches the content it signed."""
    sig = session.get(SignatureRecord, signature_id)
    if sig is not None and sig.entity == "model":
        return verify_model_signature(sig, session=session)
    if sig is not None and sig.entity in RECORD_ENTITIES:
        return verify_record_signature(sig, session=session)
    event = session.scalar(select(NcrEvent).where(NcrEvent.signature_id == signature_id))
    if sig is None or event is None:
        return False
    ncr = session.scalar(
        select(NcrRecord).where(NcrRecord.id == event.ncr_id).options(selectinload(NcrRecord.evidence))
    )
    if ncr is None or ncr.ncr_uuid != sig.entity_id:
        return False
    return content_sha256(signed_content(event, ncr, signature=sig)) == sig.record_sha256
