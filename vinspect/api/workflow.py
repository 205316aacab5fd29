"""What the pages and the JSON API do, once: login, signing, adjudication, disposition, users.

Each step re-checks the password where it signs (21 CFR 11.200: a session cookie alone never
signs), writes through the store's repository functions in one transaction, and audits
failures (failed logins, failed signings) in a transaction of their own so they persist even
though the request fails.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException

from vinspect.api.auth import (
    AuthUser,
    check_bootstrap_secret,
    consume_bootstrap_secret,
    password_problems,
)
from vinspect.api.deps import Services, audit
from vinspect.api.schemas import DispositionCreate, ModelActivate, ReviewCreate, SampleReviewCreate, UserCreate
from vinspect.api.security import SessionHandle
from vinspect.errors import ModelError, StateError, StoreError
from vinspect.models.manifest import ModelManifest, read_manifest
from vinspect.models.risk import activation_warnings, stated_rates
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.db import lock_writers, session_scope
from vinspect.store.lifecycle import (
    add_disposition,
    add_review,
    check_disposition,
    check_review,
    claim_ncr,
    supersede_review,
)
from vinspect.store.model_acceptance import record_model_activation
from vinspect.store.ncr import (
    DispositionCode,
    DispositionInput,
    NcrRef,
    NcrStatus,
    ReviewDecision,
    ReviewInput,
    Role,
)
from vinspect.store.promotion import under_promotion_control
from vinspect.store.repository import get_ncr_status
from vinspect.store.requests import first_use, seen_before
from vinspect.store.review_queries import DbSession, active_admin_exists, count_recent, get_inspection, last_unlock
from vinspect.store.users import User, create_user, get_user, set_user_active

__all__ = [
    "activate_model",
    "adjudicate",
    "bootstrap_admin",
    "deactivate_user",
    "dispose",
    "dispute",
    "log_in",
    "log_out",
    "new_user",
    "review_sample",
    "supersede",
]


def invalid(field: str, message: str, *, where: str = "body") -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors (what the OpenAPI document promises)."""
    return HTTPException(status_code=422, detail=[{"loc": [where, field], "msg": message, "type": "value_error"}])


def detail_text(exc: HTTPException) -> str:
    """A one-line message for a page (validation details joined)."""
    if isinstance(exc.detail, list):
        return "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in exc.detail)
    return str(exc.detail)


_FAILURES = ("login.failure", "signature.failure")  # both count toward the account's lockout


def _failures(services: Services, username: str, actions: tuple[str, ...] = _FAILURES) -> int:
    since = datetime.now(UTC) - timedelta(seconds=services.options.lockout_window_s)
    with session_scope(services.store.engine, readonly=True) as session:
        unlocked = last_unlock(session=session, username=username[:64])  # an admin's unlock clears earlier failures
        since = max(since, unlocked) if unlocked is not None else since
        return count_recent(session=session, action=actions, entity="login", entity_id=username[:64], since=since)


def _locked(services: Services, username: str) -> bool:
    return _failures(services, username) >= services.options.lockout_failures


def log_in(services: Services, handle: SessionHandle, *, username: str, password: str, source: str) -> AuthUser:
    """Check the password (lockout after N failures in the window) and rotate the session."""
    name = username[:64]
    if services.limiter.blocked(source, name) or _locked(services, name):
        audit(
            services,
            AuditEntry(actor="anonymous", action="login.locked", entity="login", entity_id=name, source=source),
        )
        raise HTTPException(
            status_code=429,
            detail="too many failed logins: try again later",
            headers={"Retry-After": str(int(services.options.lockout_window_s))},
        )
    with session_scope(services.store.engine, readonly=True) as session:
        user = get_user(session=session, username=name)
    usable = user if user is not None and user.active else None
    if not services.passwords.verify(password, usable.password_hash if usable else None) or usable is None:
        services.limiter.fail(source, name)
        audit(
            services,
            AuditEntry(actor="anonymous", action="login.failure", entity="login", entity_id=name, source=source),
        )
        raise HTTPException(status_code=401, detail="invalid username or password")
    handle.login(user_id=usable.id, username=usable.username)
    audit(
        services,
        AuditEntry(actor=f"user:{usable.id}", action="login.success", entity="login", entity_id=name, source=source),
    )
    return AuthUser(
        user_id=usable.id, username=usable.username, display_name=usable.display_name, role=str(usable.role)
    )


def log_out(services: Services, handle: SessionHandle, *, source: str) -> None:
    """End the session (audited when someone was signed in)."""
    web = handle.current
    if web is not None and web.user_id is not None:
        audit(
            services,
            AuditEntry(
                actor=f"user:{web.user_id}",
                action="logout",
                entity="login",
                entity_id=(web.username or "")[:64],
                source=source,
            ),
        )
    handle.logout()


