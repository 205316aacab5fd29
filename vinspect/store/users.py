"""User accounts for the reviewer app: created, listed, deactivated, given another role or a new
password; never deleted or reused.

Password hashing belongs to the web layer (argon2); this module stores the hash string as given.
Every creation and every change (active flag here; role, password and lockout changes through
:func:`audit_user_change`) appends an audit link whose ``state`` is the account's state after
the change (:func:`user_state`: active, role, names and the SHA-256 of the password hash), so
``vinspect audit verify`` names any field changed outside the application.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vinspect.errors import StateError, StoreError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, format_utc, sha256_hex
from vinspect.store.content import user_sha256
from vinspect.store.db import lock_writers
from vinspect.store.ncr import Role
from vinspect.store.tables import UserRecord

__all__ = [
    "USERNAME_PATTERN",
    "User",
    "audit_user_change",
    "create_user",
    "get_user",
    "list_users",
    "set_user_active",
    "set_user_password",
    "set_user_role",
    "user_state",
    "user_state_fields",
    "username_problem",
]

# One rule for every way an account is made (web form, JSON API, ``vinspect users add``).
USERNAME_PATTERN = r"^[a-z][a-z0-9_.-]{1,63}$"
_USERNAME = re.compile(USERNAME_PATTERN)


def username_problem(username: str) -> str | None:
    """Why a username is refused (None when acceptable)."""
    if not _USERNAME.match(username):
        return (
            f"username {username!r}: 2-64 characters, a lower-case letter first, then lower-case "
            "letters, digits, '_', '.' or '-'"
        )
    return None


def _same_name(display_name: str) -> str:
    return " ".join(display_name.split()).casefold()


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A user as the web layer sees it (a detached value, not a database row)."""

    id: int
    username: str
    display_name: str
    role: Role
    password_hash: str
    active: bool
    created_at: datetime


def _value(row: UserRecord) -> User:
    return User(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=Role(row.role),
        password_hash=row.password_hash,
        active=row.active,
        created_at=row.created_at,
    )


def user_state_fields(row: UserRecord) -> dict[str, object]:
    """The audited state of an account: what a change outside the application must not alter unseen."""
    return {
        "username": row.username,
        "display_name": row.display_name,
        "role": row.role,
        "active": bool(row.active),
        "password_sha256": sha256_hex(row.password_hash.encode("utf-8")),
        "created_at": format_utc(row.created_at),
    }


def user_state(row: UserRecord) -> str:
    """:func:`user_state_fields` as canonical JSON (the ``state`` of the account's audit links)."""
    return canonical_json(user_state_fields(row)).decode("utf-8")


def audit_user_change(
    row: UserRecord,
    *,
    session: Session,
    actor: str,
    action: str,
    field: str,
    old_value: str | None,
    new_value: str | None,
    reason: str | None,
    at: datetime | None = None,
) -> None:
    """Append the audit link of a change already made to ``row`` in this transaction.

    Call it after changing any column of a user row (role, password hash, active flag, ...):
    the link records who, what and why, and the account's resulting state. Never pass a password
    or its hash as a value; ``field="password_hash"`` with no values is enough.
    """
    session.flush()
    append_audit(
        AuditEntry(
            actor=actor,
            action=action,
            entity="user",
            entity_id=str(row.id),
            field=field,
            old_value=old_value,
            new_value=new_value,
            reason=reason,
            state=user_state(row),
        ),
        session=session,
        at=at,
    )


