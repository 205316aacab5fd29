"""Model promotion under signed control: criteria first, then evidence, then two signatures.

The record of a candidate (entity ``model``, id ``name@version``) is a sequence of audit rows,
so it shares the hash chain (and its key) with every other record:

1. ``model.criteria``: the acceptance criteria (:class:`Criteria`) and who trained the model,
   fixed once, before any evaluation;
2. ``model.evaluation``: the evidence (:class:`Evaluation`: the frozen-set comparison, golden
   self-test), refused unless criteria were fixed first; a later evaluation replaces an earlier
   one and invalidates every signature given on the earlier one;
3. ``model.promotion_signed``: an e-signature (meaning ``MODEL_PROMOTION``) bound to the model's
   sha256 and the hashes of the criteria and of the evaluation it saw. A signer must be an
   active quality engineer or admin, may sign once, and may not be the person who trained it;
4. ``model.promote``: only with every criterion met and two valid signatures by two different
   people on the current evaluation; it names the version it replaces, so
5. ``model.rollback`` (one signed action by a quality engineer or admin) can put the previous
   version back.

Who trained the candidate is the ``trained_by`` the criteria row records (the bundle's
``training.trained_by`` by default). It is a declared identity: the control it supports is that
the two signers are not that person, and both of them sign with their password.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vinspect.errors import StateError
from vinspect.models.promotion_criteria import Criteria, Evaluation, failed_criteria
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, content_sha256, format_utc
from vinspect.store.db import lock_writers
from vinspect.store.ncr import Role, SignatureMeaning
from vinspect.store.signed_records import create_signature, signer_fields
from vinspect.store.tables import AuditRecord, SignatureRecord
from vinspect.store.users import get_user

__all__ = [
    "NO_ROLLBACK_TARGET",
    "PROMOTION_ROLES",
    "Candidate",
    "candidate_state",
    "fix_criteria",
    "model_history",
    "promote",
    "record_evaluation",
    "record_rollback",
    "rollback_target",
    "sign_promotion",
    "under_promotion_control",
]

PROMOTION_ROLES = frozenset({Role.QUALITY_ENGINEER, Role.ADMIN})
CRITERIA = "model.criteria"
EVALUATION = "model.evaluation"
SIGNED = "model.promotion_signed"
PROMOTED = "model.promote"
ROLLED_BACK = "model.rollback"


def entity_id(name: str, version: str) -> str:
    """The audit entity id of a model version."""
    return f"{name}@{version}"[:64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """Where a candidate stands (read back from its audit rows)."""

    name: str
    version: str
    sha256: str | None
    trained_by: str | None
    criteria: Criteria | None
    criteria_sha256: str | None
    evaluation: Evaluation | None
    evaluation_sha256: str | None
    signers: tuple[str, ...]  # printed names of valid signatures on the current evaluation
    signer_ids: tuple[int, ...]
    failures: tuple[str, ...]  # criteria not met (empty when met)
    promoted: bool

    @property
    def blockers(self) -> list[str]:
        """Everything that stands between the candidate and promotion, in plain words."""
        out = []
        if self.criteria is None:
            out.append("no acceptance criteria fixed (vinspect models criteria, or the Models page)")
        if self.evaluation is None:
            out.append("not evaluated after its criteria were fixed (vinspect models evaluate, or the Models page)")
        out.extend(self.failures)
        if len(self.signers) < 2:
            out.append(f"{len(self.signers)} of 2 promotion signatures")
        return out


def _rows(session: Session, name: str, version: str, action: str) -> list[AuditRecord]:
    return list(
        session.scalars(
            select(AuditRecord)
            .where(
                AuditRecord.entity == "model",
                AuditRecord.entity_id == entity_id(name, version),
                AuditRecord.action == action,
            )
            .order_by(AuditRecord.seq)
        )
    )


def _content(row: AuditRecord) -> dict[str, Any]:
    try:
        content = json.loads(row.new_value or "")
    except ValueError as exc:
        raise StateError(f"audit row {row.seq}: unreadable {row.action} content") from exc
    if not isinstance(content, dict) or content_sha256(content) != row.record_sha256:
        raise StateError(f"audit row {row.seq}: {row.action} content does not match its hash (edited?)")
    return content


def _append(
    session: Session,
    *,
    actor: str,
    action: str,
    name: str,
    version: str,
    content: dict[str, Any],
    reason: str | None,
    at: datetime,
    field: str,
    old_value: str | None = None,
) -> str:
    digest = content_sha256(content)
    append_audit(
        AuditEntry(
            actor=actor,
            action=action,
            entity="model",
            entity_id=entity_id(name, version),
            field=field,
            old_value=old_value,
            new_value=canonical_json(content).decode("utf-8"),
            reason=reason,
            record_sha256=digest,
            source=actor[:128],
        ),
        session=session,
        at=at,
    )
    return digest


def fix_criteria(
    *,
    session: Session,
    name: str,
    version: str,
    sha256: str,
    trained_by: str | None,
    criteria: Criteria,
    actor: str,
    reason: str,
    at: datetime | None = None,
    signer_user_id: int | None = None,
    auth_method: str = "password",
) -> str:
    """Record the criteria (once); returns their hash.

    With ``signer_user_id`` (the reviewer app, after password re-entry) the criteria are also an
    e-signature (meaning ``MODEL_PROMOTION``) by that quality engineer or admin, bound to the
    criteria content the row keeps.

    Raises:
        StateError: an evaluation already recorded, criteria already fixed, no reason, or a
            signer who may not sign.
    """
    lock_writers(session)
    if _rows(session, name, version, EVALUATION):
        raise StateError(
            f"{name} {version}: already evaluated; criteria are fixed before the evidence is seen "
            "and cannot change after it"
        )
    if _rows(session, name, version, CRITERIA):
        raise StateError(f"{name} {version}: acceptance criteria are already fixed (they cannot change once set)")
    if not reason.strip():
        raise StateError("fixing acceptance criteria needs a reason")
    when = at or datetime.now(UTC)
    content: dict[str, Any] = {
        "model": name,
        "version": version,
        "sha256": sha256,
        "trained_by": trained_by,
        "criteria": criteria.model_dump(mode="json"),
        "fixed_at": format_utc(when),
    }
    if signer_user_id is not None:
        user = _signer(session, signer_user_id, "acceptance criteria")
        actor = f"user:{user.id}"
        content |= {**signer_fields(user, SignatureMeaning.MODEL_PROMOTION, when), "reason": reason}
        _model_signature(
            session,
            user=user,
            name=name,
            version=version,
            content=content,
            reason=reason,
            at=when,
            auth_method=auth_method,
        )
    return _append(
        session,
        actor=actor,
        action=CRITERIA,
        name=name,
        version=version,
        content=content,
        reason=reason,
        at=when,
        field="criteria",
    )


def record_evaluation(
    *,
    session: Session,
    name: str,
    version: str,
    sha256: str,
    evaluation: Evaluation,
    actor: str,
    at: datetime | None = None,
) -> str:
    """Record the evidence; returns its hash. Signatures on an earlier evaluation stop counting.

    Raises:
        StateError: no criteria fixed yet, or the sha256 differs from the one the criteria name.
    """
    lock_writers(session)
    criteria = _rows(session, name, version, CRITERIA)
    if not criteria:
        raise StateError(f"{name} {version}: fix the acceptance criteria before evaluating (vinspect models criteria)")
    fixed = _content(criteria[-1])
    if fixed["sha256"] != sha256:
        raise StateError(
            f"{name} {version}: the bundle's sha256 {sha256[:12]} is not the one the criteria were "
            f"fixed for ({str(fixed['sha256'])[:12]})"
        )
    when = at or datetime.now(UTC)
    content = {
        "model": name,
        "version": version,
        "sha256": sha256,
        "criteria_sha256": criteria[-1].record_sha256,
        "evaluation": evaluation.model_dump(mode="json"),
        "evaluated_at": format_utc(when),
    }
    return _append(
        session,
        actor=actor,
        action=EVALUATION,
        name=name,
        version=version,
        content=content,
        reason=None,
        at=when,
        field="evaluation",
    )


def under_promotion_control(*, session: Session, name: str, version: str) -> bool:
    """True when criteria were fixed for the version: it goes on the line by promotion, not activation."""
    return bool(_rows(session, name, version, CRITERIA))


def candidate_state(*, session: Session, name: str, version: str) -> Candidate:
    """Criteria, evidence, valid signatures and unmet criteria of one version."""
    crit_rows, ev_rows = _rows(session, name, version, CRITERIA), _rows(session, name, version, EVALUATION)
    fixed = _content(crit_rows[-1]) if crit_rows else None
    ev = _content(ev_rows[-1]) if ev_rows else None
    criteria = None if fixed is None else Criteria.model_validate(fixed["criteria"])
    evaluation = None if ev is None else Evaluation.model_validate(ev["evaluation"])
    ev_sha = None if not ev_rows else ev_rows[-1].record_sha256
    signers: list[str] = []
    seen_order: list[int] = []
    for row in _rows(session, name, version, SIGNED):
        content = _content(row)
        if content.get("evaluation_sha256") != ev_sha or int(content["signer_user_id"]) in seen_order:
            continue
        seen_order.append(int(content["signer_user_id"]))
        signers.append(str(content["printed_name"]))
    failures = [] if criteria is None or evaluation is None else failed_criteria(criteria, evaluation)
    return Candidate(
        name=name,
        version=version,
        sha256=None if fixed is None else str(fixed["sha256"]),
        signer_ids=tuple(seen_order),
        trained_by=None if fixed is None else fixed.get("trained_by"),
        criteria=criteria,
        criteria_sha256=None if not crit_rows else crit_rows[-1].record_sha256,
        evaluation=evaluation,
        evaluation_sha256=ev_sha,
        signers=tuple(signers),
        failures=tuple(failures),
        promoted=bool(_rows(session, name, version, PROMOTED)),
    )


def _signer(session: Session, user_id: int, what: str) -> Any:
    user = get_user(session=session, user_id=user_id)
    if user is None or not user.active:
        raise StateError(f"{what} needs an active signing user")
    if Role(user.role) not in PROMOTION_ROLES:
        raise StateError(f"{user.username} ({user.role}) may not sign {what}: a quality engineer or an admin signs")
    return user


def _model_signature(
    session: Session,
    *,
    user: Any,
    name: str,
    version: str,
    content: dict[str, Any],
    reason: str,
    at: datetime,
    auth_method: str,
) -> SignatureRecord:
    """The signer's MODEL_PROMOTION signature binding ``content`` to the model version (audited)."""
    actor = f"user:{user.id}"
    return create_signature(
        session=session,
        entity="model",
        entity_id=entity_id(name, version),
        signer=user,
        meaning=SignatureMeaning.MODEL_PROMOTION,
        content=content,
        actor=actor,
        reason=reason,
        source=actor[:128],
        at=at,
        auth_method=auth_method,
    )