def check_signing_password(services: Services, user: AuthUser, password: str, *, source: str, what: str) -> None:
    """Re-authenticate for a signature.

    A wrong password is audited (``signature.failure`` on the account, counting toward its login
    lockout) and refused (403); after ``signature_failures_logout`` of them in the lockout window
    every session of the account ends (401). A locked account cannot sign (429).
    """
    name = user.username[:64]
    if _locked(services, name):
        audit(
            services,
            AuditEntry(
                actor=f"user:{user.user_id}",
                action="login.locked",
                entity="login",
                entity_id=name,
                source=source,
                reason=f"signing refused ({what})"[:200],
            ),
        )
        raise HTTPException(
            status_code=429,
            detail="account locked after repeated failures: try again later",
            headers={"Retry-After": str(int(services.options.lockout_window_s))},
        )
    with session_scope(services.store.engine, readonly=True) as session:
        stored = get_user(session=session, user_id=user.user_id)
    if stored is None or not stored.active or not services.passwords.verify(password, stored.password_hash):
        audit(
            services,
            AuditEntry(
                actor=f"user:{user.user_id}",
                action="signature.failure",
                entity="login",
                entity_id=name,
                source=source,
                reason=f"password re-entry failed ({what})"[:200],
            ),
        )
        if _failures(services, name, ("signature.failure",)) >= services.options.signature_failures_logout:
            services.sessions.drop_user(user.user_id)
            raise HTTPException(status_code=401, detail="signed out after repeated failed signatures")
        raise HTTPException(status_code=403, detail="signature refused: password does not match")


def _not_found_or_conflict(exc: Exception) -> HTTPException:
    if isinstance(exc, StoreError) and "not found" in str(exc):
        return HTTPException(status_code=404, detail="no such NCR")
    return HTTPException(status_code=409, detail=str(exc))


def _conflict_first(check: Callable[[DbSession], None], services: Services) -> None:
    """Answer a state conflict (404/409) before any password is checked (no password oracle)."""
    try:
        with session_scope(services.store.engine, readonly=True) as session:
            check(session)
    except (StateError, StoreError) as exc:
        raise _not_found_or_conflict(exc) from exc


def _replayed(services: Services, user: AuthUser, key: str | None, target: str) -> bool:
    if key is None:
        return False
    try:
        with session_scope(services.store.engine, readonly=True) as session:
            return seen_before(session=session, user_id=user.user_id, key=key, target=target)
    except StateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc


def _record_key(session: DbSession, user: AuthUser, key: str | None, target: str, source: str) -> bool:
    """Under the writer lock: False when the key was used meanwhile (sign nothing)."""
    if key is None:
        lock_writers(session)
        return True
    return first_use(session=session, user_id=user.user_id, key=key, target=target, source=source)


def _review_input(user: AuthUser, body: ReviewCreate) -> ReviewInput:
    return ReviewInput(
        user_id=user.user_id,
        decision=ReviewDecision(body.decision),
        reason=body.reason,
        defect_code=body.defect_code,
        investigation_required=body.investigation_required,
        investigation_notes=body.investigation_notes,
    )


def adjudicate(
    services: Services, user: AuthUser, ncr_uuid: str, body: ReviewCreate, *, source: str, key: str | None = None
) -> NcrRef | None:
    """Claim (if needed) and review an NCR, signed with meaning REVIEW; None for a replayed key."""
    key = key or body.idempotency_key
    target = f"review:{ncr_uuid}"
    if _replayed(services, user, key, target):
        return None
    _conflict_first(lambda session: check_review(ncr_uuid, session=session, user_id=user.user_id), services)
    check_signing_password(services, user, body.password, source=source, what=f"review {ncr_uuid}")
    try:
        with session_scope(services.store.engine) as session:
            if not _record_key(session, user, key, target, source):
                return None
            status = get_ncr_status(ncr_uuid, session=session)
            if status is None:
                raise HTTPException(status_code=404, detail="no such NCR")
            if status in (NcrStatus.OPEN, NcrStatus.CONTAINED):
                claim_ncr(ncr_uuid, session=session, user_id=user.user_id)
            return add_review(ncr_uuid, session=session, review=_review_input(user, body))
    except (StateError, StoreError) as exc:
        raise _not_found_or_conflict(exc) from exc


