"""NCRs: list with filters, detail with full history, review / disposition / dispute (JSON + pages)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from vinspect.api.auth import AuthUser
from vinspect.api.deps import (
    Adjudicator,
    Auditor,
    CsrfChecked,
    Dispositioner,
    Disputer,
    IdempotencyKey,
    ReadSession,
    Services,
    ServicesDep,
    Viewer,
    client_source,
)
from vinspect.api.pages import (
    PAGE_RESPONSES,
    error_page,
    evidence_of,
    flash,
    flash_and_redirect,
    redirect,
    refusal,
    refused_form,
    render,
)
from vinspect.api.permissions import Permission, allowed
from vinspect.api.schemas import (
    AuditRecordPublic,
    AuditRecordsPublic,
    DispositionCreate,
    DisputeCreate,
    NcrPublic,
    NcrsPublic,
    NcrSummaryPublic,
    ReviewCreate,
)
from vinspect.api.workflow import adjudicate, dispose, dispute, invalid, supersede
from vinspect.store.canonical import format_utc
from vinspect.store.db import session_scope
from vinspect.store.lifecycle import verify_signature
from vinspect.store.ncr import NcrFilter, NcrStatus
from vinspect.store.repository import count_ncrs, get_ncr, resolve_ncr
from vinspect.store.review_queries import DbSession, actor_names, audit_for_ncr, ncr_summaries

__all__ = ["NcrUuid", "StatusFilter", "load_ncr", "router"]

router = APIRouter()
NCR_REF_PATTERN = r"^(?:[0-9a-f-]{36}|[Nn][Cc][Rr]-\d{4}-\d{1,12})$"


def _ncr_uuid_of(
    ncr_uuid: Annotated[
        str, Path(pattern=NCR_REF_PATTERN, description="the NCR's uuid or its number (NCR-2026-000001)")
    ],
    services: ServicesDep,
) -> str:
    """The uuid of the NCR a path names by uuid or by number. An unknown number is passed on as
    it is, so the route's own permission check runs first and then answers 404."""
    if not ncr_uuid.upper().startswith("NCR-"):
        return ncr_uuid
    with session_scope(services.store.engine, readonly=True) as db:
        return resolve_ncr(ncr_uuid.upper(), session=db) or ncr_uuid


NcrUuid = Annotated[str, Depends(_ncr_uuid_of)]
API_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    403: {"description": "forbidden, CSRF, or signature refused"},
    404: {"description": "no such NCR"},
    409: {"description": "not allowed in the NCR's status"},
}
StatusName = Literal["OPEN", "CONTAINED", "UNDER_REVIEW", "DISPOSITIONED", "CLOSED", "VOID"]
# "" is what a form's "any" option sends: the same as leaving the filter out.
StatusFilter = Annotated[Literal[StatusName, ""] | None, Query(description="NCR status; empty or absent: any")]
Text64 = Annotated[str | None, Query(max_length=64)]
Time = Annotated[datetime | None, Query()]


def _filters(
    status: str | None,
    station_id: str | None,
    defect_code: str | None,
    since: datetime | None,
    until: datetime | None,
    site_id: str | None = None,
    line_id: str | None = None,
) -> NcrFilter:
    def utc(value: datetime | None) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        raise invalid("since/until", "times need a UTC offset, e.g. 2026-01-01T00:00:00Z", where="query")

    return NcrFilter(
        status=NcrStatus(status) if status else None,
        station_id=station_id or None,
        defect_code=defect_code or None,
        since=utc(since),
        until=utc(until),
        site_id=site_id or None,
        line_id=line_id or None,
    )


def load_ncr(db: DbSession, ncr_uuid: str) -> dict[str, Any]:
    """The NCR document with each signature's verification result; 404 when unknown."""
    doc = get_ncr(ncr_uuid, session=db)
    if doc is None:
        raise HTTPException(status_code=404, detail="no such NCR")
    doc["signatures"] = [{**s, "valid": verify_signature(int(s["id"]), session=db)} for s in doc["signatures"]]
    return doc


@router.get("/api/v1/ncrs", tags=["ncrs"], responses=API_RESPONSES)
def api_list_ncrs(
    db: ReadSession,
    _user: Viewer,
    status: StatusFilter = None,
    station_id: Text64 = None,
    defect_code: Text64 = None,
    since: Time = None,
    until: Time = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    site_id: Text64 = None,
    line_id: Text64 = None,
) -> NcrsPublic:
    """NCRs in number order, filtered."""
    filters = _filters(status, station_id, defect_code, since, until, site_id, line_id)
    rows = ncr_summaries(filters, session=db, limit=limit, offset=offset)
    data = [NcrSummaryPublic.model_validate({**asdict(r), "detected_at": format_utc(r.detected_at)}) for r in rows]
    return NcrsPublic(data=data, count=count_ncrs(filters, session=db))