def _signed_step(
    session: Session,
    *,
    user: Any,
    name: str,
    version: str,
    content: dict[str, Any],
    action: str,
    field: str,
    reason: str,
    at: datetime,
    auth_method: str,
    old_value: str | None = None,
) -> int:
    """Sign ``content`` (meaning MODEL_PROMOTION) and keep it in the model's audit row ``action``;
    returns the signature id."""
    actor = f"user:{user.id}"
    sig = _model_signature(
        session, user=user, name=name, version=version, content=content, reason=reason, at=at, auth_method=auth_method
    )
    _append(
        session,
        actor=actor,
        action=action,
        name=name,
        version=version,
        content=content,
        reason=reason,
        at=at,
        field=field,
        old_value=old_value,
    )
    return sig.id


def sign_promotion(
    *,
    session: Session,
    user_id: int,
    name: str,
    version: str,
    reason: str,
    auth_method: str = "password",
    at: datetime | None = None,
) -> int:
    """Sign the current evaluation of a candidate; returns the signature id.

    Raises:
        StateError: no evaluation, a signer who may not sign, the trainer, or a second signature
            by the same person on the same evidence.
    """
    lock_writers(session)
    if not reason.strip():
        raise StateError("a promotion signature needs a reason")
    user = _signer(session, user_id, "a model promotion")
    state = candidate_state(session=session, name=name, version=version)
    if state.evaluation is None or state.evaluation_sha256 is None:
        raise StateError(f"{name} {version}: nothing to sign yet: " + "; ".join(state.blockers[:2]))
    if state.trained_by is not None and user.username == state.trained_by:
        raise StateError(f"{user.username} trained {name} {version} and may not sign its promotion")
    if user.id in state.signer_ids:
        raise StateError(
            f"{user.username} already signed this evaluation of {name} {version}; "
            "a second signature must come from another person"
        )
    when = at or datetime.now(UTC)
    content = {
        "model": name,
        "version": version,
        "sha256": state.sha256,
        "criteria_sha256": state.criteria_sha256,
        "evaluation_sha256": state.evaluation_sha256,
        "criteria_failed": list(state.failures),
        **signer_fields(user, SignatureMeaning.MODEL_PROMOTION, when),
        "reason": reason,
    }
    return _signed_step(
        session,
        user=user,
        name=name,
        version=version,
        content=content,
        action=SIGNED,
        field="signature",
        reason=reason,
        at=when,
        auth_method=auth_method,
    )


