"""The frames a candidate model in shadow disagreed about (listed on the review queue page)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import Response

from vinspect.api.deps import Adjudicator, ServicesDep
from vinspect.api.shadow_review import shadow_image

__all__ = ["router"]

router = APIRouter()


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
    candidate: Annotated[str, Path(max_length=130)],
    inspection_id: Annotated[str, Path(max_length=64)],
    services: ServicesDep,
    _user: Adjudicator,
) -> Response:
    """The frame of one shadow disagreement (names checked before the filesystem is touched)."""
    data = shadow_image(services.data_dir, candidate, inspection_id)
    if data is None:
        raise HTTPException(status_code=404, detail="no such shadow disagreement")
    return Response(
        content=data, media_type="image/png", headers={"content-disposition": f'inline; filename="{inspection_id}.png"'}
    )
