"""Live station status and the installed model versions (JSON + pages)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from vinspect.api.deps import ServicesDep, Viewer
from vinspect.api.formatting import number
from vinspect.api.pages import PAGE_RESPONSES, render
from vinspect.api.schemas import ModelPublic, ModelsPublic, StationStatusPublic
from vinspect.errors import VinspectError

__all__ = ["router"]

router = APIRouter()
API_RESPONSES: dict[int | str, dict[str, Any]] = {401: {"description": "not signed in"},
                                                  403: {"description": "forbidden"}}


def _status(services: ServicesDep) -> StationStatusPublic:
    snap = services.status.read()
    return StationStatusPublic(running=snap.running, state=snap.state, stale=snap.stale, age_s=snap.age_s,
                               snapshot=snap.data)


def _models(services: ServicesDep) -> tuple[list[ModelPublic], str | None]:
    try:
        entries = services.registry.list()
    except (VinspectError, OSError, ValueError) as exc:
        return [], f"model registry unreadable: {exc}"
    return [ModelPublic(name=e.name, version=e.version, sha256=e.sha256, active=e.active) for e in entries], None


@router.get("/api/v1/station/status", tags=["station"], responses=API_RESPONSES)
def api_station_status(services: ServicesDep, _user: Viewer) -> StationStatusPublic:
    """The runtime's latest status snapshot (counters, latency, state); never an error."""
    return _status(services)


@router.get("/api/v1/models", tags=["station"], responses=API_RESPONSES)
def api_models(services: ServicesDep, _user: Viewer) -> ModelsPublic:
    """Installed model versions and which one is active."""
    return ModelsPublic(data=_models(services)[0])


@router.get("/station", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def station_page(request: Request, services: ServicesDep, user: Viewer) -> HTMLResponse:
    """Live station status (refreshed every second by static/app.js)."""
    status = _status(services)
    rows = _flatten(status.snapshot)
    return render(request, "station.html", context={"status": status, "rows": rows}, user=user)


@router.get("/models", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def models_page(request: Request, services: ServicesDep, user: Viewer) -> HTMLResponse:
    """Installed model versions."""
    models, problem = _models(services)
    return render(request, "models.html", context={"models": models, "problem": problem}, user=user)


def _flatten(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Nested JSON as dotted (key, value) rows for the status table."""
    if isinstance(value, dict) and depth < 4:
        rows: list[tuple[str, str]] = []
        for key in sorted(value, key=str):
            rows += _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), depth + 1)
        return rows
    return [(prefix, str(number(value))[:200])]
