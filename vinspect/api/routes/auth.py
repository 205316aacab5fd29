"""Login, logout and first-admin setup: JSON API and pages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vinspect.api.auth import bootstrap_pending
from vinspect.api.deps import CsrfChecked, CurrentUser, ReadSession, ServicesDep, SessionDep, client_source
from vinspect.api.pages import PAGE_RESPONSES, error_page, redirect, render
from vinspect.api.schemas import LoginCreate, SessionPublic, UserCreate, UserPublic
from vinspect.api.workflow import bootstrap_admin, detail_text, log_in, log_out
from vinspect.store.ncr import Role
from vinspect.store.review_queries import active_admin_exists
from vinspect.store.users import get_user, list_users

__all__ = ["router"]

router = APIRouter()
API_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "wrong username or password"},
    403: {"description": "missing or invalid CSRF token"},
    429: {"description": "locked out after repeated failures"},
}


@router.get("/api/v1/auth/session", tags=["auth"])
def read_session_state(services: ServicesDep, handle: SessionDep, db: ReadSession) -> SessionPublic:
    """The caller's session and its CSRF token (creates an anonymous session for login)."""
    web = handle.ensure()
    if web.user_id is None:
        return SessionPublic(authenticated=False, csrf_token=web.csrf_token)
    user = get_user(session=db, user_id=web.user_id)
    if user is None or not user.active:
        return SessionPublic(authenticated=False, csrf_token=web.csrf_token)
    public = UserPublic(
        id=user.id, username=user.username, display_name=user.display_name, role=str(user.role), active=user.active
    )
    return SessionPublic(authenticated=True, csrf_token=web.csrf_token, user=public)


@router.post("/api/v1/auth/login", tags=["auth"], responses=API_RESPONSES)
def api_login(
    body: LoginCreate, request: Request, services: ServicesDep, handle: SessionDep, _csrf: CsrfChecked
) -> SessionPublic:
    """Sign in; the session id and CSRF token are rotated."""
    user = log_in(services, handle, username=body.username, password=body.password, source=client_source(request))
    web = handle.ensure()
    public = UserPublic(
        id=user.user_id, username=user.username, display_name=user.display_name, role=user.role, active=True
    )
    return SessionPublic(authenticated=True, csrf_token=web.csrf_token, user=public)


@router.post("/api/v1/auth/logout", tags=["auth"], status_code=204, responses=API_RESPONSES)
def api_logout(request: Request, services: ServicesDep, handle: SessionDep, _csrf: CsrfChecked) -> Response:
    """End the session."""
    log_out(services, handle, source=client_source(request))
    return Response(status_code=204)


@router.get("/login", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def login_page(request: Request, services: ServicesDep, db: ReadSession, next: str = "/") -> HTMLResponse:
    """The sign-in form; straight to /setup only while no account exists at all (accounts made
    with `vinspect users add` before the first admin can sign in meanwhile)."""
    pending = bootstrap_pending(services.data_dir)
    if pending and not list_users(session=db, include_inactive=False):
        return redirect("/setup")  # type: ignore[return-value]
    return render(request, "login.html", context={"next": next[:300], "setup_pending": pending})


@router.post("/login", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def login_form(
    request: Request,
    services: ServicesDep,
    handle: SessionDep,
    _csrf: CsrfChecked,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form(max_length=300)] = "/",
) -> Response:
    """Sign in from the form; failures re-show it with a generic message."""
    try:
        log_in(services, handle, username=username, password=password, source=client_source(request))
    except HTTPException as exc:
        message = detail_text(exc)
        if exc.status_code == 429:
            minutes = max(1, round(services.options.lockout_window_s / 60))
            message = (
                f"Too many failed sign-ins: sign-in is locked for up to {minutes} minutes after the last "
                f"failed attempt. An admin can unlock it now on the Users page, or on the server with "
                f"`vinspect users unlock {username[:64]}`."
            )
        return render(
            request,
            "login.html",
            context={"next": next, "error": message, "username": username},
            status_code=exc.status_code,
        )
    return redirect(next)


@router.post("/logout", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def logout_form(
    request: Request, services: ServicesDep, handle: SessionDep, _user: CurrentUser, _csrf: CsrfChecked
) -> RedirectResponse:
    """Sign out."""
    log_out(services, handle, source=client_source(request))
    return redirect("/login")


@router.get("/setup", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def setup_page(request: Request, services: ServicesDep, db: ReadSession) -> HTMLResponse:
    """Create the first admin with the one-time bootstrap secret."""
    if active_admin_exists(session=db) or not bootstrap_pending(services.data_dir):
        return error_page(request, HTTPException(404, "setup is complete"))
    # The data directory's absolute path is not shown to anonymous visitors (the operator knows it).
    return render(request, "setup.html", context={})


@router.post("/setup", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def setup_form(
    request: Request,
    services: ServicesDep,
    _csrf: CsrfChecked,
    secret: Annotated[str, Form(max_length=200)],
    username: Annotated[str, Form(max_length=64)],
    display_name: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=256)],
) -> Response:
    """Consume the bootstrap secret and create the admin."""
    try:
        body = UserCreate(username=username, display_name=display_name, role=Role.ADMIN, password=password)
    except ValueError as exc:
        return render(request, "setup.html", context={"error": str(exc).splitlines()[0]}, status_code=422)
    try:
        bootstrap_admin(services, secret=secret, body=body, source=client_source(request))
    except HTTPException as exc:
        if exc.status_code == 404:
            return error_page(request, exc)
        return render(request, "setup.html", context={"error": detail_text(exc)}, status_code=exc.status_code)
    return redirect("/login")
