"""The labelling workspace: sets, a paged thumbnail grid, one image labelled by keyboard, agreement.

Pages are server-rendered; the one-image view saves through the JSON routes of
:mod:`vinspect.api.routes.labelling_api` (``static/label.js``). Reviewers and quality engineers
label; quality engineers import folders as sets (``Permission.LABEL_SETS``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from vinspect.api.catalogue import KEYED, defect_catalogue
from vinspect.api.deps import CsrfChecked, Labeller, LabelSetManager, ReadSession, Services, ServicesDep
from vinspect.api.pages import PAGE_RESPONSES, error_page, render
from vinspect.dataset.images import decode_image
from vinspect.errors import DatasetError, StateError, StoreError
from vinspect.imaging import encode_png
from vinspect.store.db import session_scope
from vinspect.store.label_files import LabelFiles
from vinspect.store.label_queries import (
    agreement,
    get_set,
    image_history,
    image_page,
    image_row,
    labels_by_name,
    latest_settle,
    list_sets,
    neighbours,
    set_labels,
)
from vinspect.store.labelling import GOOD, catalogue_version, import_folder, is_blind
from vinspect.store.review_queries import DbSession, actor_names
from vinspect.store.tables import LabelSetRecord

__all__ = ["PAGE_SIZE", "catalogue_of", "label_files", "load_set", "router"]

router = APIRouter()
PAGE_SIZE = 100
SetName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_SHA = re.compile(r"[0-9a-f]{64}")
# Image routes live under page paths, so their errors are pages (with the menu), like every page's.
_HTML_ERRORS: dict[int | str, dict[str, Any]] = {
    303: {"description": "to /login when not signed in"},
    403: {"content": {"text/html": {}}, "description": "forbidden"},
    404: {"content": {"text/html": {}}, "description": "no such image"},
    422: {"content": {"text/html": {}}, "description": "invalid path"},
}
_SHOWN = {".png": "image/png", ".jpg": "image/jpeg"}  # served as stored; others are converted to PNG


def label_files(services: Services) -> LabelFiles:
    return LabelFiles(services.data_dir / "labelling")


def catalogue_of(services: Services, label_set: LabelSetRecord) -> tuple[str, ...]:
    """The product's one defect-code catalogue (its model's classes, then the plant's codes)."""
    return defect_catalogue(
        services.registry, services.options.defect_codes, model_name=label_set.model_name, model_version=None
    )


def load_set(db: DbSession, name: str) -> LabelSetRecord:
    label_set = get_set(db, name)
    if label_set is None:
        raise HTTPException(status_code=404, detail=f"no labelling set {name!r}")
    return label_set


