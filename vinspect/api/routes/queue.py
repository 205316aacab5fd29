"""The review queue and the item pages where reviewers adjudicate by keyboard."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from vinspect.api.auth import AuthUser
from vinspect.api.catalogue import KEYED, defect_catalogue, review_codes
from vinspect.api.deps import (
    Adjudicator,
    CsrfChecked,
    IdempotencyKey,
    ReadSession,
    Services,
    ServicesDep,
    client_source,
)
from vinspect.api.formatting import age
from vinspect.api.pages import (
    PAGE_RESPONSES,
    error_page,
    evidence_of,
    flash,
    redirect,
    refusal,
    refused_form,
    render,
)
from vinspect.api.routes.ncrs import NcrUuid, load_ncr
from vinspect.api.schemas import QueueItemPublic, QueuePublic, ReviewCreate, SampleReviewCreate
from vinspect.api.shadow_review import shadow_views
from vinspect.api.workflow import adjudicate, review_sample
from vinspect.store.canonical import format_utc
from vinspect.store.pass_evidence import pass_evidence_of
from vinspect.store.review_queries import (
    DbSession,
    QueueScope,
    actor_names,
    audited,
    get_inspection,
    is_sampled,
    part_history,
    review_queue,
)
from vinspect.store.shadow_judgements import ShadowJudgement, judgements

__all__ = ["router"]

router = APIRouter()
InspectionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
API_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    403: {"description": "forbidden, CSRF, or signature refused"},
    404: {"description": "not in the sample"},
    422: {"description": "invalid input"},
}


Text64 = Annotated[str | None, Query(max_length=64)]


def _scope(site_id: str | None, line_id: str | None, station_id: str | None) -> QueueScope:
    return QueueScope(site_id=site_id or None, line_id=line_id or None, station_id=station_id or None)


def _queue(services: Any, db: Any, limit: int = 100, scope: QueueScope | None = None) -> list[QueueItemPublic]:
    # A PASS sample is audited blind: no part id (it may name the answer), no score, no code.
    return [
        QueueItemPublic(
            kind=e.kind,
            id=e.id,
            reason=e.reason,
            station_id=e.station_id,
            part_id=e.part_id if e.kind == "ncr" else None,
            detected_at=format_utc(e.detected_at) if e.detected_at else None,
            ncr_number=e.ncr_number,
            score=e.score,
            defect_code=e.defect_code,
        )
        for e in review_queue(session=db, sample=services.sample, limit=limit, scope=scope or QueueScope())
    ]


def _item_path(item: QueueItemPublic) -> str:
    return f"/review/{item.id}" if item.kind == "ncr" else f"/samples/{item.id}"


@router.get("/api/v1/queue", tags=["queue"], responses=API_RESPONSES)
def api_queue(
    services: ServicesDep,
    db: ReadSession,
    _user: Adjudicator,
    site_id: Text64 = None,
    line_id: Text64 = None,
    station_id: Text64 = None,
) -> QueuePublic:
    """Items awaiting review: REVIEW-band and disputed NCRs, then sampled PASS parts (optionally of one
    site, line or station)."""
    return QueuePublic(data=_queue(services, db, scope=_scope(site_id, line_id, station_id)))


@router.post("/api/v1/samples/{inspection_id}/review", tags=["queue"], status_code=204, responses=API_RESPONSES)
def api_review_sample(
    inspection_id: InspectionId,
    body: SampleReviewCreate,
    request: Request,
    services: ServicesDep,
    user: Adjudicator,
    _csrf: CsrfChecked,
    key: IdempotencyKey,
) -> Response:
    """Record the blind audit of a sampled PASS part (signed by password re-entry); one answer per sample."""
    _check_sampled(services, inspection_id)
    review_sample(services, user, inspection_id, body, source=client_source(request), key=key)
    return Response(status_code=204)


def _check_sampled(services: Any, inspection_id: str) -> None:
    if not is_sampled(inspection_id, services.options.pass_sample_rate):
        raise HTTPException(status_code=404, detail="inspection is not in the PASS audit sample")


def _shadow_judged(db: DbSession) -> dict[str, dict[str, ShadowJudgement]]:
    """Every judged shadow disagreement, by candidate then inspection id."""
    out: dict[str, dict[str, ShadowJudgement]] = {}
    for j in judgements(session=db):
        out.setdefault(j.candidate, {})[j.inspection_id] = j
    return out


@router.get("/queue", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def queue_page(
    request: Request,
    services: ServicesDep,
    db: ReadSession,
    user: Adjudicator,
    site_id: Text64 = None,
    line_id: Text64 = None,
    station_id: Text64 = None,
) -> HTMLResponse:
    """The review queue (filters: site, line, station)."""
    items = _queue(services, db, scope=_scope(site_id, line_id, station_id))
    return render(
        request,
        "queue.html",
        user=user,
        context={
            "items": items,
            "paths": [_item_path(i) for i in items],
            "ages": [age(i.detected_at) for i in items],
            "shadow": shadow_views(services.data_dir, session=db),
            "shadow_judged": _shadow_judged(db),
            "f": {"site_id": site_id or "", "line_id": line_id or "", "station_id": station_id or ""},
        },
    )


@router.get("/queue/next", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def queue_next(
    services: ServicesDep,
    db: ReadSession,
    _user: Adjudicator,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Go to the first item of the queue, or the one after ``after`` (skip); the queue page when empty."""
    items = _queue(services, db)
    ids = [i.id for i in items]
    if after in ids:
        items = items[ids.index(after) + 1 :]
    return redirect(_item_path(items[0]) if items else "/queue?empty=1")


