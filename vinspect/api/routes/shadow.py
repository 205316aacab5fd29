"""Shadow disagreements (listed on the review queue page): their frames, and a reviewer's judgement."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, Response

from vinspect.api.catalogue import defect_catalogue
from vinspect.api.deps import Adjudicator, CsrfChecked, ReadSession, ServicesDep, client_source
from vinspect.api.pages import PAGE_RESPONSES, flash_and_redirect, render
from vinspect.api.shadow_review import disagreement_image, find_disagreement, judge_shadow
from vinspect.store.shadow_judgements import judgements

__all__ = ["router"]

router = APIRouter()
Candidate = Annotated[str, Path(max_length=130)]
InspectionId = Annotated[str, Path(max_length=64)]


@router.get(
    "/evidence/shadow/{candidate}/{inspection_id}",
    tags=["queue"],
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the PNG"},
        401: {"description": "not signed in"},
        403: {"description": "forbidden"},
        404: {"description": "no such candidate or disagreement"},
    },
)
def read_shadow_image(
    candidate: Candidate,
    inspection_id: InspectionId,
    services: ServicesDep,
    _user: Adjudicator,
) -> Response:
    """The frame of one shadow disagreement: from the evidence store for a store-backed station, else the
    data directory (names checked before the filesystem is touched)."""
    data = disagreement_image(services, candidate, inspection_id)
    if data is None:
        raise HTTPException(status_code=404, detail="no such shadow disagreement")
    return Response(
        content=data, media_type="image/png", headers={"content-disposition": f'inline; filename="{inspection_id}.png"'}
    )


@router.get(
    "/shadow/{candidate}/{inspection_id}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES
)
def judge_page(
    candidate: Candidate,
    inspection_id: InspectionId,
    request: Request,
    services: ServicesDep,
    db: ReadSession,
    user: Adjudicator,
) -> HTMLResponse:
    """One disagreement: the frame, both verdicts, and the judgement form (or the judgement given)."""
    row = find_disagreement(services.data_dir, candidate, inspection_id, session=db)
    if row is None:
        raise HTTPException(status_code=404, detail="no such shadow disagreement")
    given = [j for j in judgements(session=db, candidate=candidate) if j.inspection_id == inspection_id]
    name, _, version = candidate.partition("@")
    codes = defect_catalogue(services.registry, services.options.defect_codes, model_name=name, model_version=version)
    return render(
        request,
        "shadow_judge.html",
        user=user,
        context={"candidate": candidate, "d": row, "judgement": given[0] if given else None, "codes": codes},
    )


@router.post(
    "/shadow/{candidate}/{inspection_id}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES
)
def judge_form(
    candidate: Candidate,
    inspection_id: InspectionId,
    request: Request,
    services: ServicesDep,
    user: Adjudicator,
    _csrf: CsrfChecked,
    truth: Annotated[str, Form(max_length=16)] = "",
    defect_code: Annotated[str, Form(max_length=64)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Sign which model was right (REVIEW signature, password re-entry); back to the queue's section."""

    def judge() -> str:
        j = judge_shadow(
            services,
            user,
            candidate,
            inspection_id,
            truth=truth,
            defect_code=defect_code,
            reason=reason,
            password=password,
            source=client_source(request),
        )
        who = "the candidate" if j.right == "candidate" else "the active model"
        return f"Judged part {inspection_id} as {j.label}: {who} was right about it."

    return flash_and_redirect(
        request,
        judge,
        to=f"/queue#shadow-{candidate}",
        refused="Judgement refused",
        refused_to=f"/shadow/{candidate}/{inspection_id}",
    )
