"""Rendering helpers shared by the page routers: template context, redirects, form errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.templating import _TemplateResponse

from vinspect.api.auth import AuthUser
from vinspect.api.deps import Services
from vinspect.api.permissions import ROLE_PERMISSIONS, Permission, allowed
from vinspect.api.security import SessionHandle
from vinspect.api.workflow import detail_text
from vinspect.store.db import session_scope
from vinspect.store.users import get_user

__all__ = [
    "PAGE_RESPONSES",
    "evidence_of",
    "flash_and_redirect",
    "home_path",
    "redirect",
    "refusal",
    "refused_form",
    "render",
    "signed_in_user",
]

PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "HTML page"},
    303: {"description": "redirect (to /login when not signed in, or to the next page)"},
    401: {"description": "not signed in"},
    403: {"description": "role lacks the permission, or missing CSRF token"},
    404: {"description": "no such record"},
    409: {"description": "not allowed in the record's current state"},
    422: {"description": "invalid input"},
    429: {"description": "too many failed logins"},
}


def render(
    request: Request,
    name: str,
    *,
    context: dict[str, Any] | None = None,
    user: AuthUser | None = None,
    status_code: int = 200,
) -> _TemplateResponse:
    """A page with the signed-in user, their permissions and the session's CSRF token."""
    services: Services = request.app.state.services
    handle: SessionHandle = request.scope["state"]["session"]
    web = handle.ensure()
    perms = sorted(ROLE_PERMISSIONS.get(user.role, frozenset())) if user is not None else []
    base = {"user": user, "perms": perms, "csrf_token": web.csrf_token, "flash": list(web.flash)}
    web.flash.clear()
    base.update(context or {})
    return services.templates.TemplateResponse(request, name, base, status_code=status_code)


def flash(request: Request, message: str) -> None:
    """A one-time message shown on the next page."""
    handle: SessionHandle = request.scope["state"]["session"]
    handle.ensure().flash.append(message)


def redirect(path: str) -> RedirectResponse:
    """303 See Other to a local path (never to a user-given absolute URL)."""
    safe = path if path.startswith("/") and not path.startswith(("//", "/\\")) and "\n" not in path else "/"
    return RedirectResponse(safe, status_code=303)


def flash_and_redirect(
    request: Request, action: Callable[[], str], *, to: str, refused: str = "Refused", refused_to: str | None = None
) -> RedirectResponse:
    """A page form's post, flash and redirect in one place.

    Runs ``action`` (the service call; it returns the message to show, or raises HTTPException
    when the request is refused), flashes that message or ``"<refused>: <one-line detail>"``, and
    answers 303 to ``to`` (to ``refused_to``, when given, after a refusal). Other exceptions
    propagate unchanged.
    """
    try:
        message = action()
    except HTTPException as exc:
        flash(request, f"{refused}: {detail_text(exc)}")
        return redirect(refused_to if refused_to is not None else to)
    flash(request, message)
    return redirect(to)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/login?next={quote(target, safe='')}")


def home_path(role: str | None) -> str:
    """Where a role starts: reviewers and quality engineers at the queue, admins at the users page,
    everyone else at the NCR list; anonymous visitors at the sign-in form."""
    if role is None:
        return "/login"
    if allowed(role, Permission.ADJUDICATE):
        return "/queue"
    if allowed(role, Permission.USERS):
        return "/users"
    return "/ncrs"


def signed_in_user(request: Request) -> AuthUser | None:
    """The signed-in, still active user of this request, or None (never raises)."""
    handle: SessionHandle | None = request.scope.get("state", {}).get("session")
    web = handle.current if handle is not None else None
    if web is None or web.user_id is None:
        return None
    services: Services = request.app.state.services
    with session_scope(services.store.engine, readonly=True) as session:
        user = get_user(session=session, user_id=web.user_id)
    if user is None or not user.active:
        return None
    return AuthUser(user_id=user.id, username=user.username, display_name=user.display_name, role=str(user.role))


_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "Invalid input",
    429: "Too many attempts",
    500: "Server error",
}


def error_page(request: Request, exc: HTTPException, *, user: AuthUser | None = None) -> HTMLResponse:
    """An error as a page with the menu; validation details become one line per field."""
    who = user if user is not None else signed_in_user(request)
    detail = exc.detail
    problems: list[str] = []
    if isinstance(detail, list):
        for item in detail:
            if isinstance(item, dict):
                loc = [str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path", "form")]
                problems.append(f"{'.'.join(loc) or 'input'}: {item.get('msg', '')}")
            else:
                problems.append(str(item))
        detail = "The request has invalid fields."
    context = {
        "status": exc.status_code,
        "title": _TITLES.get(exc.status_code, "Error"),
        "detail": detail,
        "problems": problems,
        "home": home_path(who.role if who else None),
    }
    return render(request, "error.html", context=context, user=who, status_code=exc.status_code)


def evidence_of(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    """(image sha256, heatmap sha256) of an NCR document."""
    image = heatmap = None
    for item in doc.get("evidence", []):
        kind = str(item.get("kind", ""))
        if kind == "heatmap" and heatmap is None:
            heatmap = item.get("sha256")
        elif kind != "heatmap" and image is None:
            image = item.get("sha256")
    return image, heatmap


def refusal(exc: ValueError | HTTPException) -> tuple[str, int]:
    """A refused signing form's one-line message (the first invalid field named) and its status."""
    if isinstance(exc, HTTPException):
        return detail_text(exc), exc.status_code
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return (f"{where}: {first.get('msg', '')}" if where else str(first.get("msg", ""))), 422
    return str(exc).splitlines()[0], 422


def refused_form(
    request: Request,
    services: Services,
    user: AuthUser,
    *,
    template: str,
    context_of: Callable[[Any], dict[str, Any]],
    error: str,
    status: int,
    kept: Mapping[str, Any],
) -> HTMLResponse:
    """A refused signing form: its page again with the error and every field as entered (only the
    password is cleared), or the error page when the record itself is gone."""
    try:
        with session_scope(services.store.engine, readonly=True) as db:
            context = context_of(db)
    except HTTPException as missing:
        return error_page(request, missing, user=user)
    context.update({"error": error, "kept": dict(kept)})
    return render(request, template, context=context, user=user, status_code=status)
