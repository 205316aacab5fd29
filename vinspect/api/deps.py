"""Dependencies shared by every router, as ``Annotated`` aliases.

``Services`` is built once per app by :func:`vinspect.api.app.create_app` and hung on
``app.state``; nothing here is module state. Authorization is one dependency per permission
(:func:`require`): anonymous → 401, wrong role → 403 and an audit row; state changes also pass
:func:`check_csrf` (synchronizer token + Origin check; a failure is audited).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates

from vinspect.api.auth import AuthUser, ClientLimiter, PasswordService, SessionStore, WebSession
from vinspect.api.model_evaluation import EvaluationJobs
from vinspect.api.permissions import Permission, allowed
from vinspect.api.security import SessionHandle
from vinspect.api.status_source import StatusSource
from vinspect.models.registry import ModelRegistry
from vinspect.settings import Settings
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.db import session_scope
from vinspect.store.review_queries import DbSession, PassSample, StoreHandle
from vinspect.store.users import get_user

__all__ = [
    "ApiOptions",
    "CurrentUser",
    "IdempotencyKey",
    "ReadSession",
    "Services",
    "ServicesDep",
    "SessionDep",
    "audit",
    "check_csrf",
    "require",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiOptions:
    """Web-tier policy knobs (production defaults)."""

    pass_sample_rate: float = 0.01
    lockout_failures: int = 5
    lockout_window_s: float = 900.0
    signature_failures_logout: int = 3  # failed signatures (in the lockout window) that end the sessions
    session_idle_s: float = 900.0
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    # The plant's own defect codes, offered after each product model's classes (see api/catalogue.py).
    defect_codes: tuple[str, ...] = ("contamination", "dent", "missing_feature", "other")
    # Quality alarms evaluated by the app as subgroups close (vinspect.quality.evaluator); None: off
    # (``vinspect web`` turns it on, every 60 s by default). MQTT broker HOST[:PORT] for new alarms.
    alarm_interval_s: float | None = None
    alarm_mqtt: str | None = None
    alarm_topic_prefix: str = "vinspect/site/line"


@dataclass(slots=True, kw_only=True)
class Services:
    """Everything a request handler may touch, built by ``create_app``."""

    settings: Settings
    store: StoreHandle
    registry: ModelRegistry
    status: StatusSource
    options: ApiOptions
    passwords: PasswordService
    sessions: SessionStore
    templates: Jinja2Templates
    limiter: ClientLimiter
    sample: PassSample
    data_dir: Path = field(default_factory=Path)
    evaluator: Any = None  # vinspect.quality.evaluator.AlarmEvaluator while the app runs one
    evaluations: EvaluationJobs = field(default_factory=EvaluationJobs)  # candidates' frozen-set evaluations


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_handle(request: Request) -> SessionHandle:
    handle: SessionHandle = request.scope["state"]["session"]
    return handle


SessionDep = Annotated[SessionHandle, Depends(get_handle)]


def read_session(services: ServicesDep) -> Iterator[DbSession]:
    """A read-only database session for the request (never takes the write lock)."""
    with session_scope(services.store.engine, readonly=True) as session:
        yield session


ReadSession = Annotated[DbSession, Depends(read_session)]


_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header of a signed request (422 when malformed)."""
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    if not _KEY.match(value):
        raise HTTPException(
            status_code=422,
            detail=[
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": "8-128 characters of A-Z a-z 0-9 _ . : -",
                    "type": "value_error",
                }
            ],
        )
    return value


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]


def client_source(request: Request) -> str:
    return f"web:{request.client.host}" if request.client else "web"


def audit(services: Services, entry: AuditEntry) -> None:
    """Append one audit row in its own transaction (logins, denials, exports)."""
    with session_scope(services.store.engine) as session:
        append_audit(entry, session=session)


class NotAuthenticated(Exception):
    """Raised for anonymous requests to protected routes; pages redirect to /login."""


def current_user(request: Request, services: ServicesDep, handle: SessionDep) -> AuthUser:
    """The signed-in, still active user (re-read from the store on every request)."""
    web = handle.current
    if web is None or web.user_id is None:
        raise NotAuthenticated
    with session_scope(services.store.engine, readonly=True) as session:
        user = get_user(session=session, user_id=web.user_id)
    if user is None or not user.active:
        handle.logout()
        raise NotAuthenticated
    return AuthUser(user_id=user.id, username=user.username, display_name=user.display_name, role=str(user.role))


CurrentUser = Annotated[AuthUser, Depends(current_user)]


def require(permission: Permission) -> Callable[..., AuthUser]:
    """A dependency that admits only roles holding ``permission`` (denials are audited)."""

    def dependency(request: Request, services: ServicesDep, user: CurrentUser) -> AuthUser:
        if not allowed(user.role, permission):
            audit(
                services,
                AuditEntry(
                    actor=f"user:{user.user_id}",
                    action="authz.deny",
                    entity="route",
                    entity_id=f"{request.method} {request.url.path}"[:64],
                    field="permission",
                    new_value=str(permission),
                    reason=f"role {user.role}",
                    source=client_source(request),
                ),
            )
            raise HTTPException(status_code=403, detail=f"role {user.role} may not {permission}")
        return user

    return dependency


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # no Origin (same-origin GET-initiated forms in some browsers): the token decides
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def _offered_token(request: Request) -> str | None:
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        try:
            form = await request.form()
        except Exception:  # boundary: an unparsable form simply carries no token
            return None
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


def check_csrf_dependency() -> Callable[..., Coroutine[Any, Any, WebSession]]:
    async def dependency(request: Request, services: ServicesDep, handle: SessionDep) -> WebSession:
        web = handle.current
        token = await _offered_token(request)
        if (
            web is None
            or not _same_origin(request)
            or request.headers.get("sec-fetch-site") == "cross-site"
            or not web.check_csrf(token)
        ):
            actor = f"user:{web.user_id}" if web is not None and web.user_id is not None else "anonymous"
            audit(
                services,
                AuditEntry(
                    actor=actor,
                    action="csrf.fail",
                    entity="route",
                    entity_id=f"{request.method} {request.url.path}"[:64],
                    source=client_source(request),
                ),
            )
            raise HTTPException(status_code=403, detail="missing or invalid CSRF token")
        return web

    return dependency


check_csrf = check_csrf_dependency()
CsrfChecked = Annotated[WebSession, Depends(check_csrf)]

Viewer = Annotated[AuthUser, Depends(require(Permission.VIEW))]
Disputer = Annotated[AuthUser, Depends(require(Permission.DISPUTE))]
Adjudicator = Annotated[AuthUser, Depends(require(Permission.ADJUDICATE))]
Dispositioner = Annotated[AuthUser, Depends(require(Permission.DISPOSITION))]
Exporter = Annotated[AuthUser, Depends(require(Permission.EXPORT))]
Auditor = Annotated[AuthUser, Depends(require(Permission.AUDIT))]
UserAdmin = Annotated[AuthUser, Depends(require(Permission.USERS))]
ModelActivator = Annotated[AuthUser, Depends(require(Permission.MODELS))]
Acknowledger = Annotated[AuthUser, Depends(require(Permission.ACKNOWLEDGE))]
CapaOwner = Annotated[AuthUser, Depends(require(Permission.CAPA))]
Labeller = Annotated[AuthUser, Depends(require(Permission.LABEL))]
LabelSetManager = Annotated[AuthUser, Depends(require(Permission.LABEL_SETS))]