def supersede(
    services: Services, user: AuthUser, ncr_uuid: str, body: ReviewCreate, *, source: str, key: str | None = None
) -> NcrRef | None:
    """Replace the standing signed review (quality engineer, reason, meaning REVIEW); None for a replay."""
    key = key or body.idempotency_key
    target = f"supersede:{ncr_uuid}"
    if _replayed(services, user, key, target):
        return None
    _conflict_first(
        lambda session: check_review(ncr_uuid, session=session, user_id=user.user_id, supersede=True), services
    )
    check_signing_password(services, user, body.password, source=source, what=f"supersede {ncr_uuid}")
    try:
        with session_scope(services.store.engine) as session:
            if not _record_key(session, user, key, target, source):
                return None
            return supersede_review(ncr_uuid, session=session, review=_review_input(user, body))
    except (StateError, StoreError) as exc:
        raise _not_found_or_conflict(exc) from exc


def dispose(
    services: Services, user: AuthUser, ncr_uuid: str, body: DispositionCreate, *, source: str, key: str | None = None
) -> NcrRef | None:
    """Disposition an adjudicated NCR, signed with meaning DISPOSITION; None for a replayed key."""
    code = DispositionCode(body.code)
    if code in (DispositionCode.USE_AS_IS, DispositionCode.REPAIR) and not body.justification.strip():
        raise invalid("justification", f"{code} needs a written justification (820.90(b)(1))")
    if code in (DispositionCode.REWORK, DispositionCode.REPAIR) and not body.rework_instruction_ref:
        raise invalid("rework_instruction_ref", f"{code} needs the rework/repair instruction reference")
    key = key or body.idempotency_key
    target = f"disposition:{ncr_uuid}"
    if _replayed(services, user, key, target):
        return None
    two_person = tuple(services.settings.two_person_dispositions)
    _conflict_first(
        lambda session: check_disposition(
            ncr_uuid, session=session, user_id=user.user_id, code=code, two_person=two_person
        ),
        services,
    )
    check_signing_password(services, user, body.password, source=source, what=f"disposition {ncr_uuid}")
    disposition = DispositionInput(
        user_id=user.user_id,
        code=code,
        quantity=body.quantity,
        justification=body.justification,
        design_authority_approval_ref=body.design_authority_approval_ref,
        customer_concession_ref=body.customer_concession_ref,
        rework_instruction_ref=body.rework_instruction_ref,
    )
    try:
        with session_scope(services.store.engine) as session:
            if not _record_key(session, user, key, target, source):
                return None
            if get_ncr_status(ncr_uuid, session=session) is None:
                raise HTTPException(status_code=404, detail="no such NCR")
            return add_disposition(ncr_uuid, session=session, disposition=disposition, two_person=two_person)
    except (StateError, StoreError) as exc:
        raise _not_found_or_conflict(exc) from exc


def dispute(services: Services, user: AuthUser, ncr_uuid: str, reason: str, *, source: str) -> None:
    """Ask for a FAIL to be reviewed (puts it in the queue); audited with the reason."""
    if not reason.strip():
        raise invalid("reason", "a dispute needs a reason")
    with session_scope(services.store.engine) as session:
        status = get_ncr_status(ncr_uuid, session=session)
        if status is None:
            raise HTTPException(status_code=404, detail="no such NCR")
        if status not in (NcrStatus.OPEN, NcrStatus.CONTAINED, NcrStatus.UNDER_REVIEW):
            raise HTTPException(status_code=409, detail=f"NCR is {status}: nothing to dispute")
        append_audit(
            AuditEntry(
                actor=f"user:{user.user_id}",
                action="ncr.dispute",
                entity="ncr",
                entity_id=ncr_uuid,
                reason=reason,
                source=source,
            ),
            session=session,
        )


def _sample_open(session: DbSession, inspection_id: str) -> None:
    row = get_inspection(inspection_id, session=session)
    if row is None or row.verdict != "PASS":
        raise HTTPException(status_code=404, detail="no such sampled PASS inspection")
    if count_recent(session=session, action="sample.review", entity="inspection", entity_id=inspection_id, since=None):
        raise HTTPException(status_code=409, detail="this PASS sample has been audited already (one answer each)")


def review_sample(
    services: Services,
    user: AuthUser,
    inspection_id: str,
    body: SampleReviewCreate,
    *,
    source: str,
    key: str | None = None,
) -> None:
    """Record the blind audit of a sampled PASS part (signed by password re-entry, audited); one answer each."""
    if body.decision == "ESCAPE" and not body.defect_code:
        raise invalid("defect_code", "an escape needs a defect code")
    key = key or body.idempotency_key
    target = f"sample:{inspection_id}"
    if _replayed(services, user, key, target):
        return
    with session_scope(services.store.engine, readonly=True) as session:
        _sample_open(session, inspection_id)
    check_signing_password(services, user, body.password, source=source, what=f"sample {inspection_id}")
    with session_scope(services.store.engine) as session:
        if not _record_key(session, user, key, target, source):
            return
        _sample_open(session, inspection_id)
        append_audit(
            AuditEntry(
                actor=f"user:{user.user_id}",
                action="sample.review",
                entity="inspection",
                entity_id=inspection_id,
                field="decision",
                new_value=body.decision,
                old_value="PASS",
                reason=f"{body.reason} [defect_code={body.defect_code or '-'}]",
                source=source,
            ),
            session=session,
        )


