"""The plant overview: every station that reports into this store (issue 18), page + JSON."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from vinspect.api.deps import CsrfChecked, ModelActivator, ReadSession, ServicesDep, Viewer, client_source
from vinspect.api.distribution import distribute_model
from vinspect.api.pages import PAGE_RESPONSES, flash_and_redirect, render
from vinspect.api.permissions import Permission, allowed
from vinspect.errors import VinspectError
from vinspect.models.manifest import read_manifest
from vinspect.models.risk import activation_warnings
from vinspect.store.canonical import format_utc
from vinspect.store.distribution import Assignment, current_assignments
from vinspect.store.station_configs import ConfigApproval, approvals_by_version
from vinspect.store.stations import STALE_PERIODS, list_stations

__all__ = ["router"]

router = APIRouter()
Text64 = Annotated[str | None, Query(max_length=64)]
Segment = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
DISTRIBUTE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    403: {"description": "forbidden, CSRF, or the password does not match"},
    404: {"description": "no such installed version"},
    409: {
        "description": "refused: not approved (promotion control, stated risk not accepted), an unknown station, "
        "or a different bundle stored under this version"
    },
    422: {"description": "no station chosen, or a missing reason"},
}
API_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    403: {"description": "forbidden"},
}


def _public(view: Any, assignment: Assignment | None = None, approval: ConfigApproval | None = None) -> dict[str, Any]:
    row = asdict(view)
    for key in ("started_at", "heartbeat_at"):
        row[key] = format_utc(row[key])
    row["assignment"] = None if assignment is None else _assignment(assignment)
    row["config_approved_by"] = None if approval is None else approval.approved_by
    row["config_approved_at"] = None if approval is None else format_utc(approval.approved_at)
    return row


def _assignment(a: Assignment) -> dict[str, Any]:
    out = asdict(a)
    for key in ("assigned_at", "outcome_at"):
        out[key] = None if out[key] is None else format_utc(out[key])
    return out


@router.get("/api/v1/plant/stations", tags=["station"], responses=API_RESPONSES)
def api_plant_stations(
    db: ReadSession, _user: Viewer, site_id: Text64 = None, line_id: Text64 = None
) -> dict[str, Any]:
    """Every registered station's latest report (``stale`` when its heartbeat is overdue) and its current
    model assignment with the outcome the station reported (``SWITCHED``, ``REFUSED`` and why, or null
    while pending)."""
    views = list_stations(session=db, site_id=site_id or None, line_id=line_id or None)
    assigned = current_assignments(session=db)
    approvals = approvals_by_version(session=db)
    return {
        "data": [
            _public(v, assigned.get(v.station_id), approvals.get((v.station_id, v.config_sha256 or ""))) for v in views
        ],
        "count": len(views),
    }


class DistributionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    stations: list[str] = Field(min_length=1, max_length=500)
    password: str = Field(default="", max_length=256)
    reason: str = Field(default="", max_length=2000)
    accept_risk: bool = False


@router.post(
    "/api/v1/models/{name}/{version}/distribution", tags=["station"], status_code=201, responses=DISTRIBUTE_RESPONSES
)
def api_distribute(
    name: Segment,
    version: Segment,
    body: DistributionBody,
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
) -> dict[str, Any]:
    """Assign an installed, approved version to registered stations (signed by password re-entry); each
    station pulls it, verifies its sha256, runs its golden self-test and reports the outcome."""
    assigned = distribute_model(
        services,
        user,
        name,
        version,
        stations=body.stations,
        password=body.password,
        reason=body.reason,
        accept_risk=body.accept_risk,
        source=client_source(request),
    )
    return {"data": [_assignment(a) for a in assigned], "count": len(assigned)}


@router.post("/plant/distribute", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def distribute_form(
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
    model: Annotated[str, Form(max_length=200)] = "",
    station: Annotated[list[str] | None, Form()] = None,
    password: Annotated[str, Form(max_length=256)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    accept_risk: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Distribute from the plant page."""
    name, _, version = model.partition("@")

    def assign() -> str:
        if not name or not version:
            raise HTTPException(status_code=422, detail="choose a model version")
        assigned = distribute_model(
            services,
            user,
            name,
            version,
            stations=station or [],
            password=password,
            reason=reason,
            accept_risk=accept_risk == "yes",
            source=client_source(request),
        )
        return (
            f"{name} {version} assigned to {', '.join(a.station_id for a in assigned)}. Each station pulls "
            "it, verifies it, runs its golden self-test and reports the switch (or why it refused) below."
        )

    return flash_and_redirect(
        request, assign, to="/plant", refused="Distribution refused", refused_to="/plant#distribute"
    )


def _distributable(services: ServicesDep) -> tuple[list[dict[str, Any]], str | None]:
    """Installed versions the form offers, with their warnings (a risk to accept), or why none can be read."""
    try:
        return [
            {
                "key": f"{e.name}@{e.version}",
                "name": e.name,
                "version": e.version,
                "sha256": e.sha256,
                "warnings": list(activation_warnings(read_manifest(e.path))),
            }
            for e in services.registry.list()
        ], None
    except (VinspectError, OSError, ValueError) as exc:
        return [], f"model registry unreadable: {exc}"


@router.get("/plant", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def plant_page(
    request: Request,
    db: ReadSession,
    user: Viewer,
    services: ServicesDep,
    site_id: Text64 = None,
    line_id: Text64 = None,
) -> HTMLResponse:
    """Plant overview: state, rate, reject share, latency and model of every station."""
    everything = list_stations(session=db)
    shown = [v for v in everything if (not site_id or v.site_id == site_id) and (not line_id or v.line_id == line_id)]
    context = {
        "stations": shown,
        "total": len(everything),
        "assigned": current_assignments(session=db),
        "as_of": datetime.now(UTC),
        "stale_periods": STALE_PERIODS,
        "sites": sorted({v.site_id for v in everything if v.site_id}),
        "lines": sorted({v.line_id for v in everything if v.line_id}),
        "f": {"site_id": site_id or "", "line_id": line_id or ""},
        "running": sum(1 for v in shown if not v.stale and v.state != "STOPPED"),
        "rate": sum(v.parts_per_s or 0.0 for v in shown if not v.stale and v.state != "STOPPED"),
        "can_distribute": allowed(user.role, Permission.MODELS),
        "approvals": approvals_by_version(session=db),
    }
    if context["can_distribute"]:
        context["distributable"], context["registry_problem"] = _distributable(services)
    return render(request, "plant.html", context=context, user=user)