@router.get("/api/v1/ncrs/{ncr_uuid}", tags=["ncrs"], responses=API_RESPONSES)
def api_read_ncr(ncr_uuid: NcrUuid, db: ReadSession, _user: Viewer) -> NcrPublic:
    """One NCR: original fields, current status, review, disposition, history, signatures."""
    return NcrPublic.model_validate(load_ncr(db, ncr_uuid))


@router.get("/api/v1/ncrs/{ncr_uuid}/audit", tags=["ncrs"], responses=API_RESPONSES)
def api_ncr_audit(ncr_uuid: NcrUuid, db: ReadSession, _user: Auditor) -> AuditRecordsPublic:
    """The audit trail of one NCR, its events and signatures."""
    return AuditRecordsPublic(data=[AuditRecordPublic.from_row(r) for r in audit_for_ncr(ncr_uuid, session=db)])


def _reload(services: Services, ncr_uuid: str) -> NcrPublic:
    with session_scope(services.store.engine, readonly=True) as db:
        return NcrPublic.model_validate(load_ncr(db, ncr_uuid))


@router.post("/api/v1/ncrs/{ncr_uuid}/review", tags=["ncrs"], responses=API_RESPONSES)
def api_review(
    ncr_uuid: NcrUuid,
    body: ReviewCreate,
    request: Request,
    services: ServicesDep,
    user: Adjudicator,
    _csrf: CsrfChecked,
    key: IdempotencyKey,
) -> NcrPublic:
    """Adjudicate, signed (meaning REVIEW) with the re-entered password.

    One review per claim, by the claimer; a replay with the same idempotency key (body field or
    ``Idempotency-Key`` header) answers the NCR as it stands and signs nothing new.
    """
    adjudicate(services, user, ncr_uuid, body, source=client_source(request), key=key)
    return _reload(services, ncr_uuid)


@router.post("/api/v1/ncrs/{ncr_uuid}/review/supersede", tags=["ncrs"], responses=API_RESPONSES)
def api_supersede_review(
    ncr_uuid: NcrUuid,
    body: ReviewCreate,
    request: Request,
    services: ServicesDep,
    user: Dispositioner,
    _csrf: CsrfChecked,
    key: IdempotencyKey,
) -> NcrPublic:
    """Replace the standing signed review (e.g. the MRB's outcome): quality engineer, reason, signed REVIEW.

    The earlier review and its signature stay in the history; the new decision takes effect.
    """
    supersede(services, user, ncr_uuid, body, source=client_source(request), key=key)
    return _reload(services, ncr_uuid)


@router.post("/api/v1/ncrs/{ncr_uuid}/disposition", tags=["ncrs"], responses=API_RESPONSES)
def api_disposition(
    ncr_uuid: NcrUuid,
    body: DispositionCreate,
    request: Request,
    services: ServicesDep,
    user: Dispositioner,
    _csrf: CsrfChecked,
    key: IdempotencyKey,
) -> NcrPublic:
    """Disposition, signed (meaning DISPOSITION) with the re-entered password.

    Codes that release the part (VINSPECT_TWO_PERSON_DISPOSITIONS) need a signer other than the reviewer.
    """
    dispose(services, user, ncr_uuid, body, source=client_source(request), key=key)
    return _reload(services, ncr_uuid)


@router.post("/api/v1/ncrs/{ncr_uuid}/dispute", tags=["ncrs"], status_code=204, responses=API_RESPONSES)
def api_dispute(
    ncr_uuid: NcrUuid, body: DisputeCreate, request: Request, services: ServicesDep, user: Disputer, _csrf: CsrfChecked
) -> Response:
    """Ask for a FAIL to be reviewed (it joins the review queue)."""
    dispute(services, user, ncr_uuid, body.reason, source=client_source(request))
    return Response(status_code=204)