@router.get("/review/{ncr_uuid}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def review_page(
    ncr_uuid: NcrUuid, request: Request, services: ServicesDep, db: ReadSession, user: Adjudicator
) -> HTMLResponse:
    """One NCR to adjudicate: image + heatmap overlay, score, threshold, model, history."""
    try:
        context = _review_context(services, db, ncr_uuid)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    return render(request, "review.html", context=context, user=user)


def _blinded(services: Services, db: DbSession, part_id: str | None) -> list[dict[str, Any]]:
    """Earlier inspections of the part; a PASS still awaiting its blind audit shows no verdict or score."""
    shown = []
    for row in part_history(part_id, session=db):
        blind = (
            row.verdict == "PASS"
            and is_sampled(row.inspection_id, services.options.pass_sample_rate)
            and not audited(row.inspection_id, session=db)
        )
        shown.append(
            {
                "inspection_id": row.inspection_id,
                "verdict": "blind audit sample" if blind else row.verdict,
                "score": None if blind else row.score,
                "model_version": row.model_version,
                "recorded_at": row.recorded_at,
            }
        )
    return shown


def _review_context(services: Services, db: DbSession, ncr_uuid: str) -> dict[str, Any]:
    doc = load_ncr(db, ncr_uuid)
    image, heatmap = evidence_of(doc)
    inference = doc.get("inference") or {}
    catalogue = defect_catalogue(
        services.registry,
        services.options.defect_codes,
        model_name=inference.get("model_name"),
        model_version=inference.get("model_version"),
    )
    machine = doc.get("defect_code") if isinstance(doc.get("defect_code"), str) else None
    history = _blinded(services, db, doc.get("serial_number"))
    return {
        "ncr": doc,
        "image": image,
        "heatmap": heatmap,
        "history": history,
        "names": actor_names(session=db),
        "codes": review_codes(catalogue, machine),
        "keyed": KEYED,
        "kept": {"decision": "", "reason": "", "defect_code": machine or ""},
    }


def _refused(
    request: Request, services: Services, user: AuthUser, ncr_uuid: str, message: str, status: int, kept: dict[str, str]
) -> Response:
    """The item page again, with the error and everything the reviewer chose (only the password is cleared)."""
    return refused_form(
        request,
        services,
        user,
        template="review.html",
        error=f"Not signed: {message}",
        status=status,
        kept=kept,
        context_of=lambda db: _review_context(services, db, ncr_uuid),
    )


