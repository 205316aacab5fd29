"""The quality dashboard (KPIs, p-charts, Pareto, agreement, drift), its charts, alarm acknowledgement, /metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from vinspect.analytics.kpis import KPI_LINES
from vinspect.api.deps import Acknowledger, CsrfChecked, ReadSession, Services, ServicesDep, Viewer, client_source
from vinspect.api.pages import PAGE_RESPONSES, error_page, flash, flash_and_redirect, redirect, render
from vinspect.api.workflow import check_signing_password
from vinspect.errors import StateError, StoreError
from vinspect.quality import charts
from vinspect.quality.dashboard import Dashboard, build_dashboard, display_span, station_chart
from vinspect.quality.validation import validation_scores as _validation_scores
from vinspect.store.alarms import acknowledge_alarm, list_alarms
from vinspect.store.analytics_queries import Window, custom_plans, ncr_code_counts, score_sample, station_hours
from vinspect.store.db import session_scope
from vinspect.store.review_queries import DbSession

__all__ = ["router", "validation_scores", "window_of"]

logger = logging.getLogger(__name__)
router = APIRouter()
Day = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")]
Station = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.:-]*$")]
ChartName = Annotated[str, Path(pattern=r"^(pchart|pareto-codes|pareto-stations|drift)(-[A-Za-z0-9_.:-]{1,64})?\.svg$")]


def window_of(since: str | None, until: str | None, *, now: datetime | None = None, days: int = 7) -> Window:
    """``since``..``until`` as whole UTC days (until inclusive); the last ``days`` days by default."""
    today = (now or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    end = (datetime.strptime(until, "%Y-%m-%d").replace(tzinfo=UTC) if until else today) + timedelta(days=1)
    start = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC) if since else end - timedelta(days=days)
    if end <= start:
        raise HTTPException(
            422, [{"loc": ["query", "until"], "msg": "until must not be before since", "type": "value_error"}]
        )
    return Window(start, end)


def validation_scores(services: Services) -> dict[str, Sequence[float]]:
    return _validation_scores(services.registry)


def _parse(request: Request, since: str | None, until: str | None) -> Window:
    try:
        return window_of(since, until)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/dashboard", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def dashboard_page(
    request: Request,
    services: ServicesDep,
    db: ReadSession,
    user: Viewer,
    since: Day = None,
    until: Day = None,
    station: Station = None,
    part: Station = None,
) -> HTMLResponse:
    """KPIs with intervals by station, shift and model version; p-charts with Nelson rules; Pareto; kappa; drift."""
    try:
        window = _parse(request, since, until)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    board: Dashboard = build_dashboard(
        db, window, station_id=station or None, part_number=part or None, validation_scores=validation_scores(services)
    )
    query = f"since={window.since:%Y-%m-%d}&until={(window.until - timedelta(days=1)):%Y-%m-%d}"
    if station:
        query += f"&station={station}"
    if part:
        query += f"&part={part}"
    return render(
        request,
        "dashboard.html",
        user=user,
        context={
            "b": board,
            "lines": KPI_LINES,
            "query": query,
            "station": station or "",
            "part": part or "",
            "since": f"{window.since:%Y-%m-%d}",
            "until": f"{(window.until - timedelta(days=1)):%Y-%m-%d}",
            "alarms": list_alarms(session=db, limit=20),
            "evaluator": services.evaluator.state if services.evaluator is not None else None,
        },
    )


def _chart(
    db: DbSession, services: Services, name: str, window: Window, station: str | None, part: str | None = None
) -> bytes:
    kind, _, arg = name.removesuffix(".svg").partition("-")
    custom_plans(db)
    if name.startswith("pareto-codes"):
        from vinspect.analytics.pareto import pareto

        return charts.pareto_chart(
            pareto(ncr_code_counts(window, session=db, station_id=station, part_number=part)),
            title="NCRs by defect code (machine code)",
        )
    if name.startswith("pareto-stations"):
        from vinspect.analytics.pareto import pareto

        return charts.pareto_chart(
            pareto(ncr_code_counts(window, session=db, by="station", part_number=part)), title="NCRs by station"
        )
    if kind == "pchart" and arg:
        span = display_span(window)
        pc = station_chart(
            db,
            window,
            arg,
            span=span,
            hours=station_hours(window, session=db, station_id=arg, part_number=part, span=span),
        )
        if not pc.hours:
            raise HTTPException(404, f"no subgroups of station {arg} in the window")
        return charts.p_chart(pc)
    if kind == "drift" and arg:
        from vinspect.quality.dashboard import drift_figure

        expected = validation_scores(services).get(arg, ())
        live = score_sample(window, session=db, model_version=arg)
        if not live:
            raise HTTPException(404, f"no scored parts of model version {arg} in the window")
        return charts.drift_chart(drift_figure(arg, expected, live))
    raise HTTPException(404, f"no chart {name}")


@router.get(
    "/dashboard/charts/{name}",
    tags=["pages"],
    responses={**PAGE_RESPONSES, 200: {"content": {"image/svg+xml": {}}, "description": "SVG chart"}},
)
def dashboard_chart(
    name: ChartName,
    request: Request,
    services: ServicesDep,
    db: ReadSession,
    user: Viewer,
    since: Day = None,
    until: Day = None,
    station: Station = None,
    part: Station = None,
) -> Response:
    """One dashboard chart, drawn on the server (SVG)."""
    window = _parse(request, since, until)
    return Response(
        _chart(db, services, name, window, station or None, part or None),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=60"},
    )


@router.post("/alarms/{alarm_id}/acknowledge", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def acknowledge_form(
    alarm_id: Annotated[int, Path(ge=1)],
    request: Request,
    services: ServicesDep,
    user: Acknowledger,
    _csrf: CsrfChecked,
    password: Annotated[str, Form(max_length=256)],
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Acknowledge an alarm with a signed reason (password re-entry, meaning AUTHORSHIP)."""
    if not reason.strip():
        flash(request, f"Alarm {alarm_id} not acknowledged: write a reason (what was seen or done).")
        return redirect("/dashboard#alarms")
    with session_scope(services.store.engine, readonly=True) as db:
        known = {a.id: a for a in list_alarms(session=db, limit=10_000)}
    if alarm_id not in known:
        return error_page(request, HTTPException(404, f"no alarm {alarm_id}"), user=user)
    if known[alarm_id].acknowledged_at is not None:
        return error_page(request, HTTPException(409, f"alarm {alarm_id} is already acknowledged"), user=user)

    def acknowledge() -> str:
        check_signing_password(services, user, password, source=client_source(request), what=f"alarm {alarm_id}")
        with session_scope(services.store.engine) as session:
            acknowledge_alarm(
                alarm_id, session=session, user_id=user.user_id, reason=reason, source=client_source(request)
            )
        return f"Alarm {alarm_id} acknowledged (signed)."

    try:
        return flash_and_redirect(
            request, acknowledge, to="/dashboard#alarms", refused=f"Alarm {alarm_id} not acknowledged"
        )
    except (StateError, StoreError) as exc:
        return error_page(request, HTTPException(409, str(exc)), user=user)


@router.get("/metrics", tags=["metrics"], responses={200: {"content": {"text/plain": {}}}})
def metrics(services: ServicesDep) -> Response:
    """Prometheus text: the dashboard's figures over the last 24 h (no record contents, no sign-in)."""
    from vinspect.quality.metrics import render_metrics

    evaluator = services.evaluator.state if services.evaluator is not None else None
    with session_scope(services.store.engine, readonly=True) as db:
        body, content_type = render_metrics(db, now=datetime.now(UTC), evaluator=evaluator)
    return Response(body, media_type=content_type)