def create_user(
    username: str,
    *,
    session: Session,
    display_name: str,
    role: Role,
    password_hash: str,
    actor: str,
    now: datetime | None = None,
) -> User:
    """Create an active user; ``actor`` is who created it (``user:<id>`` or ``system:bootstrap``).

    Raises:
        StateError: the username is malformed or taken (ids and names are never reused), or another
            account already has this display name (the printed name on signatures must identify one person).
    """
    if not username or not display_name.strip() or not password_hash:
        raise StateError("username, display name and password hash are required")
    problem = username_problem(username)
    if problem is not None:
        raise StateError(problem)
    lock_writers(session)
    if session.scalar(select(UserRecord.id).where(UserRecord.username == username)) is not None:
        raise StateError(f"username {username!r} already exists")
    wanted = _same_name(display_name)
    if any(_same_name(other) == wanted for other in session.scalars(select(UserRecord.display_name))):
        raise StateError(
            f"display name {display_name!r} is already used by another account: printed names "
            "on signatures must identify one person"
        )
    row = UserRecord(
        username=username,
        display_name=display_name,
        role=str(Role(role)),
        password_hash=password_hash,
        active=True,
        created_at=now or datetime.now(UTC),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise StoreError(f"creating user {username!r}: {exc.orig}") from exc
    append_audit(
        AuditEntry(
            actor=actor,
            action="user.create",
            entity="user",
            entity_id=str(row.id),
            field="role",
            new_value=row.role,
            record_sha256=user_sha256(row),
            state=user_state(row),
        ),
        session=session,
        at=row.created_at,
    )
    return _value(row)


def get_user(*, session: Session, user_id: int | None = None, username: str | None = None) -> User | None:
    """Look a user up by id or by username (exactly one of them)."""
    if (user_id is None) == (username is None):
        raise StoreError("get_user needs exactly one of user_id or username")
    if user_id is not None:
        row = session.get(UserRecord, user_id)
    else:
        row = session.scalar(select(UserRecord).where(UserRecord.username == username))
    return None if row is None else _value(row)


def list_users(*, session: Session, include_inactive: bool = True) -> list[User]:
    """All users in id order."""
    stmt = select(UserRecord).order_by(UserRecord.id)
    if not include_inactive:
        stmt = stmt.where(UserRecord.active.is_(True))
    return [_value(r) for r in session.scalars(stmt)]


def set_user_active(
    user_id: int,
    *,
    session: Session,
    active: bool,
    actor: str,
    reason: str,
    now: datetime | None = None,
) -> User:
    """Activate or deactivate (never delete) a user; audited with the reason."""
    if not reason.strip():
        raise StateError("changing a user's active flag needs a reason")
    lock_writers(session)
    row = session.get(UserRecord, user_id)
    if row is None:
        raise StoreError(f"user {user_id} not found")
    if row.active != active:
        old = row.active
        row.active = active
        audit_user_change(
            row,
            session=session,
            actor=actor,
            action="user.set_active",
            field="active",
            old_value=str(old).lower(),
            new_value=str(active).lower(),
            reason=reason,
            at=now,
        )
    return _value(row)


def _changed_row(user_id: int, session: Session, reason: str, what: str) -> UserRecord:
    if not reason.strip():
        raise StateError(f"{what} needs a reason")
    lock_writers(session)
    row = session.get(UserRecord, user_id)
    if row is None:
        raise StoreError(f"user {user_id} not found")
    return row


def set_user_role(
    user_id: int,
    *,
    session: Session,
    role: Role,
    actor: str,
    reason: str,
    now: datetime | None = None,
) -> User:
    """Give a user another role (one role per account); audited with the old and new role and the reason."""
    row = _changed_row(user_id, session, reason, "changing a role")
    new = str(Role(role))
    if row.role != new:
        old = row.role
        row.role = new
        audit_user_change(
            row,
            session=session,
            actor=actor,
            action="user.set_role",
            field="role",
            old_value=old,
            new_value=new,
            reason=reason,
            at=now,
        )
    return _value(row)


def set_user_password(
    user_id: int,
    *,
    session: Session,
    password_hash: str,
    actor: str,
    reason: str,
    now: datetime | None = None,
) -> User:
    """Replace a user's password hash (an admin's reset); audited with the reason, never the hash."""
    if not password_hash:
        raise StateError("a password hash is required")
    row = _changed_row(user_id, session, reason, "resetting a password")
    row.password_hash = password_hash
    audit_user_change(
        row,
        session=session,
        actor=actor,
        action="user.set_password",
        field="password_hash",
        old_value=None,
        new_value=None,
        reason=reason,
        at=now,
    )
    return _value(row)
