"""The app factory: ``create_app(settings, *, store, registry, status)``; no module state.

Everything a request needs (store, registry, status source, sessions, password hasher,
templates) is built or received here and hung on ``app.state.services``. Pages and the JSON
API (``/api/v1``) share one OpenAPI document at ``/openapi.json``, served to signed-in users
only; the interactive docs are off (their CDN scripts would need a weaker CSP).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from vinspect import __version__
from vinspect.api.auth import ClientLimiter, PasswordService, SessionStore
from vinspect.api.deps import ApiOptions, CurrentUser, NotAuthenticated, Services
from vinspect.api.formatting import install_filters
from vinspect.api.pages import error_page, home_path, login_redirect, redirect, signed_in_user
from vinspect.api.routes import (
    admin,
    auth,
    capa,
    evidence,
    export,
    labelling,
    labelling_api,
    ncrs,
    plant,
    promotion,
    quality,
    queue,
    shadow,
    station_status,
)
from vinspect.api.security import SecurityMiddleware
from vinspect.api.status_source import StatusSource
from vinspect.errors import StateError
from vinspect.models.registry import ModelRegistry
from vinspect.settings import Settings
from vinspect.store.evidence import HEATMAP_LOW_OVER_FAIL, HEATMAP_TOP_OVER_FAIL
from vinspect.store.ncr import Role
from vinspect.store.review_queries import PassSample, StoreHandle

__all__ = ["create_app"]

logger = logging.getLogger(__name__)
_HERE = Path(__file__).resolve().parent


def create_app(
    settings: Settings,
    *,
    store: StoreHandle,
    registry: ModelRegistry,
    status: StatusSource,
    options: ApiOptions | None = None,
) -> FastAPI:
    """Build the reviewer web app.

    Args:
        settings: process settings (``data_dir`` holds the bootstrap secret).
        store: engine (schema already upgraded) and evidence store.
        registry: the model registry (listed on the models page).
        status: where the station's live status is read from.
        options: web-tier policy (sampling rate, lockout, argon2 cost); production defaults.
    """
    opts = options or ApiOptions()
    sessions = SessionStore(idle_timeout_s=opts.session_idle_s)
    services = Services(
        settings=settings,
        store=store,
        registry=registry,
        status=status,
        options=opts,
        passwords=PasswordService(time_cost=opts.argon2_time_cost, memory_cost_kib=opts.argon2_memory_kib),
        sessions=sessions,
        templates=Jinja2Templates(directory=str(_HERE / "templates")),
        limiter=ClientLimiter(window_s=opts.lockout_window_s),
        sample=PassSample(opts.pass_sample_rate),
        data_dir=settings.data_dir,
    )
    install_filters(services.templates.env.filters)
    services.templates.env.globals.update(
        heat_low=HEATMAP_LOW_OVER_FAIL, heat_top=HEATMAP_TOP_OVER_FAIL, roles=[r.value for r in Role]
    )
    # A fresh idempotency key per rendered signing form: a resubmitted form signs nothing new.
    services.templates.env.globals["new_request_key"] = lambda: secrets.token_urlsafe(18)
    app = FastAPI(
        title="vinspect reviewer",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_alarm_lifespan(services),
    )
    app.state.services = services
    for module in (
        auth,
        queue,
        ncrs,
        evidence,
        station_status,
        promotion,
        plant,
        export,
        admin,
        quality,
        capa,
        labelling,
        labelling_api,
        shadow,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    _install_handlers(app)
    app.add_middleware(
        SecurityMiddleware,
        sessions=sessions,
        allowed_hosts=settings.allowed_hosts,
        secure_cookies=settings.secure_cookies,
    )

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        user = signed_in_user(request)
        return redirect(home_path(user.role if user is not None else None))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return FileResponse(_HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_document(_user: CurrentUser) -> JSONResponse:
        return JSONResponse(app.openapi())

    return app


def _alarm_lifespan(services: Services):  # type: ignore[no-untyped-def]
    """Run the quality-alarm evaluator (a background thread) while the app serves, when configured."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        interval = services.options.alarm_interval_s
        if not interval:
            yield
            return
        from vinspect.quality.alarms import MqttAlarmPublisher
        from vinspect.quality.evaluator import AlarmEvaluator
        from vinspect.quality.validation import validation_scores

        publish = None
        if services.options.alarm_mqtt:
            host, _, port = services.options.alarm_mqtt.partition(":")
            publish = MqttAlarmPublisher(host, int(port or 1883), services.options.alarm_topic_prefix)
        evaluator = AlarmEvaluator(
            services.store,
            interval_s=interval,
            publish=publish,
            validation_scores=lambda: validation_scores(services.registry),
        )
        services.evaluator = evaluator
        evaluator.start()
        logger.info(
            "quality alarms evaluated every %.0f s%s",
            interval,
            f", published to {services.options.alarm_mqtt}" if publish else "",
        )
        try:
            yield
        finally:
            evaluator.stop()
            services.evaluator = None

    return lifespan


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return not path.startswith("/api/") and not path.startswith("/evidence/")


def _install_handlers(app: FastAPI) -> None:
    async def not_authenticated(request: Request, exc: Exception) -> Response:
        # A page (a form posted after the session timed out included) goes to the sign-in form,
        # which brings the person back to the page; only the JSON API answers 401.
        if _wants_html(request):
            return redirect("/login?next=%2F") if request.url.path == "/logout" else login_redirect(request)
        return JSONResponse({"detail": "not signed in"}, status_code=401)

    # A person at a page never gets raw JSON: every error on a page path is a page with the menu.
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if _wants_html(request):
            page = error_page(request, HTTPException(exc.status_code, exc.detail))
            page.headers.update(exc.headers or {})
            return page
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        if _wants_html(request):
            return error_page(request, HTTPException(422, errors))
        return JSONResponse({"detail": errors}, status_code=422)

    async def crashed(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error", extra={"path": request.url.path})
        if _wants_html(request):
            return error_page(request, HTTPException(500, "internal error (logged on the server)"))
        return JSONResponse({"detail": "internal error"}, status_code=500)

    async def conflict(request: Request, exc: Exception) -> Response:
        # A lifecycle rule the store enforces and a handler did not pre-check: the request
        # conflicts with the record's state; never a server error.
        if _wants_html(request):
            return error_page(request, HTTPException(409, str(exc)))
        return JSONResponse({"detail": str(exc)}, status_code=409)

    app.add_exception_handler(StateError, conflict)
    app.add_exception_handler(NotAuthenticated, not_authenticated)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crashed)