def promote(
    *, session: Session, name: str, version: str, previous: str | None, actor: str, at: datetime | None = None
) -> Candidate:
    """Record the promotion (the caller switches the registry in the same transaction).

    Raises:
        StateError: naming every blocker (criteria, evidence, unmet criteria, signatures).
    """
    lock_writers(session)
    state = candidate_state(session=session, name=name, version=version)
    if state.blockers:
        raise StateError(f"{name} {version} cannot be promoted: " + "; ".join(state.blockers))
    content = {
        "model": name,
        "version": version,
        "sha256": state.sha256,
        "previous": previous,
        "evaluation_sha256": state.evaluation_sha256,
        "signers": list(state.signers),
    }
    _append(
        session,
        actor=actor,
        action=PROMOTED,
        name=name,
        version=version,
        content=content,
        reason=None,
        at=at or datetime.now(UTC),
        field="active_version",
        old_value=previous,
    )
    return state


NO_ROLLBACK_TARGET = (
    "no earlier version recorded to roll back to (it was not put on the line by a promotion; "
    "a version taken off by a rollback comes back only by a new promotion)"
)


def rollback_target(*, session: Session, name: str, current: str) -> str | None:
    """The version ``current`` replaced when its promotion put it on the line (what a rollback goes
    back to); None when ``current`` was not promoted (activated, or itself put back by a rollback).

    Only promotions count: a second rollback never undoes the first, because that would put a
    version the first took off the line back on it with one signature; that takes a new promotion.
    """
    history = model_history(session=session, name=name)
    replaced = [h for h in history if h["action"] == PROMOTED and h["model"] == entity_id(name, current)]
    if not replaced or not replaced[-1]["old_value"]:
        return None
    return str(replaced[-1]["old_value"])


