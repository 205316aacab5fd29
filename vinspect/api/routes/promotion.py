"""Model promotion: its state as JSON; fixing criteria, evaluating, signing and promoting from the models page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from vinspect.api.deps import CsrfChecked, ModelActivator, ServicesDep, Viewer, client_source
from vinspect.api.pages import PAGE_RESPONSES, flash_and_redirect
from vinspect.api.promotion import (
    fix_model_criteria,
    promote_model,
    promotion_views,
    rollback_model,
    sign_model_promotion,
    start_evaluation,
)
from vinspect.api.workflow import installed_manifest
from vinspect.models.evaluation_images import IMAGE_NAME, evaluation_dir

__all__ = ["router"]

router = APIRouter()
Segment = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    403: {"description": "forbidden, CSRF, or the password does not match"},
    404: {"description": "no such installed version"},
    409: {"description": "refused by a promotion rule (named in the detail)"},
    422: {"description": "invalid"},
}


class PromotionPublic(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    version: str
    under_control: bool
    criteria: dict[str, Any] | None
    trained_by: str | None
    evaluation: dict[str, Any] | None
    signers: list[str]
    blockers: list[str]
    promoted: bool
    shadow_judged: dict[str, int] | None = None


class PromotionSign(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    password: str = Field(default="", max_length=256)
    reason: str = Field(default="", max_length=2000)


class PromotionPromote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(default="", max_length=256)


def _public(services: ServicesDep, name: str, version: str) -> PromotionPublic:
    view = promotion_views(services, [(name, version)])[(name, version)]
    return PromotionPublic(
        name=name,
        version=version,
        under_control=view.under_control,
        criteria=view.criteria,
        trained_by=view.trained_by,
        evaluation=view.evaluation,
        signers=list(view.signers),
        blockers=list(view.blockers),
        promoted=view.promoted,
        shadow_judged=view.shadow_judged,
    )


@router.get("/api/v1/models/{name}/{version}/promotion", tags=["station"], responses=RESPONSES)
def api_promotion(name: Segment, version: Segment, services: ServicesDep, _user: Viewer) -> PromotionPublic:
    """Criteria, evidence, signatures and what still blocks the promotion of one version."""
    installed_manifest(services, name, version)
    return _public(services, name, version)


@router.post(
    "/api/v1/models/{name}/{version}/promotion/signatures", tags=["station"], status_code=201, responses=RESPONSES
)
def api_sign(
    name: Segment,
    version: Segment,
    body: PromotionSign,
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
) -> PromotionPublic:
    """Sign the promotion (MODEL_PROMOTION, password re-entry); the trainer and a second signature by the
    same person are refused."""
    sign_model_promotion(
        services, user, name, version, password=body.password, reason=body.reason, source=client_source(request)
    )
    return _public(services, name, version)


@router.post("/api/v1/models/{name}/{version}/promotion/promote", tags=["station"], responses=RESPONSES)
def api_promote(
    name: Segment,
    version: Segment,
    body: PromotionPromote,
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
) -> PromotionPublic:
    """Make a candidate that meets its criteria and holds two signatures the active version."""
    promote_model(services, user, name, version, password=body.password, source=client_source(request))
    return _public(services, name, version)


@router.post("/models/{name}/{version}/sign", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def sign_form(
    name: Segment,
    version: Segment,
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
    password: Annotated[str, Form(max_length=256)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Sign from the models page."""

    def sign() -> str:
        state = sign_model_promotion(
            services, user, name, version, password=password, reason=reason, source=client_source(request)
        )
        return f"You signed the promotion of {name} {version} ({len(state.signers)} of 2 signatures)."

    return flash_and_redirect(request, sign, to=f"/models#model-{name}-{version}", refused="Signature refused")


