"""CAPA (8D) pages: list, open (from NCRs, a Pareto bar or an SPC alarm), detail, step edit/sign, closure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from vinspect.api.auth import AuthUser
from vinspect.api.deps import (
    Acknowledger,
    CapaOwner,
    CsrfChecked,
    ReadSession,
    Services,
    ServicesDep,
    Viewer,
    client_source,
)
from vinspect.api.pages import PAGE_RESPONSES, error_page, flash, redirect, render
from vinspect.api.permissions import Permission, allowed
from vinspect.api.workflow import check_signing_password
from vinspect.errors import StateError, StoreError
from vinspect.quality.effectiveness import effectiveness, freeze_capa_baseline
from vinspect.store.capa import (
    FISHBONE,
    SOURCES,
    STEPS,
    capa_summaries,
    close_capa,
    edit_step,
    get_capa,
    open_capa,
    sign_step,
)
from vinspect.store.db import session_scope
from vinspect.store.requests import first_use
from vinspect.store.review_queries import DbSession, ncr_numbers
from vinspect.store.users import list_users

__all__ = ["router"]

router = APIRouter()
CapaNumber = Annotated[str, Path(pattern=r"^CAPA-\d{4}-\d{4,}$")]
Step = Annotated[str, Path(pattern=r"^D[0-7]$")]


@router.get("/capas", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def capas_page(
    request: Request,
    db: ReadSession,
    user: Viewer,
    status: Annotated[str | None, Query(pattern=r"^(OPEN|IN_PROGRESS|CLOSED)?$")] = None,
) -> HTMLResponse:
    """Every CAPA with its status, linked NCR count, signed steps and next due date."""
    return render(
        request,
        "capas.html",
        user=user,
        context={
            "capas": capa_summaries(session=db, status=status or None),
            "status": status or "",
            "now": datetime.now(UTC),
        },
    )


def _people(db: DbSession) -> list[dict[str, Any]]:
    return [
        {"id": u.id, "name": f"{u.display_name} ({u.username}, {u.role})"}
        for u in list_users(session=db)
        if u.active and str(u.role) != "admin"
    ]


def _new_context(
    db: DbSession,
    user: AuthUser,
    ncr: list[str],
    code: str,
    station: str,
    alarm: str,
    kept: dict[str, Any] | None = None,
) -> dict[str, Any]:
    numbers = ncr_numbers(ncr, session=db)
    missing = sorted(set(ncr) - set(numbers))
    if missing:
        raise HTTPException(404, f"no NCR {', '.join(missing)}")
    source = "ncr" if ncr else ("alarm" if alarm else "pareto")
    ref = ncr[0] if ncr else (f"alarm:{alarm}" if alarm else f"pareto:{code or station}")
    today = datetime.now(UTC).date()
    due = {s: (today + timedelta(days=2 + 3 * i)).isoformat() for i, s in enumerate(STEPS)}
    return {
        "ncrs": [(u, numbers[u]) for u in ncr],
        "code": code,
        "station": station,
        "alarm": alarm,
        "source": source,
        "source_ref": ref,
        "steps": STEPS,
        "people": _people(db),
        "kept": kept or {"title": "", "owners": dict.fromkeys(STEPS, user.user_id), "due": due},
    }


@router.get("/capas/new", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def new_capa_page(
    request: Request,
    db: ReadSession,
    user: CapaOwner,
    ncr: Annotated[list[str] | None, Query(max_length=50)] = None,
    code: Annotated[str, Query(max_length=64)] = "",
    station: Annotated[str, Query(max_length=64)] = "",
    alarm: Annotated[str, Query(max_length=20, pattern=r"^\d*$")] = "",
) -> HTMLResponse:
    """The form opening a CAPA from NCRs (``?ncr=..&ncr=..``), a Pareto bar (``?code=``) or an alarm (``?alarm=``)."""
    try:
        context = _new_context(db, user, list(ncr or []), code, station, alarm)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    return render(request, "capa_new.html", user=user, context=context)


@router.post("/capas", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
async def create_capa(request: Request, services: ServicesDep, user: CapaOwner, _csrf: CsrfChecked) -> Response:
    """Open the CAPA: title, linked NCRs, codes, an owner and due date per step; the baseline is frozen now."""
    form = await request.form()
    text = {k: str(v) for k, v in form.multi_items() if isinstance(v, str)}
    ncr = [str(v) for v in form.getlist("ncr") if isinstance(v, str)][:50]
    code, station, alarm = text.get("code", "")[:64], text.get("station", "")[:64], text.get("alarm", "")[:20]
    title = text.get("title", "")[:200]
    kept_owners: dict[str, int | None] = {}
    kept_due: dict[str, str] = {}
    kept: dict[str, Any] = {"title": title, "owners": kept_owners, "due": kept_due}
    problems: list[str] = []
    owners: dict[str, int] = {}
    due: dict[str, datetime] = {}
    for s in STEPS:
        raw_owner, raw_due = text.get(f"owner_{s}", ""), text.get(f"due_{s}", "")
        kept_owners[s] = int(raw_owner) if raw_owner.isdigit() else None
        kept_due[s] = raw_due[:10]
        if not raw_owner.isdigit():
            problems.append(f"{s}: choose an owner")
        else:
            owners[s] = int(raw_owner)
        try:
            due[s] = datetime.strptime(raw_due[:10], "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            problems.append(f"{s}: due date as YYYY-MM-DD")
    if not title.strip():
        problems.insert(0, "title: describe the problem in a few words")
    key = text.get("idempotency_key", "")[:128]
    number = None
    if not problems:
        try:
            with session_scope(services.store.engine) as session:
                if key and not first_use(
                    session=session, user_id=user.user_id, key=key, target="capa:new", source=client_source(request)
                ):
                    flash(request, "This form was sent before: no second CAPA was opened.")
                    return redirect("/capas")
                now = datetime.now(UTC)
                codes = [code] if code else []
                baseline = freeze_capa_baseline(session, station_id=station or None, defect_codes=codes, until=now)
                source = "ncr" if ncr else ("alarm" if alarm else "pareto")
                ref = ncr[0] if ncr else (f"alarm:{alarm}" if alarm else f"pareto:{code or station}")
                number = open_capa(
                    session=session,
                    user_id=user.user_id,
                    title=title,
                    source=source,
                    source_ref=ref,
                    ncr_uuids=ncr,
                    defect_codes=codes,
                    station_id=station or None,
                    owners=owners,
                    due=due,
                    baseline=baseline,
                    client=client_source(request),
                    at=now,
                )
        except (StateError, StoreError) as exc:
            problems.append(str(exc))
    if problems or number is None:
        try:
            with session_scope(services.store.engine, readonly=True) as db:
                context = _new_context(db, user, ncr, code, station, alarm, kept)
        except HTTPException as exc:
            return error_page(request, exc, user=user)
        context["error"] = "CAPA not opened: " + "; ".join(problems)
        return render(request, "capa_new.html", user=user, context=context, status_code=422)
    flash(request, f"{number} opened; its baseline is frozen and each step's owner can now write and sign it.")
    return redirect(f"/capas/{number}")


def _detail(services: Services, db: DbSession, number: str, user: AuthUser) -> dict[str, Any]:
    view = get_capa(number, session=db)
    if view is None:
        raise HTTPException(404, f"no {number}")
    return {
        "c": view,
        "eff": effectiveness(db, view, now=datetime.now(UTC)),
        "fishbone": FISHBONE,
        "may_close": allowed(user.role, Permission.CAPA),
        "sources": SOURCES,
        "kept": {},
    }


@router.get("/capas/{number}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def capa_page(
    number: CapaNumber, request: Request, services: ServicesDep, db: ReadSession, user: Viewer
) -> HTMLResponse:
    """One CAPA: the 8D steps with owners, due dates, content and signatures; NCRs; effectiveness; closure."""
    try:
        context = _detail(services, db, number, user)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    return render(request, "capa.html", user=user, context=context)


def _again(
    request: Request, services: Services, user: AuthUser, number: str, error: str, status: int, kept: dict[str, Any]
) -> Response:
    try:
        with session_scope(services.store.engine, readonly=True) as db:
            context = _detail(services, db, number, user)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    context.update({"error": error, "kept": kept})
    return render(request, "capa.html", user=user, context=context, status_code=status)


def _exists(services: Services, number: str) -> None:
    with session_scope(services.store.engine, readonly=True) as db:
        if get_capa(number, session=db) is None:
            raise HTTPException(404, f"no {number}")


@router.post("/capas/{number}/steps/{step}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def step_form(
    number: CapaNumber,
    step: Step,
    request: Request,
    services: ServicesDep,
    user: Acknowledger,
    _csrf: CsrfChecked,
    text: Annotated[str, Form(max_length=10_000)] = "",
    category: Annotated[str, Form(max_length=32)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    action: Annotated[str, Form(pattern=r"^(save|sign)$")] = "save",
) -> Response:
    """Save a step (its owner), or save and sign it (password re-entry, meaning AUTHORSHIP)."""
    kept = {"step": step, "text": text, "category": category}
    try:
        _exists(services, number)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    try:
        if action == "sign":
            if not password:
                raise HTTPException(422, "signing needs your password")
            with session_scope(services.store.engine) as session:  # save first: the owner signs what they see
                edit_step(
                    number,
                    step,
                    {"text": text, "category": category},
                    session=session,
                    user_id=user.user_id,
                    client=client_source(request),
                )
            check_signing_password(services, user, password, source=client_source(request), what=f"{number} {step}")
            with session_scope(services.store.engine) as session:
                sign_step(number, step, session=session, user_id=user.user_id, client=client_source(request))
            flash(request, f"{step} of {number} signed.")
        else:
            with session_scope(services.store.engine) as session:
                edit_step(
                    number,
                    step,
                    {"text": text, "category": category},
                    session=session,
                    user_id=user.user_id,
                    client=client_source(request),
                )
            flash(request, f"{step} of {number} saved (not signed yet).")
    except HTTPException as exc:
        return _again(request, services, user, number, f"{step} not signed: {exc.detail}", exc.status_code, kept)
    except StateError as exc:
        status = 403 if "owned by another person" in str(exc) else 409
        return _again(request, services, user, number, f"{step} not saved: {exc}", status, kept)
    return redirect(f"/capas/{number}#{step}")


@router.post("/capas/{number}/close", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def close_form(
    number: CapaNumber,
    request: Request,
    services: ServicesDep,
    user: CapaOwner,
    _csrf: CsrfChecked,
    password: Annotated[str, Form(max_length=256)],
    reason: Annotated[str, Form(max_length=2000)] = "",
    recognition: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """D8: close with a quality engineer's signature (meaning APPROVAL), recording the effectiveness check."""
    kept = {"reason": reason, "recognition": recognition}
    try:
        _exists(services, number)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    try:
        if not reason.strip():
            raise HTTPException(422, "closing needs a reason")
        with session_scope(services.store.engine, readonly=True) as db:
            view = get_capa(number, session=db)
            assert view is not None
            unsigned = [s.step for s in view.steps if s.signature is None]
            if unsigned:
                raise StateError(f"{', '.join(unsigned)} not signed by their owners")
            eff = effectiveness(db, view, now=datetime.now(UTC)).as_record()
        check_signing_password(services, user, password, source=client_source(request), what=f"close {number}")
        with session_scope(services.store.engine) as session:
            close_capa(
                number,
                session=session,
                user_id=user.user_id,
                recognition=recognition,
                reason=reason,
                effectiveness=eff,
                client=client_source(request),
            )
    except HTTPException as exc:
        return _again(request, services, user, number, f"Not closed: {exc.detail}", exc.status_code, kept)
    except StateError as exc:
        return _again(request, services, user, number, f"Not closed: {exc}", 409, kept)
    flash(request, f"{number} closed (signed, APPROVAL).")
    return redirect(f"/capas/{number}")
