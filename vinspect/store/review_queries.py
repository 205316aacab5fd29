"""Read queries the reviewer web app needs beyond :mod:`vinspect.store.repository`.

All are reads over the store's own tables (no writes, no schema): the review queue, audit rows
of a record, login-failure counts for lockout, evidence reference checks, part history.
Writes always go through the repository and lifecycle functions.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.orm import Session

from vinspect.store.canonical import format_utc
from vinspect.store.document import select_ncrs, status_subquery
from vinspect.store.evidence import EvidenceStore
from vinspect.store.ncr import NcrFilter
from vinspect.store.tables import (
    AuditRecord,
    EvidenceRecord,
    InspectionRecord,
    NcrEvent,
    NcrRecord,
    PassEvidenceRecord,
    SignatureRecord,
    StationRow,
    UserRecord,
)

__all__ = [
    "DbSession",
    "NcrSummary",
    "PassSample",
    "QueueEntry",
    "QueueScope",
    "StoreHandle",
    "active_admin_exists",
    "actor_names",
    "audit_for_ncr",
    "audit_rows",
    "audited",
    "count_recent",
    "evidence_is_referenced",
    "get_inspection",
    "is_sampled",
    "ncr_summaries",
    "part_history",
    "review_queue",
]

_OPEN = ("OPEN", "CONTAINED", "UNDER_REVIEW")
DbSession = Session  # the type callers annotate with, so that only ``store`` imports sqlalchemy


@dataclass(frozen=True, slots=True)
class StoreHandle:
    """The store as the web app receives it: a durable engine plus the evidence files."""

    engine: Engine
    evidence: EvidenceStore


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEntry:
    """One item awaiting a reviewer: an NCR (by uuid) or a sampled PASS (by inspection id)."""

    kind: Literal["ncr", "pass_sample"]
    id: str
    reason: str
    station_id: str
    part_id: str | None
    detected_at: datetime | None
    ncr_number: str | None = None  # NCRs only
    score: float | None = None  # NCRs only (a PASS sample is audited blind)
    defect_code: str | None = None  # the machine's code, NCRs only


def active_admin_exists(*, session: Session) -> bool:
    """True when at least one active admin account exists."""
    return (
        session.scalar(select(UserRecord.id).where(UserRecord.role == "admin", UserRecord.active.is_(True)).limit(1))
        is not None
    )


def count_recent(
    *, session: Session, action: str | tuple[str, ...], entity: str, entity_id: str, since: datetime | None
) -> int:
    """How many audit rows of ``action`` (or any of several) on one entity were written at or after ``since``."""
    actions = (action,) if isinstance(action, str) else action
    stmt = (
        select(func.count())
        .select_from(AuditRecord)
        .where(AuditRecord.entity == entity, AuditRecord.entity_id == entity_id, AuditRecord.action.in_(actions))
    )
    if since is not None:
        stmt = stmt.where(AuditRecord.at >= since)
    return int(session.scalar(stmt) or 0)


def audited(inspection_id: str, *, session: Session) -> bool:
    """True when a sampled PASS part has had its (one) blind audit answer."""
    return (
        session.scalar(
            select(AuditRecord.id)
            .where(
                AuditRecord.entity == "inspection",
                AuditRecord.entity_id == inspection_id,
                AuditRecord.action == "sample.review",
            )
            .limit(1)
        )
        is not None
    )


def last_unlock(*, session: Session, username: str) -> datetime | None:
    """When an admin last unlocked sign-in for ``username`` (failures before it no longer count)."""
    at = session.scalar(
        select(func.max(AuditRecord.at)).where(
            AuditRecord.action == "login.unlock", AuditRecord.entity == "login", AuditRecord.entity_id == username
        )
    )
    return None if at is None else (at if at.tzinfo is not None else at.replace(tzinfo=UTC))


def is_sampled(inspection_id: str, rate: float) -> bool:
    """Deterministic sampling of PASS parts: the same part is always in or out of the sample."""
    if rate <= 0.0:
        return False
    digest = hashlib.sha256(f"pass-sample:{inspection_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < rate


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueScope:
    """Which part of the plant a queue shows; None means any. Sampled PASS parts carry only their
    station, so a site or line selects them through the station registry (issue 18)."""

    site_id: str | None = None
    line_id: str | None = None
    station_id: str | None = None

    @property
    def any(self) -> bool:
        return self.site_id is None and self.line_id is None and self.station_id is None


def _pass_stations(session: Session, scope: QueueScope) -> set[str] | None:
    """Stations whose PASS samples the scope shows (None: every station)."""
    if scope.any:
        return None
    if scope.site_id is None and scope.line_id is None:
        return {scope.station_id} if scope.station_id else None
    stmt = select(StationRow.station_id)
    if scope.site_id is not None:
        stmt = stmt.where(StationRow.site_id == scope.site_id)
    if scope.line_id is not None:
        stmt = stmt.where(StationRow.line_id == scope.line_id)
    found = set(session.scalars(stmt))
    return found & {scope.station_id} if scope.station_id else found


def _ncr_entries(session: Session, *, limit: int, scope: QueueScope = QueueScope()) -> list[QueueEntry]:
    status = status_subquery()
    reviewed = select(NcrEvent.ncr_id).where(NcrEvent.kind == "REVIEWED")
    disputed = select(AuditRecord.entity_id).where(AuditRecord.action == "ncr.dispute", AuditRecord.entity == "ncr")
    stmt = (
        select(NcrRecord, InspectionRecord.verdict, InspectionRecord.part_id, InspectionRecord.score)
        .join(status, status.c.ncr_id == NcrRecord.id)
        .outerjoin(InspectionRecord, InspectionRecord.inspection_id == NcrRecord.inspection_id)
        .where(
            status.c.status.in_(_OPEN),
            NcrRecord.id.not_in(reviewed),
            or_(InspectionRecord.verdict == "REVIEW", NcrRecord.ncr_uuid.in_(disputed)),
        )
        .order_by(NcrRecord.ncr_seq)
        .limit(limit)
    )
    for column, value in (
        (NcrRecord.site_id, scope.site_id),
        (NcrRecord.line_id, scope.line_id),
        (NcrRecord.station_id, scope.station_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    entries = []
    for ncr, verdict, part_id, score in session.execute(stmt):
        entries.append(
            QueueEntry(
                kind="ncr",
                id=ncr.ncr_uuid,
                reason="REVIEW band" if verdict == "REVIEW" else "disputed FAIL",
                station_id=ncr.station_id,
                part_id=part_id or ncr.serial_number,
                detected_at=ncr.detected_at,
                ncr_number=ncr.ncr_number,
                score=score,
                defect_code=ncr.defect_code,
            )
        )
    return entries


class PassSample:
    """The sampled PASS parts, scanned incrementally (only rows newer than the last scan).

    Holds the newest ``keep`` sampled entries; one instance per web app (not module state).
    """

    def __init__(self, rate: float, *, keep: int = 500, scan: int = 5000) -> None:
        self.rate, self._keep, self._scan = rate, keep, scan
        self._after_id = 0
        self._entries: list[tuple[int, QueueEntry]] = []
        self._lock = threading.Lock()

    def _refresh(self, session: Session) -> None:
        newest = session.scalar(select(func.max(InspectionRecord.id))) or 0
        floor = max(self._after_id, newest - self._scan)
        stmt = (
            select(
                InspectionRecord.id,
                InspectionRecord.inspection_id,
                InspectionRecord.station_id,
                InspectionRecord.part_id,
                InspectionRecord.captured_at,
            )
            .where(InspectionRecord.id > floor, InspectionRecord.verdict == "PASS")
            .order_by(InspectionRecord.id)
        )
        for row_id, inspection_id, station_id, part_id, captured_at in session.execute(stmt):
            if is_sampled(inspection_id, self.rate):
                self._entries.append(
                    (
                        row_id,
                        QueueEntry(
                            kind="pass_sample",
                            id=inspection_id,
                            reason="PASS audit sample",
                            station_id=station_id,
                            part_id=part_id,
                            detected_at=captured_at,
                        ),
                    )
                )
        self._entries = self._entries[-self._keep :]
        self._after_id = max(self._after_id, newest)

    def pending(self, *, session: Session, limit: int, stations: set[str] | None = None) -> list[QueueEntry]:
        """Sampled parts not yet audited, newest first (of these stations only, when given)."""
        if self.rate <= 0.0 or limit <= 0:
            return []
        with self._lock:
            self._refresh(session)
            entries = [e for _, e in reversed(self._entries) if stations is None or e.station_id in stations]
        audited = set(
            session.scalars(
                select(AuditRecord.entity_id).where(
                    AuditRecord.action == "sample.review",
                    AuditRecord.entity == "inspection",
                    AuditRecord.entity_id.in_([e.id for e in entries]),
                )
            )
        )
        return [e for e in entries if e.id not in audited][:limit]


def review_queue(
    *, session: Session, sample: PassSample, limit: int = 100, scope: QueueScope = QueueScope()
) -> list[QueueEntry]:
    """REVIEW-band and disputed NCRs not yet adjudicated (oldest first), then sampled PASS parts.

    Args:
        session: a read-only session.
        sample: the PASS-sample scanner (rate = fraction of PASS parts drawn for the escape audit).
        limit: most items returned.
        scope: only this site / line / station.
    """
    entries = _ncr_entries(session, limit=limit, scope=scope)
    return entries + sample.pending(
        session=session, limit=limit - len(entries), stations=_pass_stations(session, scope)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NcrSummary:
    """One row of the NCR list (no hashing, no outbox: cheap enough for every page view)."""

    ncr_uuid: str
    ncr_number: str
    status: str
    revision: int
    detected_at: datetime
    station_id: str
    part_number: str
    serial_number: str | None
    defect_code: str
    machine_verdict: str
    review: dict[str, object] | None
    disposition: dict[str, object] | None


def ncr_summaries(filters: NcrFilter, *, session: Session, limit: int, offset: int = 0) -> list[NcrSummary]:
    """A page of NCRs (NCR-number order) with status, latest review decision and disposition code."""
    latest = status_subquery()
    revision = (
        select(NcrEvent.ncr_id, func.max(NcrEvent.revision).label("revision")).group_by(NcrEvent.ncr_id).subquery()
    )
    stmt = (
        select_ncrs(filters)
        .add_columns(latest.c.status, revision.c.revision)
        .join(latest, latest.c.ncr_id == NcrRecord.id)
        .join(revision, revision.c.ncr_id == NcrRecord.id)
        .limit(limit)
        .offset(offset)
    )
    rows = session.execute(stmt).all()
    steps: dict[int, dict[str, dict[str, object]]] = {}
    events = (
        select(
            NcrEvent.ncr_id,
            NcrEvent.kind,
            NcrEvent.payload,
            SignatureRecord.printed_name,
            SignatureRecord.meaning,
            SignatureRecord.signed_at,
        )
        .outerjoin(SignatureRecord, SignatureRecord.id == NcrEvent.signature_id)
        .where(
            NcrEvent.ncr_id.in_([r[0].id for r in rows]), NcrEvent.kind.in_(("REVIEWED", "SUPERSEDED", "DISPOSITIONED"))
        )
        .order_by(NcrEvent.revision)
    )
    for ncr_id, kind, payload, signer, meaning, signed_at in session.execute(events):
        value = json.loads(payload)
        picked: dict[str, object] = (
            {"decision": value.get("decision"), "defect_code": value.get("defect_code")}
            if kind != "DISPOSITIONED"
            else {"code": value.get("code"), "quantity": value.get("quantity")}
        )
        picked["signature"] = (
            None if signer is None else {"printed_name": signer, "meaning": meaning, "signed_at": format_utc(signed_at)}
        )
        steps.setdefault(ncr_id, {})["DISPOSITIONED" if kind == "DISPOSITIONED" else "REVIEWED"] = picked
    return [
        NcrSummary(
            ncr_uuid=n.ncr_uuid,
            ncr_number=n.ncr_number,
            status=status,
            revision=rev,
            detected_at=n.detected_at,
            station_id=n.station_id,
            part_number=n.part_number,
            serial_number=n.serial_number,
            defect_code=n.defect_code,
            machine_verdict=n.machine_verdict,
            review=steps.get(n.id, {}).get("REVIEWED"),
            disposition=steps.get(n.id, {}).get("DISPOSITIONED"),
        )
        for n, status, rev in rows
    ]


def get_inspection(inspection_id: str, *, session: Session) -> InspectionRecord | None:
    """One inspection row (detached-safe: read its columns inside the session)."""
    return session.scalar(select(InspectionRecord).where(InspectionRecord.inspection_id == inspection_id))


def part_history(part_id: str | None, *, session: Session, limit: int = 20) -> list[InspectionRecord]:
    """Earlier inspections of the same part id, newest first."""
    if not part_id:
        return []
    return list(
        session.scalars(
            select(InspectionRecord)
            .where(InspectionRecord.part_id == part_id)
            .order_by(InspectionRecord.id.desc())
            .limit(limit)
        )
    )


def actor_names(*, session: Session) -> dict[str, str]:
    """``user:<id>`` → "Display Name (username)", to show people rather than ids."""
    rows = session.execute(select(UserRecord.id, UserRecord.display_name, UserRecord.username))
    return {f"user:{i}": f"{name} ({username})" for i, name, username in rows}


def evidence_is_referenced(sha256: str, *, session: Session) -> bool:
    """True when some NCR, or a sampled PASS part, references the file (only referenced evidence is served)."""
    if session.scalar(select(EvidenceRecord.id).where(EvidenceRecord.sha256 == sha256).limit(1)) is not None:
        return True
    return session.scalar(select(PassEvidenceRecord.id).where(PassEvidenceRecord.sha256 == sha256).limit(1)) is not None


def audit_rows(
    *,
    session: Session,
    entity: str | None = None,
    entity_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[AuditRecord]:
    """Audit rows, newest first, optionally for one entity, actor or action (``ncr.*``: a prefix)."""
    stmt = select(AuditRecord).order_by(AuditRecord.seq.desc())
    if action is not None:
        stmt = stmt.where(
            AuditRecord.action.startswith(action[:-1], autoescape=True)
            if action.endswith("*")
            else AuditRecord.action == action
        )
    if entity is not None:
        stmt = stmt.where(AuditRecord.entity == entity)
    if entity_id is not None:
        stmt = stmt.where(AuditRecord.entity_id == entity_id)
    if actor is not None:
        stmt = stmt.where(AuditRecord.actor == actor)
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def ncr_numbers(uuids: Sequence[str], *, session: Session) -> dict[str, str]:
    """uuid → NCR number for the NCRs among ``uuids`` (to show people numbers, not uuids)."""
    wanted = sorted(set(uuids))
    if not wanted:
        return {}
    rows = session.execute(select(NcrRecord.ncr_uuid, NcrRecord.ncr_number).where(NcrRecord.ncr_uuid.in_(wanted)))
    return {str(uuid): str(number) for uuid, number in rows}


def audit_for_ncr(ncr_uuid: str, *, session: Session) -> list[AuditRecord]:
    """Every audit row about an NCR, its events and its signatures, in chain order."""
    ncr_id = session.scalar(select(NcrRecord.id).where(NcrRecord.ncr_uuid == ncr_uuid))
    if ncr_id is None:
        return []
    event_ids = [str(i) for i in session.scalars(select(NcrEvent.id).where(NcrEvent.ncr_id == ncr_id))]
    sig_ids = [
        str(i)
        for i in session.scalars(
            select(SignatureRecord.id).where(SignatureRecord.entity == "ncr", SignatureRecord.entity_id == ncr_uuid)
        )
    ]
    clauses = [and_(AuditRecord.entity == "ncr", AuditRecord.entity_id == ncr_uuid)]
    if event_ids:
        clauses.append(and_(AuditRecord.entity == "ncr_event", AuditRecord.entity_id.in_(event_ids)))
    if sig_ids:
        clauses.append(and_(AuditRecord.entity == "signature", AuditRecord.entity_id.in_(sig_ids)))
    return list(session.scalars(select(AuditRecord).where(or_(*clauses)).order_by(AuditRecord.seq)))


def defect_codes_in_use(*, session: Session, limit: int = 50) -> Sequence[str]:
    """Machine defect codes seen so far, most frequent first."""
    stmt = (
        select(NcrRecord.defect_code, func.count())
        .group_by(NcrRecord.defect_code)
        .order_by(func.count().desc())
        .limit(limit)
    )
    return [code for code, _ in session.execute(stmt)]