@router.get("/labelling", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def sets_page(request: Request, db: ReadSession, user: Labeller) -> HTMLResponse:
    """Labelling sets, and (quality engineers) the import form."""
    return render(
        request,
        "labelling.html",
        user=user,
        context={"sets": list_sets(db), "report": None, "kept": {}, "names": actor_names(session=db)},
    )


@router.post("/labelling/import", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def import_form(
    request: Request,
    services: ServicesDep,
    user: LabelSetManager,
    _csrf: CsrfChecked,
    folder: Annotated[str, Form(max_length=1000)],
    set_name: Annotated[str, Form(max_length=64)],
    blind: Annotated[int, Form(ge=0, le=9)] = 0,
    model_name: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Import a folder on the server (images, or a `vinspect capture` run) as a labelling set."""
    kept = {"folder": folder, "set_name": set_name, "blind": blind, "model_name": model_name}
    error = None
    report = None
    if blind == 1:
        error = "blind labellers: 0 (open labelling) or 2-9 people"
    elif not folder.strip() or not FsPath(folder.strip()).is_absolute():
        error = "folder: give the absolute path of a folder on this server"
    else:
        try:
            report = import_folder(
                FsPath(folder.strip()),
                engine=services.store.engine,
                files=label_files(services),
                set_name=set_name.strip(),
                actor=f"user:{user.user_id}",
                blind_labellers=blind,
                model_name=model_name.strip() or None,
                source="web",
            )
        except (DatasetError, StateError) as exc:
            error = str(exc)
    with session_scope(services.store.engine, readonly=True) as db:
        sets, names = list_sets(db), actor_names(session=db)
    return render(
        request,
        "labelling.html",
        user=user,
        status_code=422 if error else 200,
        context={"sets": sets, "report": report, "error": error, "kept": kept if error else {}, "names": names},
    )


@router.get("/labelling/{set_name}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def grid_page(
    set_name: SetName,
    request: Request,
    services: ServicesDep,
    db: ReadSession,
    user: Labeller,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    order: Annotated[str, Query(pattern=r"^(import|uncertain)$")] = "import",
) -> HTMLResponse:
    """A page of thumbnails with the viewer's labels (blind sets: only their own)."""
    try:
        label_set = load_set(db, set_name)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    rows, total, by_uncertainty = image_page(
        db,
        label_set,
        user_id=user.user_id,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
        order="uncertain" if order == "uncertain" else "import",
    )
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    return render(
        request,
        "labelset.html",
        user=user,
        context={
            "set": label_set,
            "rows": rows,
            "total": total,
            "page": page,
            "pages": pages,
            "order": order,
            "by_uncertainty": by_uncertainty,
            "blind": is_blind(label_set),
        },
    )


@router.get(
    "/labelling/{set_name}/images/{image_id}", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES
)
def image_page_view(
    set_name: SetName,
    image_id: Annotated[int, Path(ge=1)],
    request: Request,
    services: ServicesDep,
    db: ReadSession,
    user: Labeller,
    settle: Annotated[bool, Query()] = False,
    order: Annotated[str, Query(pattern=r"^(import|uncertain)$")] = "import",
) -> HTMLResponse:
    """One image: label by keyboard, draw regions, zoom and pan; ``settle`` for a third person."""
    try:
        label_set = load_set(db, set_name)
        row = image_row(db, label_set, image_id, user_id=user.user_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"image {image_id} is not in set {set_name}")
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    catalogue = catalogue_of(services, label_set)
    before, after = neighbours(
        db,
        label_set,
        row.ordinal,
        image_id=row.id,
        order="uncertain" if order == "uncertain" and not settle else "import",
    )
    query = "?settle=1" if settle else ("?order=uncertain" if order == "uncertain" else "")
    blind = is_blind(label_set)
    others = labels_by_name(db, label_set, image_id) if settle and blind else {}
    settled = latest_settle(db, image_id) if settle and blind else None
    state = {"label": row.label, "regions": row.regions}
    if settle and blind:
        state = (
            {"label": settled["label"], "regions": settled["regions"]}
            if settled is not None
            else {"label": None, "regions": []}
        )
    return render(
        request,
        "label_image.html",
        user=user,
        context={
            "set": label_set,
            "image": row,
            "codes": list(catalogue),
            "keyed": KEYED,
            "good": GOOD,
            "catalogue_version": catalogue_version(catalogue),
            "before": before,
            "after": after,
            "blind": blind,
            "settle": settle and blind,
            "others": others,
            "settled": settled,
            "query": query,
            "state_json": json.dumps(state, separators=(",", ":")),
            "history": image_history(db, image_id, user_id=user.user_id if blind else None),
        },
    )


@router.get("/labelling/{set_name}/agreement", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def agreement_page(set_name: SetName, request: Request, db: ReadSession, user: Labeller) -> HTMLResponse:
    """Kappa and confusion between a blind set's labellers, and the disagreements to settle."""
    try:
        label_set = load_set(db, set_name)
    except HTTPException as exc:
        return error_page(request, exc, user=user)
    labels = set_labels(db, label_set)
    agree = agreement(labels, raters=max(2, label_set.blind_labellers)) if is_blind(label_set) else None
    queue = [(image, given) for image, given in labels.unsettled if user.username not in given]
    return render(
        request,
        "label_agreement.html",
        user=user,
        context={
            "set": label_set,
            "agreement": agree,
            "unsettled": labels.unsettled,
            "queue": queue,
            "final": len(labels.final),
            "incomplete": len(labels.incomplete),
            "settled": [f for f in labels.final if f.settled_by],
        },
    )


def _image_bytes(services: Services, db: DbSession, set_name: str, image_id: int) -> tuple[bytes, str]:
    label_set = load_set(db, set_name)
    row = image_row(db, label_set, image_id, user_id=0)
    if row is None:
        raise HTTPException(status_code=404, detail="no such image")
    try:
        data = label_files(services).read(row.sha256, row.suffix)
    except StoreError as exc:
        raise HTTPException(status_code=404, detail="image file missing") from exc
    if row.suffix in _SHOWN:
        return data, _SHOWN[row.suffix]
    pixels = decode_image(data, name=row.file_name)
    try:
        return encode_png(pixels, pixel_format="RGB8"), "image/png"  # decode_image gives grey or RGB
    except ValueError as exc:  # pragma: no cover
        raise HTTPException(status_code=500, detail="cannot show the image") from exc


@router.get(
    "/labelling/{set_name}/images/{image_id}/file",
    tags=["labelling"],
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "the image"}, **_HTML_ERRORS},
)
def image_file(
    set_name: SetName, image_id: Annotated[int, Path(ge=1)], services: ServicesDep, db: ReadSession, _user: Labeller
) -> Response:
    """The image as imported (BMP and TIFF converted to PNG for the browser)."""
    data, media = _image_bytes(services, db, set_name, image_id)
    return Response(content=data, media_type=media, headers={"cache-control": "private, max-age=3600"})


@router.get(
    "/labelling/thumbs/{sha256}",
    tags=["labelling"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the thumbnail"}, **_HTML_ERRORS},
)
def thumbnail(sha256: Annotated[str, Path(max_length=200)], services: ServicesDep, _user: Labeller) -> Response:
    """A labelling image's thumbnail by its SHA-256."""
    if not _SHA.fullmatch(sha256):
        raise HTTPException(status_code=404, detail="no such thumbnail")
    try:
        data = label_files(services).thumb_path(sha256).read_bytes()
    except OSError as exc:
        raise HTTPException(status_code=404, detail="no such thumbnail") from exc
    return Response(content=data, media_type="image/jpeg", headers={"cache-control": "private, max-age=86400"})