def record_rollback(
    *,
    session: Session,
    user_id: int,
    name: str,
    from_version: str,
    to_version: str,
    sha256: str,
    reason: str,
    auth_method: str = "password",
    at: datetime | None = None,
) -> int:
    """One signed action putting ``to_version`` back; returns the signature id."""
    lock_writers(session)
    if not reason.strip():
        raise StateError("a rollback needs a reason")
    user = _signer(session, user_id, "a model rollback")
    when = at or datetime.now(UTC)
    content = {
        "model": name,
        "from_version": from_version,
        "to_version": to_version,
        "sha256": sha256,
        **signer_fields(user, SignatureMeaning.MODEL_PROMOTION, when),
        "reason": reason,
    }
    return _signed_step(
        session,
        user=user,
        name=name,
        version=to_version,
        content=content,
        action=ROLLED_BACK,
        field="active_version",
        reason=reason,
        at=when,
        auth_method=auth_method,
        old_value=from_version,
    )


def model_history(*, session: Session, name: str) -> list[dict[str, Any]]:
    """Every audit row about any version of ``name``, oldest first (the controlled-document record)."""
    rows = session.scalars(
        select(AuditRecord)
        .where(AuditRecord.entity == "model", AuditRecord.entity_id.like(f"{name}@%"))
        .order_by(AuditRecord.seq)
    )
    out = []
    for r in rows:
        try:
            content: Any = json.loads(r.new_value) if r.new_value and r.new_value[:1] == "{" else r.new_value
        except ValueError:
            content = r.new_value
        out.append(
            {
                "seq": r.seq,
                "at": format_utc(r.at),
                "actor": r.actor,
                "action": r.action,
                "model": r.entity_id,
                "field": r.field,
                "old_value": r.old_value,
                "content": content,
                "reason": r.reason,
                "record_sha256": r.record_sha256,
                "row_hash": r.row_hash,
            }
        )
    return out
