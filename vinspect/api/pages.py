"""Rendering helpers shared by the page routers: template context, redirects, form errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.templating import _TemplateResponse

from vinspect.api.auth import AuthUser
from vinspect.api.deps import Services
from vinspect.api.permissions import ROLE_PERMISSIONS
from vinspect.api.security import SessionHandle

__all__ = ["PAGE_RESPONSES", "evidence_of", "redirect", "render"]

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


def render(request: Request, name: str, *, context: dict[str, Any] | None = None, user: AuthUser | None = None,
           status_code: int = 200) -> _TemplateResponse:
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


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/login?next={quote(target, safe='')}")


def error_page(request: Request, exc: HTTPException, *, user: AuthUser | None = None) -> HTMLResponse:
    return render(request, "error.html", context={"status": exc.status_code, "detail": exc.detail}, user=user,
                  status_code=exc.status_code)


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
