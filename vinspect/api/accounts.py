"""An admin's way out of a lockout: unlock sign-in, reset a password, change a role.

Each is signed by the admin re-entering their own password (the same check as any signature,
audited when it fails) and audited with the admin's reason. The same operations exist in the
shell as ``vinspect users unlock|reset-password|set-role`` for when no admin can sign in.
"""

from __future__ import annotations

from fastapi import HTTPException

from vinspect.api.auth import AuthUser, password_problems
from vinspect.api.deps import Services
from vinspect.api.workflow import check_signing_password, invalid
from vinspect.errors import StateError, StoreError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.db import session_scope
from vinspect.store.ncr import Role
from vinspect.store.users import User, get_user, set_user_password, set_user_role

__all__ = ["change_role", "reset_password", "unlock_login"]


def _target(services: Services, user_id: int) -> User:
    with session_scope(services.store.engine, readonly=True) as session:
        user = get_user(session=session, user_id=user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="no such user")
    return user


def _signed(services: Services, actor: AuthUser, password: str, reason: str, *, source: str, what: str) -> None:
    if not reason.strip():
        raise invalid("reason", f"{what.split(' ')[0]} needs a reason")
    check_signing_password(services, actor, password, source=source, what=what)


def unlock_login(services: Services, actor: AuthUser, user_id: int, *, reason: str, password: str, source: str) -> User:
    """Clear the failed-login count of an account (failures before now no longer lock it)."""
    user = _target(services, user_id)
    _signed(services, actor, password, reason, source=source, what=f"unlock {user.username}")
    with session_scope(services.store.engine) as session:
        append_audit(
            AuditEntry(
                actor=f"user:{actor.user_id}",
                action="login.unlock",
                entity="login",
                entity_id=user.username[:64],
                reason=reason,
                source=source,
            ),
            session=session,
        )
    return user


def reset_password(
    services: Services, actor: AuthUser, user_id: int, *, new_password: str, reason: str, password: str, source: str
) -> User:
    """Give an account a new password (policy enforced); its sessions end and its lockout clears."""
    user = _target(services, user_id)
    problems = password_problems(new_password, username=user.username)
    if problems:
        raise invalid("new_password", "password: " + "; ".join(problems))
    _signed(services, actor, password, reason, source=source, what=f"reset {user.username}")
    new_hash = services.passwords.hash(new_password)
    try:
        with session_scope(services.store.engine) as session:
            changed = set_user_password(
                user_id, session=session, password_hash=new_hash, actor=f"user:{actor.user_id}", reason=reason
            )
            append_audit(
                AuditEntry(
                    actor=f"user:{actor.user_id}",
                    action="login.unlock",
                    entity="login",
                    entity_id=user.username[:64],
                    reason=f"password reset: {reason}",
                    source=source,
                ),
                session=session,
            )
    except (StateError, StoreError) as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    services.sessions.drop_user(user_id)
    return changed


def change_role(
    services: Services, actor: AuthUser, user_id: int, *, role: str, reason: str, password: str, source: str
) -> User:
    """Give an account another role; its sessions end so the new role applies at once."""
    if user_id == actor.user_id:
        raise HTTPException(status_code=409, detail="you cannot change your own role")
    if role not in {r.value for r in Role}:
        raise invalid("role", f"unknown role {role!r}")
    user = _target(services, user_id)
    _signed(services, actor, password, reason, source=source, what=f"role {user.username}")
    try:
        with session_scope(services.store.engine) as session:
            changed = set_user_role(
                user_id, session=session, role=Role(role), actor=f"user:{actor.user_id}", reason=reason
            )
    except (StateError, StoreError) as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    services.sessions.drop_user(user_id)
    return changed