def _check_policy(body: UserCreate) -> None:
    problems = password_problems(body.password, username=body.username)
    if problems:
        raise invalid("password", "password: " + "; ".join(problems))


def new_user(services: Services, actor: str, body: UserCreate) -> User:
    """Create an account (admin action or bootstrap); password policy enforced."""
    _check_policy(body)
    password_hash = services.passwords.hash(body.password)
    try:
        with session_scope(services.store.engine) as session:
            return create_user(
                body.username,
                session=session,
                display_name=body.display_name,
                role=Role(body.role),
                password_hash=password_hash,
                actor=actor,
            )
    except StateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc


def deactivate_user(services: Services, actor: AuthUser, user_id: int, reason: str) -> User:
    """Deactivate (never delete) an account and end its sessions."""
    if user_id == actor.user_id:
        raise HTTPException(status_code=409, detail="you cannot deactivate yourself")
    if not reason.strip():  # str.strip: the store's own test (Unicode whitespace included)
        raise invalid("reason", "deactivating an account needs a reason")
    try:
        with session_scope(services.store.engine) as session:
            user = set_user_active(user_id, session=session, active=False, actor=f"user:{actor.user_id}", reason=reason)
    except StoreError as exc:
        raise HTTPException(status_code=404, detail="no such user") from exc
    services.sessions.drop_user(user_id)
    return user


def bootstrap_admin(services: Services, *, secret: str, body: UserCreate, source: str) -> User:
    """Create the first admin with the one-time secret from ``<data_dir>/bootstrap-secret``."""
    with session_scope(services.store.engine, readonly=True) as session:
        if active_admin_exists(session=session):
            raise HTTPException(status_code=404, detail="setup is complete")
    if not check_bootstrap_secret(services.data_dir, secret):
        audit(
            services,
            AuditEntry(actor="anonymous", action="setup.failure", entity="setup", entity_id="admin", source=source),
        )
        raise HTTPException(status_code=403, detail="bootstrap secret does not match")
    if body.role != "admin":
        raise invalid("role", "the first account must be an admin")
    user = new_user(services, "system:bootstrap", body)
    consume_bootstrap_secret(services.data_dir)
    return user


def installed_manifest(services: Services, name: str, version: str) -> ModelManifest:
    """The manifest of an installed version (404 when it is not installed or unreadable)."""
    try:
        return read_manifest(services.registry.resolve(name, version))
    except ModelError as exc:
        raise HTTPException(status_code=404, detail=f"model {name} version {version} is not installed") from exc


def activate_model(
    services: Services, user: AuthUser, name: str, version: str, body: ModelActivate, *, source: str
) -> ModelManifest:
    """Make an installed version active, signed by password re-entry and audited.

    A bundle with warnings (it cannot meet its targets, or states no rates) is refused (409)
    unless ``accept_risk`` is set with a reason; the acceptance is a MODEL_PROMOTION signature
    over the stated rates. The audit rows and the ACTIVE switch share one transaction.
    """
    manifest = installed_manifest(services, name, version)
    with session_scope(services.store.engine, readonly=True) as session:
        if under_promotion_control(session=session, name=name, version=version):
            raise HTTPException(
                status_code=409,
                detail=f"{name} {version} is under promotion control: it goes on the "
                "line by a promotion signed by two people (see its Promotion section)",
            )
    warnings = activation_warnings(manifest)
    if warnings and not body.accept_risk:
        raise HTTPException(
            status_code=409,
            detail=f"{name} {version} cannot meet its targets: "
            + "; ".join(warnings)
            + ". Accept the stated rates to activate it anyway.",
        )
    if warnings and not body.reason.strip():
        raise invalid("reason", "accepting a model's stated risk needs a reason")
    check_signing_password(services, user, body.password, source=source, what=f"model {name}@{version}")
    try:
        with session_scope(services.store.engine) as session:
            record_model_activation(
                session=session,
                user_id=user.user_id,
                actor=f"user:{user.user_id}",
                name=name,
                version=version,
                sha256=manifest.sha256,
                warnings=warnings,
                rates=stated_rates(manifest),
                reason=body.reason.strip() or None,
                source=source,
                accept_risk=body.accept_risk,
            )
            services.registry.activate(name, version)
    except StateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    except ModelError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return manifest