@router.get("/ncrs", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def ncrs_page(
    request: Request,
    services: ServicesDep,
    db: ReadSession,
    user: Viewer,
    status: StatusFilter = None,
    station_id: Text64 = None,
    defect_code: Text64 = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    site_id: Text64 = None,
    line_id: Text64 = None,
) -> HTMLResponse:
    """NCR list with filters."""
    filters = _filters(status, station_id, defect_code, None, None, site_id, line_id)
    docs = ncr_summaries(filters, session=db, limit=50, offset=(page - 1) * 50)
    total = count_ncrs(filters, session=db)
    context = {
        "ncrs": docs,
        "total": total,
        "page": page,
        "statuses": [s.value for s in NcrStatus],
        "f": {
            "status": status or "",
            "station_id": station_id or "",
            "defect_code": defect_code or "",
            "site_id": site_id or "",
            "line_id": line_id or "",
        },
    }
    return render(request, "ncrs.html", context=context, user=user)


DISPOSITION_CODES = ["USE_AS_IS", "REWORK", "REPAIR", "SCRAP", "RETURN_TO_SUPPLIER", "REGRADE"]


@router.get("/ncrs/{ncr_uuid}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def ncr_page(ncr_uuid: NcrUuid, request: Request, services: ServicesDep, db: ReadSession, user: Viewer) -> HTMLResponse:
    """NCR detail: original, current state, signatures, history and (for QE/admin) the audit trail."""
    try:
        context = _ncr_context(db, ncr_uuid, user)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    return render(request, "ncr.html", context=context, user=user)


def _ncr_context(db: DbSession, ncr_uuid: str, user: Any) -> dict[str, Any]:
    doc = load_ncr(db, ncr_uuid)
    trail = audit_for_ncr(ncr_uuid, session=db) if allowed(user.role, Permission.AUDIT) else None
    image, heatmap = evidence_of(doc)
    return {
        "ncr": doc,
        "audit": trail,
        "image": image,
        "heatmap": heatmap,
        "names": actor_names(session=db),
        "codes": DISPOSITION_CODES,
        "kept": {},
    }


@router.post("/ncrs/{ncr_uuid}/disposition", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def disposition_form(
    ncr_uuid: NcrUuid,
    request: Request,
    services: ServicesDep,
    user: Dispositioner,
    _csrf: CsrfChecked,
    code: Annotated[str, Form(max_length=32)],
    password: Annotated[str, Form(max_length=256)],
    quantity: Annotated[int, Form(ge=1, le=1_000_000)] = 1,
    justification: Annotated[str, Form(max_length=2000)] = "",
    design_authority_approval_ref: Annotated[str, Form(max_length=200)] = "",
    customer_concession_ref: Annotated[str, Form(max_length=200)] = "",
    rework_instruction_ref: Annotated[str, Form(max_length=200)] = "",
    idempotency_key: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Apply a signed disposition from the NCR page; a refusal shows the page again with the error
    and every field as entered (only the password is cleared)."""
    fields = {
        "code": code,
        "quantity": quantity,
        "justification": justification,
        "design_authority_approval_ref": design_authority_approval_ref,
        "customer_concession_ref": customer_concession_ref,
        "rework_instruction_ref": rework_instruction_ref,
    }
    try:
        body = DispositionCreate.model_validate(
            {
                **fields,
                "password": password,
                "design_authority_approval_ref": design_authority_approval_ref or None,
                "customer_concession_ref": customer_concession_ref or None,
                "rework_instruction_ref": rework_instruction_ref or None,
                "idempotency_key": idempotency_key or None,
            }
        )
        signed = dispose(services, user, ncr_uuid, body, source=client_source(request))
    except (ValueError, HTTPException) as exc:
        return _refused_on_ncr_page(request, services, user, ncr_uuid, exc, "Disposition", fields)
    flash(
        request,
        f"Disposition {code} signed." if signed is not None else "This form was sent before: nothing new was signed.",
    )
    return redirect(f"/ncrs/{ncr_uuid}")


def _refused_on_ncr_page(
    request: Request,
    services: Services,
    user: AuthUser,
    ncr_uuid: str,
    exc: ValueError | HTTPException,
    what: str,
    kept: dict[str, Any],
) -> Response:
    """The NCR page again with the error and every field as entered (only the password is cleared)."""
    message, status = refusal(exc)
    return refused_form(
        request,
        services,
        user,
        template="ncr.html",
        error=f"{what} not signed: {message}",
        status=status,
        kept=kept,
        context_of=lambda db: _ncr_context(db, ncr_uuid, user),
    )


@router.post("/ncrs/{ncr_uuid}/review/supersede", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def supersede_form(
    ncr_uuid: NcrUuid,
    request: Request,
    services: ServicesDep,
    user: Dispositioner,
    _csrf: CsrfChecked,
    decision: Annotated[str, Form(max_length=32)],
    password: Annotated[str, Form(max_length=256)],
    reason: Annotated[str, Form(max_length=2000)] = "",
    idempotency_key: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Supersede the signed review from the NCR page (quality engineer, reason, signed REVIEW)."""
    try:
        body = ReviewCreate.model_validate(
            {"decision": decision, "reason": reason, "password": password, "idempotency_key": idempotency_key or None}
        )
        signed = supersede(services, user, ncr_uuid, body, source=client_source(request))
    except (ValueError, HTTPException) as exc:
        return _refused_on_ncr_page(
            request,
            services,
            user,
            ncr_uuid,
            exc,
            "Supersede",
            {"supersede_decision": decision, "supersede_reason": reason},
        )
    flash(
        request,
        f"Review superseded: {decision} (signed)."
        if signed is not None
        else "This form was sent before: nothing new was signed.",
    )
    return redirect(f"/ncrs/{ncr_uuid}")


@router.post("/ncrs/{ncr_uuid}/dispute", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def dispute_form(
    ncr_uuid: NcrUuid,
    request: Request,
    services: ServicesDep,
    user: Disputer,
    _csrf: CsrfChecked,
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
) -> Response:
    """Dispute a FAIL from the NCR page."""

    def record() -> str:
        dispute(services, user, ncr_uuid, reason, source=client_source(request))
        return "Dispute recorded: the NCR is in the review queue."

    return flash_and_redirect(request, record, to=f"/ncrs/{ncr_uuid}", refused="Dispute refused")
