"""Evidence images, served only by sha256 from the content-addressed store.

The path parameter must be 64 lower-case hex digits (anything else is a 404 before the
filesystem is touched), the digest must be referenced by an NCR, and the store resolves it
with realpath containment under its root and re-hashes the bytes before they are sent.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import Response

from vinspect.api.deps import ReadSession, ServicesDep, Viewer
from vinspect.errors import StoreError
from vinspect.store.review_queries import evidence_is_referenced

__all__ = ["router"]

router = APIRouter()
_SHA = re.compile(r"[0-9a-f]{64}")


@router.get(
    "/evidence/{sha256}",
    tags=["evidence"],
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the PNG"},
        401: {"description": "not signed in"},
        403: {"description": "forbidden"},
        404: {"description": "no such evidence"},
    },
)
def read_evidence(
    sha256: Annotated[str, Path(max_length=200)], services: ServicesDep, db: ReadSession, _user: Viewer
) -> Response:
    """One evidence PNG (image or heatmap) by its SHA-256."""
    if not _SHA.fullmatch(sha256) or not evidence_is_referenced(sha256, session=db):
        raise HTTPException(status_code=404, detail="no such evidence")
    try:
        data = services.store.evidence.read(sha256)
    except StoreError as exc:
        raise HTTPException(status_code=404, detail="evidence file missing or altered") from exc
    return Response(
        content=data, media_type="image/png", headers={"content-disposition": f'inline; filename="{sha256}.png"'}
    )