@router.post("/models/{name}/{version}/promote", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def promote_form(
    name: Segment,
    version: Segment,
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
    password: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Promote from the models page."""

    def promote() -> str:
        promote_model(services, user, name, version, password=password, source=client_source(request))
        return f"{name} {version} is now the active version; a running station switches after its golden self-test."

    return flash_and_redirect(
        request, promote, to="/models", refused="Promotion refused", refused_to=f"/models#model-{name}-{version}"
    )


@router.get("/api/v1/models/{name}/{version}/evaluation", tags=["station"], responses=RESPONSES)
def api_evaluation_job(name: Segment, version: Segment, services: ServicesDep, _user: Viewer) -> dict[str, Any]:
    """The newest evaluation started from the app: running, done or failed (with the reason); the
    Models page polls it while one runs. ``{"status": null}``: none since the app started."""
    installed_manifest(services, name, version)
    job = services.evaluations.state(name, version)
    return {"status": None} if job is None else job.to_json()


@router.post("/models/{name}/{version}/criteria", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def criteria_form(
    name: Segment,
    version: Segment,
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
    password: Annotated[str, Form(max_length=256)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    max_false_reject_pct: Annotated[str, Form(max_length=32)] = "",
    max_escape_pct: Annotated[str, Form(max_length=32)] = "",
    min_golden_detection_pct: Annotated[str, Form(max_length=32)] = "",
    min_auroc: Annotated[str, Form(max_length=32)] = "",
    max_latency_ms: Annotated[str, Form(max_length=32)] = "",
    min_shadow_parts: Annotated[str, Form(max_length=32)] = "",
    allow_more_false_rejects: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Fix a candidate's acceptance criteria (signed) from the models page."""
    fields = {
        "max_false_reject_pct": max_false_reject_pct,
        "max_escape_pct": max_escape_pct,
        "min_golden_detection_pct": min_golden_detection_pct,
        "min_auroc": min_auroc,
        "max_latency_ms": max_latency_ms,
        "min_shadow_parts": min_shadow_parts,
        "allow_more_false_rejects": allow_more_false_rejects,
    }

    def fix() -> str:
        fix_model_criteria(
            services, user, name, version, fields, password=password, reason=reason, source=client_source(request)
        )
        return (
            f"Acceptance criteria fixed for {name} {version} and signed by {user.display_name}; "
            "they cannot change. Next: run its evaluation on a frozen set."
        )

    return flash_and_redirect(request, fix, to=f"/models#model-{name}-{version}", refused="Criteria refused")


@router.post("/models/{name}/{version}/evaluate", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def evaluate_form(
    name: Segment,
    version: Segment,
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
    frozen: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Start the candidate's evaluation against the active model on a frozen set (background)."""

    def start() -> str:
        start_evaluation(services, user, name, version, frozen=frozen)
        return f"Evaluation of {name} {version} on {frozen} started; this page shows when it is done."

    return flash_and_redirect(request, start, to=f"/models#model-{name}-{version}", refused="Evaluation refused")


@router.get(
    "/evidence/changed/{name}/{version}/{image}",
    tags=["station"],
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the PNG"},
        401: {"description": "not signed in"},
        403: {"description": "forbidden"},
        404: {"description": "no such version, evaluation or image"},
    },
)
def read_changed_image(
    name: Segment, version: Segment, image: Annotated[str, Path(max_length=40)], services: ServicesDep, _user: Viewer
) -> Response:
    """One heatmap overlay of a changed verdict of the version's current evaluation."""
    view = promotion_views(services, [(name, version)])[(name, version)]
    listed = {e[who].get("image") for e in view.changed or () for who in ("champion", "challenger")}
    if not IMAGE_NAME.match(image) or image not in listed or view.evaluation_sha256 is None:
        raise HTTPException(status_code=404, detail="no such changed-verdict image")
    folder = evaluation_dir(services.data_dir, name, version, view.evaluation_sha256)
    try:
        data = (folder / image).read_bytes()
    except OSError as exc:
        raise HTTPException(status_code=404, detail="changed-verdict image missing") from exc
    return Response(content=data, media_type="image/png")


@router.post("/models/{name}/rollback", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def rollback_form(
    name: Segment,
    request: Request,
    services: ServicesDep,
    user: ModelActivator,
    _csrf: CsrfChecked,
    password: Annotated[str, Form(max_length=256)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Roll the active version back to the one it replaced, from the models page (signed)."""

    def rollback() -> str:
        old, new = rollback_model(services, user, name, password=password, reason=reason, source=client_source(request))
        return (
            f"{name} rolled back from {old} to {new} (signed by {user.display_name}); "
            "a running station switches after its golden self-test."
        )

    return flash_and_redirect(request, rollback, to="/models", refused="Rollback refused")