@router.post("/review/{ncr_uuid}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def review_form(
    ncr_uuid: NcrUuid,
    request: Request,
    services: ServicesDep,
    user: Adjudicator,
    _csrf: CsrfChecked,
    decision: Annotated[str, Form(max_length=32)],
    password: Annotated[str, Form(max_length=256)],
    reason: Annotated[str, Form(max_length=2000)] = "",
    defect_code: Annotated[str, Form(max_length=64)] = "",
    idempotency_key: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Adjudicate from the item page and move on to the next queue item.

    Only what the reviewer sees in the form is signed: an empty reason is refused, never filled in
    on the server. A false reject records no defect code.
    """
    code = "" if decision == "FALSE_REJECT" else defect_code
    kept = {"decision": decision, "reason": reason, "defect_code": code}
    if not reason.strip():
        return _refused(request, services, user, ncr_uuid, "a review needs a reason: write what you saw", 422, kept)
    try:
        body = ReviewCreate.model_validate(
            {
                "decision": decision,
                "reason": reason.strip(),
                "defect_code": code or None,
                "password": password,
                "idempotency_key": idempotency_key or None,
            }
        )
        signed = adjudicate(services, user, ncr_uuid, body, source=client_source(request))
    except (ValueError, HTTPException) as exc:
        return _refused(request, services, user, ncr_uuid, *refusal(exc), kept)
    flash(
        request,
        f"Recorded {decision} (signed)."
        if signed is not None
        else "This form was sent before: nothing new was signed.",
    )
    return redirect("/queue/next")


@router.get("/samples/{inspection_id}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def sample_page(
    inspection_id: InspectionId, request: Request, services: ServicesDep, db: ReadSession, user: Adjudicator
) -> HTMLResponse:
    """A sampled PASS part shown blind (no verdict, no score, no part id)."""
    try:
        context = _sample_context(services, db, inspection_id)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    return render(request, "sample.html", context=context, user=user)


def _sample_context(services: Services, db: DbSession, inspection_id: str) -> dict[str, Any]:
    row = get_inspection(inspection_id, session=db)
    if row is None or row.verdict != "PASS" or not is_sampled(inspection_id, services.options.pass_sample_rate):
        raise HTTPException(404, "not in the PASS audit sample")
    catalogue = defect_catalogue(
        services.registry, services.options.defect_codes, model_name=row.model_name, model_version=row.model_version
    )
    image, heatmap = pass_evidence_of(inspection_id, session=db)
    return {
        "inspection_id": inspection_id,
        "station_id": row.station_id,
        "codes": list(catalogue),
        "keyed": KEYED,
        "image": image,
        "heatmap": heatmap,
        "kept": {"decision": "", "reason": "", "defect_code": ""},
    }


@router.post("/samples/{inspection_id}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def sample_form(
    inspection_id: InspectionId,
    request: Request,
    services: ServicesDep,
    user: Adjudicator,
    _csrf: CsrfChecked,
    decision: Annotated[str, Form(max_length=16)],
    password: Annotated[str, Form(max_length=256)],
    reason: Annotated[str, Form(max_length=2000)] = "",
    defect_code: Annotated[str, Form(max_length=64)] = "",
    idempotency_key: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Record the blind audit, confirm it, and move on."""
    code = "" if decision == "CONFORMS" else defect_code
    kept = {"decision": decision, "reason": reason, "defect_code": code}
    try:
        _check_sampled(services, inspection_id)
        if not reason.strip():
            raise HTTPException(422, "a blind audit needs a reason: write what you checked")
        body = SampleReviewCreate.model_validate(
            {
                "decision": decision,
                "reason": reason.strip(),
                "defect_code": code or None,
                "password": password,
                "idempotency_key": idempotency_key or None,
            }
        )
        review_sample(services, user, inspection_id, body, source=client_source(request))
    except (ValueError, HTTPException) as exc:
        message, status = refusal(exc)
        return refused_form(
            request,
            services,
            user,
            template="sample.html",
            error=f"Not signed: {message}",
            status=status,
            kept=kept,
            context_of=lambda db: _sample_context(services, db, inspection_id),
        )
    verdict = "conforms" if decision == "CONFORMS" else f"escape ({code or 'no code'})"
    flash(request, f"Blind audit of {inspection_id} recorded: {verdict} (signed).")
    return redirect("/queue/next")
