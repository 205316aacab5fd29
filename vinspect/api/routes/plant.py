"""The plant overview: every station that reports into this store (issue 18), page + JSON."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from vinspect.api.deps import ReadSession, Viewer
from vinspect.api.pages import PAGE_RESPONSES, render
from vinspect.store.canonical import format_utc
from vinspect.store.station_configs import ConfigApproval, approvals_by_version
from vinspect.store.stations import STALE_PERIODS, list_stations

__all__ = ["router"]

router = APIRouter()
Text64 = Annotated[str | None, Query(max_length=64)]
API_RESPONSES: dict[int | str, dict[str, Any]] = {401: {"description": "not signed in"},
                                                  403: {"description": "forbidden"}}


def _public(view: Any, approval: ConfigApproval | None) -> dict[str, Any]:
    row = asdict(view)
    for key in ("started_at", "heartbeat_at"):
        row[key] = format_utc(row[key])
    row["config_approved_by"] = None if approval is None else approval.approved_by
    row["config_approved_at"] = None if approval is None else format_utc(approval.approved_at)
    return row


@router.get("/api/v1/plant/stations", tags=["station"], responses=API_RESPONSES)
def api_plant_stations(db: ReadSession, _user: Viewer, site_id: Text64 = None,
                       line_id: Text64 = None) -> dict[str, Any]:
    """Every registered station's latest report; ``stale`` when its heartbeat is overdue."""
    views = list_stations(session=db, site_id=site_id or None, line_id=line_id or None)
    approvals = approvals_by_version(session=db)
    return {"data": [_public(v, approvals.get((v.station_id, v.config_sha256 or ""))) for v in views],
            "count": len(views)}


@router.get("/plant", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def plant_page(request: Request, db: ReadSession, user: Viewer, site_id: Text64 = None,
               line_id: Text64 = None) -> HTMLResponse:
    """Plant overview: state, rate, reject share, latency and model of every station."""
    everything = list_stations(session=db)
    shown = [v for v in everything
             if (not site_id or v.site_id == site_id) and (not line_id or v.line_id == line_id)]
    context = {
        "stations": shown, "total": len(everything), "as_of": datetime.now(UTC), "stale_periods": STALE_PERIODS,
        "sites": sorted({v.site_id for v in everything if v.site_id}),
        "lines": sorted({v.line_id for v in everything if v.line_id}),
        "f": {"site_id": site_id or "", "line_id": line_id or ""},
        "running": sum(1 for v in shown if not v.stale and v.state != "STOPPED"),
        "rate": sum(v.parts_per_s or 0.0 for v in shown if not v.stale and v.state != "STOPPED"),
        "approvals": approvals_by_version(session=db),
    }
    return render(request, "plant.html", context=context, user=user)
