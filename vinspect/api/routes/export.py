"""NCR export (CSV / JSON / JSON Lines) through the store's exporter; every export is audited."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from vinspect.api.deps import Exporter, ServicesDep, audit, client_source
from vinspect.api.pages import PAGE_RESPONSES, render
from vinspect.api.routes.ncrs import StatusFilter
from vinspect.store.audit import AuditEntry
from vinspect.store.db import session_scope
from vinspect.store.export import ExportFormat, export_ncrs
from vinspect.store.ncr import NcrFilter, NcrStatus

__all__ = ["router"]

router = APIRouter()
_MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json", "jsonl": "application/jsonl"}


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    try:
        handle.seek(0)
        while block := handle.read(1 << 16):
            yield block
    finally:
        handle.close()


@router.get(
    "/api/v1/export/ncrs",
    tags=["export"],
    response_class=StreamingResponse,
    responses={
        200: {"content": {m: {} for m in _MEDIA.values()}, "description": "the export file"},
        401: {"description": "not signed in"},
        403: {"description": "forbidden"},
    },
)
def export_download(
    request: Request,
    services: ServicesDep,
    user: Exporter,
    fmt: Literal["csv", "json", "jsonl"] = "csv",
    status: StatusFilter = None,
    station_id: Annotated[str | None, Query(max_length=64)] = None,
    defect_code: Annotated[str | None, Query(max_length=64)] = None,
) -> StreamingResponse:
    """Download matching NCRs, signatures and history included (spooled to disk past 8 MiB)."""
    filters = NcrFilter(
        status=NcrStatus(status) if status else None, station_id=station_id or None, defect_code=defect_code or None
    )
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - closed by _chunks
    text = _TextSink(spool)
    with session_scope(services.store.engine, readonly=True) as db:
        summary = export_ncrs(text, session=db, fmt=ExportFormat(fmt), filters=filters)  # type: ignore[arg-type]
    audit(
        services,
        AuditEntry(
            actor=f"user:{user.user_id}",
            action="ncr.export",
            entity="export",
            entity_id=fmt,
            new_value=str(summary.count),
            reason=f"status={status} station={station_id} defect={defect_code}",
            source=client_source(request),
        ),
    )
    return StreamingResponse(
        _chunks(spool), media_type=_MEDIA[fmt], headers={"content-disposition": f'attachment; filename="ncrs.{fmt}"'}
    )


class _TextSink:
    """A minimal text stream over a binary file (what ``export_ncrs`` writes to)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def write(self, text: str) -> int:
        self._raw.write(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        return None


@router.get("/export", tags=["pages"], response_class=HTMLResponse, responses=PAGE_RESPONSES)
def export_page(request: Request, services: ServicesDep, user: Exporter) -> HTMLResponse:
    """Choose a format and filters; the download link carries them."""
    return render(request, "export.html", context={"statuses": [s.value for s in NcrStatus]}, user=user)
