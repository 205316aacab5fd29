"""Audit trail (QE, admin) and user administration (admin): JSON + pages."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from vinspect.api.accounts import change_role, reset_password, unlock_login
from vinspect.api.deps import Auditor, CsrfChecked, ReadSession, ServicesDep, UserAdmin, client_source
from vinspect.api.pages import PAGE_RESPONSES, flash_and_redirect, render
from vinspect.api.schemas import (
    AuditRecordPublic,
    AuditRecordsPublic,
    DisputeCreate,
    UserCreate,
    UserPasswordCreate,
    UserPublic,
    UserRoleCreate,
    UsersPublic,
    UserUnlockCreate,
)
from vinspect.api.workflow import deactivate_user, new_user
from vinspect.store.repository import resolve_ncr
from vinspect.store.review_queries import actor_names, audit_for_ncr, audit_rows, ncr_numbers
from vinspect.store.users import User, list_users

__all__ = ["router"]

router = APIRouter()
API_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    403: {"description": "forbidden or CSRF"},
    404: {"description": "no such user"},
    409: {"description": "conflict"},
    422: {"description": "invalid"},
}
Text64 = Annotated[str | None, Query(max_length=64)]
UserId = Annotated[int, Path(ge=1, le=2**31)]


def _public(user: User) -> UserPublic:
    return UserPublic(
        id=user.id, username=user.username, display_name=user.display_name, role=str(user.role), active=user.active
    )


@router.get("/api/v1/audit", tags=["audit"], responses=API_RESPONSES)
def api_audit(
    db: ReadSession,
    _user: Auditor,
    entity: Text64 = None,
    entity_id: Text64 = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AuditRecordsPublic:
    """Audit rows, newest first."""
    rows = audit_rows(session=db, entity=entity, entity_id=entity_id, actor=actor, limit=limit, offset=offset)
    return AuditRecordsPublic(data=[AuditRecordPublic.from_row(r) for r in rows])


AUDIT_PAGE_ROWS = 50


@router.get("/audit", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def audit_page(
    request: Request,
    services: ServicesDep,
    db: ReadSession,
    user: Auditor,
    entity: Text64 = None,
    entity_id: Text64 = None,
    action: Text64 = None,
    ncr: Text64 = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    """The audit trail, newest first, 50 rows a page; filter by entity, action (``ncr.*``) or one NCR
    (its number or uuid: the NCR, its events and its signatures)."""
    filters = {"entity": entity or "", "entity_id": entity_id or "", "action": action or "", "ncr": ncr or ""}
    if ncr:
        uuid = resolve_ncr(ncr.strip().upper() if ncr.strip().upper().startswith("NCR-") else ncr.strip(), session=db)
        every = audit_for_ncr(uuid, session=db)[::-1] if uuid else []
        every = [
            r
            for r in every
            if not action or r.action == action or (action.endswith("*") and r.action.startswith(action[:-1]))
        ]
        rows = every[(page - 1) * AUDIT_PAGE_ROWS : page * AUDIT_PAGE_ROWS + 1]
    else:
        rows = audit_rows(
            session=db,
            entity=entity or None,
            entity_id=entity_id or None,
            action=action or None,
            limit=AUDIT_PAGE_ROWS + 1,
            offset=(page - 1) * AUDIT_PAGE_ROWS,
        )
    more, rows = len(rows) > AUDIT_PAGE_ROWS, rows[:AUDIT_PAGE_ROWS]
    numbers = ncr_numbers([r.entity_id for r in rows if r.entity == "ncr"], session=db)
    query = urlencode({k: v for k, v in filters.items() if v})
    context = {
        "rows": rows,
        "f": filters,
        "names": actor_names(session=db),
        "numbers": numbers,
        "page": page,
        "more": more,
        "query": query,
    }
    return render(request, "audit.html", context=context, user=user)


@router.get("/api/v1/users", tags=["users"], responses=API_RESPONSES)
def api_users(db: ReadSession, _user: UserAdmin) -> UsersPublic:
    """Every account (deactivated ones included; ids are never reused)."""
    return UsersPublic(data=[_public(u) for u in list_users(session=db)])


@router.post("/api/v1/users", tags=["users"], status_code=201, responses=API_RESPONSES)
def api_create_user(body: UserCreate, services: ServicesDep, user: UserAdmin, _csrf: CsrfChecked) -> UserPublic:
    """Create an account (password policy enforced; audited)."""
    return _public(new_user(services, f"user:{user.user_id}", body))


@router.post("/api/v1/users/{user_id}/deactivate", tags=["users"], responses=API_RESPONSES)
def api_deactivate_user(
    user_id: Annotated[int, Path(ge=1, le=2**31)],
    body: DisputeCreate,
    services: ServicesDep,
    user: UserAdmin,
    _csrf: CsrfChecked,
) -> UserPublic:
    """Deactivate an account (never deleted) and end its sessions; the reason is audited."""
    return _public(deactivate_user(services, user, user_id, body.reason))


@router.get("/users", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def users_page(request: Request, services: ServicesDep, db: ReadSession, user: UserAdmin) -> HTMLResponse:
    """Accounts and roles."""
    return render(request, "users.html", context={"users": list_users(session=db)}, user=user)


@router.post("/users", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def users_form(
    request: Request,
    services: ServicesDep,
    user: UserAdmin,
    _csrf: CsrfChecked,
    username: Annotated[str, Form(max_length=64)],
    display_name: Annotated[str, Form(max_length=200)],
    role: Annotated[str, Form(max_length=32)],
    password: Annotated[str, Form(max_length=256)],
) -> Response:
    """Create an account from the users page."""

    def create() -> str:
        try:
            body = UserCreate.model_validate(
                {"username": username, "display_name": display_name, "role": role, "password": password}
            )
            created = new_user(services, f"user:{user.user_id}", body)
        except ValueError as exc:  # the form's fields (pydantic) or the password policy
            raise HTTPException(422, str(exc).splitlines()[0]) from exc
        return f"Created {created.username} ({created.role})."

    return flash_and_redirect(request, create, to="/users")


@router.post("/users/{user_id}/deactivate", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def deactivate_form(
    user_id: Annotated[int, Path(ge=1, le=2**31)],
    request: Request,
    services: ServicesDep,
    user: UserAdmin,
    _csrf: CsrfChecked,
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
) -> Response:
    """Deactivate an account from the users page (never deleted; sessions end)."""
    return flash_and_redirect(
        request, lambda: f"Deactivated {deactivate_user(services, user, user_id, reason).username}.", to="/users"
    )


@router.post("/api/v1/users/{user_id}/unlock", tags=["users"], responses=API_RESPONSES)
def api_unlock_user(
    user_id: UserId,
    body: UserUnlockCreate,
    request: Request,
    services: ServicesDep,
    user: UserAdmin,
    _csrf: CsrfChecked,
) -> UserPublic:
    """Clear an account's failed sign-ins (signed with the admin's password; audited with the reason)."""
    return _public(
        unlock_login(services, user, user_id, reason=body.reason, password=body.password, source=client_source(request))
    )


@router.post("/api/v1/users/{user_id}/password", tags=["users"], responses=API_RESPONSES)
def api_reset_password(
    user_id: UserId,
    body: UserPasswordCreate,
    request: Request,
    services: ServicesDep,
    user: UserAdmin,
    _csrf: CsrfChecked,
) -> UserPublic:
    """Set a new password (policy enforced; signed; audited; the account's sessions end, its lockout clears)."""
    return _public(
        reset_password(
            services,
            user,
            user_id,
            new_password=body.new_password,
            reason=body.reason,
            password=body.password,
            source=client_source(request),
        )
    )


@router.post("/api/v1/users/{user_id}/role", tags=["users"], responses=API_RESPONSES)
def api_change_role(
    user_id: UserId, body: UserRoleCreate, request: Request, services: ServicesDep, user: UserAdmin, _csrf: CsrfChecked
) -> UserPublic:
    """Give an account another role (signed; audited; the account's sessions end)."""
    return _public(
        change_role(
            services,
            user,
            user_id,
            role=body.role,
            reason=body.reason,
            password=body.password,
            source=client_source(request),
        )
    )


Reason = Annotated[str, Form(max_length=2000)]
Secret = Annotated[str, Form(max_length=256)]


@router.post("/users/{user_id}/unlock", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def unlock_form(
    user_id: UserId,
    request: Request,
    services: ServicesDep,
    user: UserAdmin,
    _csrf: CsrfChecked,
    reason: Reason = "",
    password: Secret = "",
) -> Response:
    """Unlock sign-in from the users page."""

    def unlock() -> str:
        done = unlock_login(services, user, user_id, reason=reason, password=password, source=client_source(request))
        return f"Unlocked sign-in for {done.username} (signed)."

    return flash_and_redirect(request, unlock, to="/users")


@router.post("/users/{user_id}/password", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def password_form(
    user_id: UserId,
    request: Request,
    services: ServicesDep,
    user: UserAdmin,
    _csrf: CsrfChecked,
    new_password: Secret = "",
    reason: Reason = "",
    password: Secret = "",
) -> Response:
    """Reset a password from the users page."""

    def reset() -> str:
        done = reset_password(
            services,
            user,
            user_id,
            new_password=new_password,
            reason=reason,
            password=password,
            source=client_source(request),
        )
        return f"New password set for {done.username} (signed); their sessions ended."

    return flash_and_redirect(request, reset, to="/users")


@router.post("/users/{user_id}/role", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def role_form(
    user_id: UserId,
    request: Request,
    services: ServicesDep,
    user: UserAdmin,
    _csrf: CsrfChecked,
    role: Annotated[str, Form(max_length=32)] = "",
    reason: Reason = "",
    password: Secret = "",
) -> Response:
    """Change a role from the users page."""

    def change() -> str:
        done = change_role(
            services, user, user_id, role=role, reason=reason, password=password, source=client_source(request)
        )
        return f"{done.username} is now {done.role} (signed); their sessions ended."

    return flash_and_redirect(request, change, to="/users")
