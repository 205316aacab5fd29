"""JSON routes the labelling workspace saves through: label, undo, settle (CSRF header required).

A refused label (a code not in the product's catalogue, a region outside the image, regions on a
good image) answers 422 with one line naming the problem, and nothing is written: what the
person had saved before stays as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from vinspect.api.auth import AuthUser
from vinspect.api.deps import CsrfChecked, Labeller, ServicesDep, client_source
from vinspect.api.routes.labelling import SetName, catalogue_of, load_set
from vinspect.errors import DatasetError
from vinspect.store.db import session_scope
from vinspect.store.labelling import Labeller as Who
from vinspect.store.labelling import record_label, settle_label, undo_label
from vinspect.store.tables import LabelEventRecord

__all__ = ["router"]

router = APIRouter()
ImageId = Annotated[int, Path(ge=1)]
API_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    403: {"description": "forbidden or CSRF"},
    404: {"description": "no such set or image"},
    409: {"description": "not allowed in this state"},
    422: {"description": "invalid label or region (the message names it); nothing saved"},
}


class LabelIn(BaseModel):
    """A label for one image: ``good`` or a catalogue code, and the regions drawn."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=64)
    regions: list[dict[str, Any]] = Field(default_factory=list, max_length=64)


class LabelOut(BaseModel):
    """The image's label in the caller's scope after the change."""

    label: str | None
    regions: list[dict[str, Any]]
    event_id: int | None
    kind: str | None


def _who(user: AuthUser) -> Who:
    return Who(user_id=user.user_id, username=user.username)


def _refused(exc: DatasetError) -> HTTPException:
    return HTTPException(status_code=422, detail=str(exc))


def _change(
    write: Callable[..., LabelEventRecord | None],
    set_name: str,
    image_id: int,
    request: Request,
    services: ServicesDep,
    user: AuthUser,
    **fields: Any,
) -> LabelOut:
    """One label change (``record_label``, ``undo_label`` or ``settle_label``) in one transaction:
    a refusal answers 422 and writes nothing."""
    with session_scope(services.store.engine) as db:
        label_set = load_set(db, set_name)
        try:
            event = write(
                db,
                label_set,
                image_id,
                _who(user),
                catalogue=catalogue_of(services, label_set),
                source=client_source(request),
                **fields,
            )
        except DatasetError as exc:
            raise _refused(exc) from exc
        if event is None:
            return LabelOut(label=None, regions=[], event_id=None, kind=None)
        return LabelOut(label=event.label, regions=json.loads(event.regions), event_id=event.id, kind=event.kind)


@router.post("/api/v1/labelling/{set_name}/images/{image_id}/label", tags=["labelling"], responses=API_RESPONSES)
def api_label(
    set_name: SetName,
    image_id: ImageId,
    body: LabelIn,
    request: Request,
    services: ServicesDep,
    user: Labeller,
    _csrf: CsrfChecked,
) -> LabelOut:
    """Label an image (a new event under the audit chain; the same label and regions again add nothing)."""
    return _change(record_label, set_name, image_id, request, services, user, label=body.label, regions=body.regions)


@router.post("/api/v1/labelling/{set_name}/images/{image_id}/undo", tags=["labelling"], responses=API_RESPONSES)
def api_undo(
    set_name: SetName, image_id: ImageId, request: Request, services: ServicesDep, user: Labeller, _csrf: CsrfChecked
) -> LabelOut:
    """Undo the caller's newest label of the image (repeats backwards; nothing left: unchanged)."""
    return _change(undo_label, set_name, image_id, request, services, user)


@router.post("/api/v1/labelling/{set_name}/images/{image_id}/settle", tags=["labelling"], responses=API_RESPONSES)
def api_settle(
    set_name: SetName,
    image_id: ImageId,
    body: LabelIn,
    request: Request,
    services: ServicesDep,
    user: Labeller,
    _csrf: CsrfChecked,
) -> LabelOut:
    """Settle a blind disagreement (only someone who did not label the image)."""
    return _change(settle_label, set_name, image_id, request, services, user, label=body.label, regions=body.regions)
