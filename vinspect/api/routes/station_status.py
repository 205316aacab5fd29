"""Live station status and the installed model versions (JSON + pages)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response

from vinspect.api.deps import CsrfChecked, ModelActivator, ServicesDep, Viewer, client_source
from vinspect.api.formatting import number
from vinspect.api.model_evaluation import frozen_choices
from vinspect.api.pages import PAGE_RESPONSES, flash_and_redirect, render
from vinspect.api.permissions import Permission, allowed
from vinspect.api.promotion import promotion_views, rollback_targets
from vinspect.api.schemas import ModelActivate, ModelPublic, ModelsPublic, StationStatusPublic
from vinspect.api.workflow import activate_model
from vinspect.errors import VinspectError
from vinspect.models.evaluation_images import TITLES
from vinspect.models.manifest import ModelManifest, read_manifest
from vinspect.models.risk import activation_warnings, stated_lines

__all__ = ["router"]

router = APIRouter()
API_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    403: {"description": "forbidden"},
}
ACTIVATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **API_RESPONSES,
    403: {"description": "forbidden, CSRF, or the password does not match"},
    404: {"description": "no such installed version"},
    409: {"description": "the bundle cannot meet its targets and its stated rates were not accepted"},
    422: {"description": "invalid"},
}
Segment = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def _status(services: ServicesDep) -> StationStatusPublic:
    snap = services.status.read()
    return StationStatusPublic(
        running=snap.running, state=snap.state, stale=snap.stale, age_s=snap.age_s, snapshot=snap.data
    )


def _risk(manifest: ModelManifest) -> dict[str, Any]:
    """The stated rates (without the warning lines) and the warnings, for ModelPublic."""
    lines = [line for line in stated_lines(manifest) if not line.startswith("WARNING: ")]
    return {"stated": lines, "warnings": list(activation_warnings(manifest))}


def _models(services: ServicesDep) -> tuple[list[ModelPublic], str | None]:
    try:
        models = []
        for e in services.registry.list():
            manifest = read_manifest(e.path)
            models.append(
                ModelPublic(name=e.name, version=e.version, sha256=e.sha256, active=e.active, **_risk(manifest))
            )
    except (VinspectError, OSError, ValueError) as exc:
        return [], f"model registry unreadable: {exc}"
    return models, None


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
    promotions = promotion_views(services, [(m.name, m.version) for m in models]) if not problem else {}
    rollbacks = rollback_targets(services, [(m.name, m.version) for m in models if m.active]) if not problem else {}
    context = {
        "models": models,
        "problem": problem,
        "can_activate": allowed(user.role, Permission.MODELS),
        "promotions": {f"{k[0]}@{k[1]}": v for k, v in promotions.items()},
        "rollbacks": rollbacks,
        "change_titles": TITLES,
        "frozen_sets": frozen_choices(services.data_dir),
    }
    return render(request, "models.html", context=context, user=user)


@router.post("/api/v1/models/{name}/{version}/activate", tags=["station"], responses=ACTIVATE_RESPONSES)
def api_activate_model(
    name: Segment,
    version: Segment,
    body: ModelActivate,
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
) -> ModelPublic:
    """Make an installed version active (signed by password re-entry; a bundle that cannot meet its
    targets needs ``accept_risk`` and a reason, recorded as a MODEL_PROMOTION signature)."""
    manifest = activate_model(services, user, name, version, body, source=client_source(request))
    entry = next(e for e in services.registry.list() if e.name == name and e.version == version)
    return ModelPublic(name=name, version=version, sha256=manifest.sha256, active=entry.active, **_risk(manifest))


@router.post("/models/{name}/{version}/activate", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def activate_form(
    name: Segment,
    version: Segment,
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
    password: Annotated[str, Form(max_length=256)] = "",
    accept_risk: Annotated[str, Form(max_length=8)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Activate from the models page (password re-entry; the stated risk accepted explicitly)."""
    body = ModelActivate(password=password, accept_risk=accept_risk == "yes", reason=reason)

    def activate() -> str:
        activate_model(services, user, name, version, body, source=client_source(request))
        return f"{name} {version} is now active (signed" + (", stated risk accepted)." if body.accept_risk else ").")

    return flash_and_redirect(request, activate, to="/models", refused="Activation refused")


def _flatten(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Nested JSON as dotted (key, value) rows for the status table."""
    if isinstance(value, dict) and depth < 4:
        rows: list[tuple[str, str]] = []
        for key in sorted(value, key=str):
            rows += _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), depth + 1)
        return rows
    return [(prefix, str(number(value))[:200])]
