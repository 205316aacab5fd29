"""The review queue and the item pages where reviewers adjudicate by keyboard."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from vinspect.api.deps import Adjudicator, CsrfChecked, IdempotencyKey, ReadSession, ServicesDep, client_source
from vinspect.api.pages import PAGE_RESPONSES, error_page, evidence_of, flash, redirect, render
from vinspect.api.routes.ncrs import NcrUuid, load_ncr
from vinspect.api.schemas import QueueItemPublic, QueuePublic, ReviewCreate, SampleReviewCreate
from vinspect.api.workflow import adjudicate, detail_text, review_sample
from vinspect.store.canonical import format_utc
from vinspect.store.review_queries import (
    actor_names,
    audited,
    get_inspection,
    is_sampled,
    part_history,
    review_queue,
)

__all__ = ["router"]

router = APIRouter()
InspectionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
API_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"}, 403: {"description": "forbidden, CSRF, or signature refused"},
    404: {"description": "not in the sample"}, 422: {"description": "invalid input"},
}


def _queue(services: Any, db: Any, limit: int = 100) -> list[QueueItemPublic]:
    return [QueueItemPublic(kind=e.kind, id=e.id, reason=e.reason, station_id=e.station_id, part_id=e.part_id,
                            detected_at=format_utc(e.detected_at) if e.detected_at else None)
            for e in review_queue(session=db, sample=services.sample, limit=limit)]


def _item_path(item: QueueItemPublic) -> str:
    return f"/review/{item.id}" if item.kind == "ncr" else f"/samples/{item.id}"


@router.get("/api/v1/queue", tags=["queue"], responses=API_RESPONSES)
def api_queue(services: ServicesDep, db: ReadSession, _user: Adjudicator) -> QueuePublic:
    """Items awaiting review: REVIEW-band and disputed NCRs, then sampled PASS parts."""
    return QueuePublic(data=_queue(services, db))


@router.post("/api/v1/samples/{inspection_id}/review", tags=["queue"], status_code=204, responses=API_RESPONSES)
def api_review_sample(inspection_id: InspectionId, body: SampleReviewCreate, request: Request,
                      services: ServicesDep, user: Adjudicator, _csrf: CsrfChecked, key: IdempotencyKey) -> Response:
    """Record the blind audit of a sampled PASS part (signed by password re-entry); one answer per sample."""
    _check_sampled(services, inspection_id)
    review_sample(services, user, inspection_id, body, source=client_source(request), key=key)
    return Response(status_code=204)


def _check_sampled(services: Any, inspection_id: str) -> None:
    if not is_sampled(inspection_id, services.options.pass_sample_rate):
        raise HTTPException(status_code=404, detail="inspection is not in the PASS audit sample")


@router.get("/queue", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def queue_page(request: Request, services: ServicesDep, db: ReadSession, user: Adjudicator) -> HTMLResponse:
    """The review queue."""
    items = _queue(services, db)
    return render(request, "queue.html", context={"items": items, "paths": [_item_path(i) for i in items]},
                  user=user)


@router.get("/queue/next", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def queue_next(services: ServicesDep, db: ReadSession, _user: Adjudicator,
               after: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    """Go to the first item of the queue, or the one after ``after`` (skip); the queue page when empty."""
    items = _queue(services, db)
    ids = [i.id for i in items]
    if after in ids:
        items = items[ids.index(after) + 1:]
    return redirect(_item_path(items[0]) if items else "/queue?empty=1")


@router.get("/review/{ncr_uuid}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def review_page(ncr_uuid: NcrUuid, request: Request, services: ServicesDep, db: ReadSession,
                user: Adjudicator) -> HTMLResponse:
    """One NCR to adjudicate: image + heatmap overlay, score, threshold, model, history."""
    try:
        doc = load_ncr(db, ncr_uuid)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    image, heatmap = evidence_of(doc)
    part_id = doc.get("serial_number")
    context = {"ncr": doc, "image": image, "heatmap": heatmap, "history": _blinded(services, db, part_id),
               "names": actor_names(session=db),
               "codes": _codes(services, doc)}
    return render(request, "review.html", context=context, user=user)


def _blinded(services: Any, db: Any, part_id: str | None) -> list[dict[str, Any]]:
    """Earlier inspections of the part; a PASS still awaiting its blind audit shows no verdict or score."""
    shown = []
    for row in part_history(part_id, session=db):
        blind = (row.verdict == "PASS" and is_sampled(row.inspection_id, services.options.pass_sample_rate)
                 and not audited(row.inspection_id, session=db))
        shown.append({"inspection_id": row.inspection_id, "verdict": "blind audit sample" if blind else row.verdict,
                      "score": None if blind else row.score, "model_version": row.model_version,
                      "recorded_at": row.recorded_at})
    return shown


def _codes(services: Any, doc: dict[str, Any]) -> list[str]:
    codes = list(services.options.defect_codes)
    machine = doc.get("defect_code")
    if isinstance(machine, str) and machine not in codes:
        codes.insert(0, machine)
    return codes[:9]


@router.post("/review/{ncr_uuid}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def review_form(ncr_uuid: NcrUuid, request: Request, services: ServicesDep, user: Adjudicator,
                _csrf: CsrfChecked, decision: Annotated[str, Form(max_length=32)],
                password: Annotated[str, Form(max_length=256)], reason: Annotated[str, Form(max_length=2000)] = "",
                defect_code: Annotated[str, Form(max_length=64)] = "",
                idempotency_key: Annotated[str, Form(max_length=128)] = "") -> Response:
    """Adjudicate from the item page and move on to the next queue item."""
    default = {"CONFIRMED_DEFECT": f"confirmed {defect_code or 'defect'} on image"}.get(decision, "")
    try:
        body = ReviewCreate.model_validate({"decision": decision, "reason": reason.strip() or default,
                                            "defect_code": defect_code or None, "password": password,
                                            "idempotency_key": idempotency_key or None})
        signed = adjudicate(services, user, ncr_uuid, body, source=client_source(request))
    except ValueError as exc:
        flash(request, f"Review refused: {str(exc).splitlines()[0]}")
        return redirect(f"/review/{ncr_uuid}")
    except HTTPException as exc:
        flash(request, f"Review refused: {detail_text(exc)}")
        return redirect(f"/review/{ncr_uuid}")
    flash(request, f"Recorded {decision} (signed)." if signed is not None
          else "This form was sent before: nothing new was signed.")
    return redirect("/queue/next")


@router.get("/samples/{inspection_id}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def sample_page(inspection_id: InspectionId, request: Request, services: ServicesDep, db: ReadSession,
                user: Adjudicator) -> HTMLResponse:
    """A sampled PASS part shown blind (no verdict, no score)."""
    row = get_inspection(inspection_id, session=db)
    if row is None or row.verdict != "PASS" or not is_sampled(inspection_id, services.options.pass_sample_rate):
        return error_page(request, HTTPException(404, "not in the PASS audit sample"), user=user)
    context = {"inspection_id": inspection_id, "part_id": row.part_id, "station_id": row.station_id,
               "codes": list(services.options.defect_codes)[:9]}
    return render(request, "sample.html", context=context, user=user)


@router.post("/samples/{inspection_id}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def sample_form(inspection_id: InspectionId, request: Request, services: ServicesDep, user: Adjudicator,
                _csrf: CsrfChecked, decision: Annotated[str, Form(max_length=16)],
                password: Annotated[str, Form(max_length=256)], reason: Annotated[str, Form(max_length=2000)] = "",
                defect_code: Annotated[str, Form(max_length=64)] = "",
                idempotency_key: Annotated[str, Form(max_length=128)] = "") -> Response:
    """Record the blind audit and move on."""
    try:
        _check_sampled(services, inspection_id)
        body = SampleReviewCreate.model_validate({
            "decision": decision, "reason": reason.strip() or "blind audit: no defect visible",
            "defect_code": defect_code or None, "password": password,
            "idempotency_key": idempotency_key or None})
        review_sample(services, user, inspection_id, body, source=client_source(request))
    except ValueError as exc:
        flash(request, f"Audit refused: {str(exc).splitlines()[0]}")
        return redirect(f"/samples/{inspection_id}")
    except HTTPException as exc:
        flash(request, f"Audit refused: {detail_text(exc)}")
        return redirect(f"/samples/{inspection_id}")
    return redirect("/queue/next")
