"""CAPA with 8D: open from NCRs, a Pareto bar or an SPC alarm; owners sign D0-D7; a quality engineer closes.

Every change is audited (``capa.*`` rows with old and new values); step signatures (meaning
``AUTHORSHIP``, by the step's owner only) and the closure signature (meaning ``APPROVAL``, quality
engineers only, every step signed first) bind the canonical content they cover
(:mod:`vinspect.store.signed_records`). The baseline the effectiveness check compares against is
frozen at opening and never changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from vinspect.errors import StateError, StoreError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, format_utc
from vinspect.store.db import lock_writers
from vinspect.store.ncr import Role, SignatureMeaning
from vinspect.store.signed_records import sign_record
from vinspect.store.tables import (
    AuditRecord,
    CapaLinkRecord,
    CapaRecord,
    CapaStepRecord,
    NcrRecord,
    SignatureRecord,
    UserRecord,
)

__all__ = [
    "FISHBONE",
    "SOURCES",
    "STEPS",
    "CapaStep",
    "CapaSummary",
    "CapaView",
    "capa_summaries",
    "capas_for_ncrs",
    "close_capa",
    "edit_step",
    "get_capa",
    "link_ncrs",
    "open_capa",
    "sign_step",
]

STEPS: dict[str, str] = {
    "D0": "Plan and emergency response",
    "D1": "Team",
    "D2": "Problem description (is / is not)",
    "D3": "Containment",
    "D4": "Root cause (5 whys, fishbone category)",
    "D5": "Chosen corrective actions",
    "D6": "Implemented corrective actions",
    "D7": "Preventive actions",
}
FISHBONE = ("man", "machine", "method", "material", "measurement", "environment")
SOURCES = ("ncr", "pareto", "alarm")
STATUSES = ("OPEN", "IN_PROGRESS", "CLOSED")


def _json(value: object) -> str:
    return canonical_json(value).decode("utf-8")


def _user(session: Session, user_id: int, what: str, roles: Sequence[Role] | None = None) -> UserRecord:
    user = session.get(UserRecord, user_id)
    if user is None or not user.active:
        raise StateError(f"{what}: user {user_id} does not exist or is deactivated")
    if roles is not None and Role(user.role) not in roles:
        raise StateError(f"{what}: {user.username} ({user.role}) may not do this; a quality engineer does")
    if Role(user.role) is Role.ADMIN:
        raise StateError(f"{what}: admins do not own or sign CAPA steps")
    return user


def _load(session: Session, number: str) -> CapaRecord:
    capa = session.scalar(
        select(CapaRecord)
        .where(CapaRecord.capa_number == number)
        .options(selectinload(CapaRecord.steps), selectinload(CapaRecord.links))
    )
    if capa is None:
        raise StoreError(f"CAPA {number} not found")
    return capa


def _audit(
    session: Session,
    capa: CapaRecord,
    action: str,
    *,
    actor: str,
    at: datetime,
    field: str | None = None,
    old: str | None = None,
    new: str | None = None,
    reason: str | None = None,
    source: str | None = None,
) -> None:
    append_audit(
        AuditEntry(
            actor=actor,
            action=action,
            entity="capa",
            entity_id=capa.capa_number,
            field=field,
            old_value=old,
            new_value=new,
            reason=reason,
            source=source,
        ),
        session=session,
        at=at,
    )


def _link(
    session: Session, capa: CapaRecord, uuids: Sequence[str], *, actor: str, at: datetime, source: str | None
) -> list[str]:
    known = {
        str(u): str(n)
        for u, n in session.execute(
            select(NcrRecord.ncr_uuid, NcrRecord.ncr_number).where(NcrRecord.ncr_uuid.in_(list(uuids)))
        )
    }
    missing = sorted(set(uuids) - set(known))
    if missing:
        raise StateError(f"CAPA {capa.capa_number}: no NCR {', '.join(missing)}")
    have = {link.ncr_uuid for link in capa.links}
    added = [u for u in dict.fromkeys(uuids) if u not in have]
    for uuid in added:
        session.add(CapaLinkRecord(capa_id=capa.id, ncr_uuid=uuid, linked_at=at, linked_by=actor))
        _audit(
            session,
            capa,
            "capa.link",
            actor=actor,
            at=at,
            field="ncr_uuid",
            new=uuid,
            reason=f"linked {known[uuid]}",
            source=source,
        )
    session.flush()
    return added


def open_capa(
    *,
    session: Session,
    user_id: int,
    title: str,
    source: str,
    source_ref: str,
    ncr_uuids: Sequence[str] = (),
    defect_codes: Sequence[str] = (),
    station_id: str | None = None,
    owners: Mapping[str, int],
    due: Mapping[str, datetime],
    baseline: Mapping[str, Any],
    client: str | None = None,
    at: datetime | None = None,
) -> str:
    """Open a CAPA (quality engineer) with an owner and due date for each of D0-D7; returns its number.

    Raises:
        StateError: not a quality engineer, an empty title, an unknown source, a missing or inactive
            owner, a missing due date, or an unknown NCR.
    """
    lock_writers(session)
    now = at or datetime.now(UTC)
    opener = _user(session, user_id, "opening a CAPA", roles=(Role.QUALITY_ENGINEER,))
    if not title.strip():
        raise StateError("a CAPA needs a title")
    if source not in SOURCES:
        raise StateError(f"a CAPA is opened from {', '.join(SOURCES)}, not {source!r}")
    if source == "ncr" and not ncr_uuids:
        raise StateError("a CAPA opened from NCRs needs at least one NCR")
    for step in STEPS:
        if step not in owners:
            raise StateError(f"{step} ({STEPS[step]}) needs an owner")
        if step not in due:
            raise StateError(f"{step} ({STEPS[step]}) needs a due date")
        _user(session, owners[step], f"owner of {step}")
    count = int(session.scalar(select(func.count()).select_from(CapaRecord)) or 0)
    number = f"CAPA-{now.year}-{count + 1:04d}"
    capa = CapaRecord(
        capa_number=number,
        title=title.strip()[:200],
        status="OPEN",
        source=source,
        source_ref=source_ref[:128],
        station_id=station_id,
        defect_codes=_json(sorted(set(defect_codes))),
        opened_by=opener.id,
        opened_at=now,
        baseline=_json(dict(baseline)),
    )
    session.add(capa)
    session.flush()
    actor = f"user:{opener.id}"
    header = {
        "title": capa.title,
        "source": source,
        "source_ref": capa.source_ref,
        "station_id": station_id,
        "defect_codes": sorted(set(defect_codes)),
        "baseline": dict(baseline),
    }
    _audit(session, capa, "capa.open", actor=actor, at=now, field="header", new=_json(header), source=client)
    for step in STEPS:
        session.add(
            CapaStepRecord(
                capa_id=capa.id,
                step=step,
                owner_user_id=owners[step],
                due_at=due[step],
                content=_json({}),
                updated_at=now,
            )
        )
        _audit(
            session,
            capa,
            "capa.step.assign",
            actor=actor,
            at=now,
            field=step,
            new=_json({"owner_user_id": owners[step], "due_at": format_utc(due[step])}),
            source=client,
        )
    session.flush()
    session.refresh(capa)
    _link(session, capa, list(ncr_uuids), actor=actor, at=now, source=client)
    return number


def link_ncrs(
    number: str,
    ncr_uuids: Sequence[str],
    *,
    session: Session,
    user_id: int,
    client: str | None = None,
    at: datetime | None = None,
) -> list[str]:
    """Link more NCRs to an open CAPA (quality engineer); returns the uuids newly linked."""
    lock_writers(session)
    user = _user(session, user_id, "linking NCRs", roles=(Role.QUALITY_ENGINEER,))
    capa = _load(session, number)
    if capa.status == "CLOSED":
        raise StateError(f"CAPA {number} is closed")
    return _link(session, capa, ncr_uuids, actor=f"user:{user.id}", at=at or datetime.now(UTC), source=client)


def _step(capa: CapaRecord, step: str) -> CapaStepRecord:
    for row in capa.steps:
        if row.step == step:
            return row
    raise StoreError(f"CAPA {capa.capa_number} has no step {step!r}")


def _clean(step: str, content: Mapping[str, str]) -> dict[str, str]:
    text = str(content.get("text", "")).strip()
    cleaned = {"text": text}
    if step == "D4":
        category = str(content.get("category", "")).strip()
        if category and category not in FISHBONE:
            raise StateError(f"D4 fishbone category must be one of {', '.join(FISHBONE)}, not {category!r}")
        cleaned["category"] = category
    return cleaned


def _owned_open_step(
    session: Session, number: str, step: str, user_id: int, what: str
) -> tuple[CapaRecord, CapaStepRecord, UserRecord]:
    user = _user(session, user_id, what)
    capa = _load(session, number)
    row = _step(capa, step)
    if capa.status == "CLOSED":
        raise StateError(f"CAPA {number} is closed")
    if row.owner_user_id != user.id:
        raise StateError(f"{what}: {step} of {number} is owned by another person; only its owner may")
    if row.signature_id is not None:
        raise StateError(f"{step} of {number} is already signed")
    return capa, row, user


def _start_work(session: Session, capa: CapaRecord, user: UserRecord, *, at: datetime, source: str | None) -> None:
    """The first step edited or signed moves an OPEN CAPA to IN_PROGRESS (audited)."""
    if capa.status != "OPEN":
        return
    _audit(
        session,
        capa,
        "capa.status",
        actor=f"user:{user.id}",
        at=at,
        field="status",
        old="OPEN",
        new="IN_PROGRESS",
        source=source,
    )
    capa.status = "IN_PROGRESS"


def edit_step(
    number: str,
    step: str,
    content: Mapping[str, str],
    *,
    session: Session,
    user_id: int,
    client: str | None = None,
    at: datetime | None = None,
) -> None:
    """Save a step's content (its owner, before signing); the old and new content are audited."""
    lock_writers(session)
    now = at or datetime.now(UTC)
    capa, row, user = _owned_open_step(session, number, step, user_id, "editing a step")
    new = _json(_clean(step, content))
    if new == row.content:
        return
    _audit(
        session,
        capa,
        "capa.step.edit",
        actor=f"user:{user.id}",
        at=now,
        field=step,
        old=row.content,
        new=new,
        source=client,
    )
    row.content, row.updated_at = new, now
    _start_work(session, capa, user, at=now, source=client)


def sign_step(
    number: str,
    step: str,
    *,
    session: Session,
    user_id: int,
    reason: str | None = None,
    auth_method: str = "password",
    client: str | None = None,
    at: datetime | None = None,
) -> int:
    """The owner signs a step as it stands (meaning AUTHORSHIP); returns the signature id."""
    lock_writers(session)
    now = at or datetime.now(UTC)
    capa, row, user = _owned_open_step(session, number, step, user_id, "signing a step")
    content = json.loads(row.content)
    if not str(content.get("text", "")).strip():
        raise StateError(f"{step} of {number} is empty: write it before signing")
    if step == "D4" and not content.get("category"):
        raise StateError(f"D4 of {number} needs a fishbone category before signing")
    sig = sign_record(
        session=session,
        entity="capa",
        entity_id=number,
        signer=user,
        meaning=SignatureMeaning.AUTHORSHIP,
        content={
            "capa_number": number,
            "step": step,
            "title": STEPS[step],
            "content": content,
            "due_at": format_utc(row.due_at),
        },
        action="capa.step.sign",
        reason=reason or f"{step} signed by its owner",
        source=client,
        at=now,
        auth_method=auth_method,
    )
    row.signed_at, row.signature_id = now, sig.id
    _start_work(session, capa, user, at=now, source=client)
    return sig.id


def close_capa(
    number: str,
    *,
    session: Session,
    user_id: int,
    recognition: str,
    reason: str,
    effectiveness: Mapping[str, Any],
    auth_method: str = "password",
    client: str | None = None,
    at: datetime | None = None,
) -> int:
    """D8: a quality engineer closes the CAPA (meaning APPROVAL) once D0-D7 are signed; returns the signature id.

    Raises:
        StateError: not a quality engineer, an unsigned step, no reason, or already closed.
    """
    lock_writers(session)
    now = at or datetime.now(UTC)
    user = session.get(UserRecord, user_id)
    if user is None or not user.active:
        raise StateError(f"closing a CAPA: user {user_id} does not exist or is deactivated")
    if Role(user.role) is not Role.QUALITY_ENGINEER:
        raise StateError(f"closing a CAPA needs a quality engineer's signature; {user.username} is {user.role}")
    capa = _load(session, number)
    if capa.status == "CLOSED":
        raise StateError(f"CAPA {number} is already closed")
    unsigned = [s.step for s in capa.steps if s.signature_id is None]
    if unsigned:
        raise StateError(f"CAPA {number} cannot close: {', '.join(unsigned)} not signed by their owners")
    if not reason.strip():
        raise StateError("closing a CAPA needs a reason")
    sig = sign_record(
        session=session,
        entity="capa",
        entity_id=number,
        signer=user,
        meaning=SignatureMeaning.APPROVAL,
        content={
            "capa_number": number,
            "step": "D8",
            "recognition": recognition.strip(),
            "effectiveness": dict(effectiveness),
            "step_signatures": {s.step: s.signature_id for s in capa.steps},
            "links": [link.ncr_uuid for link in capa.links],
        },
        action="capa.close",
        reason=reason.strip(),
        source=client,
        at=now,
        auth_method=auth_method,
    )
    _audit(
        session,
        capa,
        "capa.status",
        actor=f"user:{user.id}",
        at=now,
        field="status",
        old=capa.status,
        new="CLOSED",
        reason=reason.strip(),
        source=client,
    )
    capa.status, capa.closed_at, capa.closed_by, capa.closure_signature_id = "CLOSED", now, user.id, sig.id
    return sig.id


@dataclass(frozen=True, slots=True, kw_only=True)
class CapaStep:
    step: str
    title: str
    owner_user_id: int
    owner_name: str
    due_at: datetime
    content: dict[str, str]
    signed_at: datetime | None
    signature: dict[str, Any] | None
    intact: bool  # a signed step's content still equals what its owner signed


@dataclass(frozen=True, slots=True, kw_only=True)
class CapaSummary:
    capa_number: str
    title: str
    status: str
    source: str
    source_ref: str
    station_id: str | None
    opened_at: datetime
    closed_at: datetime | None
    ncr_count: int
    signed_steps: int
    next_due: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CapaView:
    summary: CapaSummary
    defect_codes: list[str]
    baseline: dict[str, Any]
    opened_by: str
    steps: list[CapaStep]
    ncrs: list[tuple[str, str]]  # (uuid, number)
    closure: dict[str, Any] | None
    closed_by: str | None


def _sig_view(sig: SignatureRecord | None) -> dict[str, Any] | None:
    if sig is None:
        return None
    return {
        "id": sig.id,
        "printed_name": sig.printed_name,
        "meaning": sig.meaning,
        "signed_at": format_utc(sig.signed_at),
        "record_sha256": sig.record_sha256,
    }


def _summary(capa: CapaRecord) -> CapaSummary:
    pending = [s.due_at for s in capa.steps if s.signature_id is None]
    return CapaSummary(
        capa_number=capa.capa_number,
        title=capa.title,
        status=capa.status,
        source=capa.source,
        source_ref=capa.source_ref,
        station_id=capa.station_id,
        opened_at=capa.opened_at,
        closed_at=capa.closed_at,
        ncr_count=len(capa.links),
        signed_steps=sum(1 for s in capa.steps if s.signature_id is not None),
        next_due=min(pending) if pending and capa.status != "CLOSED" else None,
    )


def capa_summaries(*, session: Session, status: str | None = None, limit: int = 200) -> list[CapaSummary]:
    stmt = (
        select(CapaRecord)
        .options(selectinload(CapaRecord.steps), selectinload(CapaRecord.links))
        .order_by(CapaRecord.id.desc())
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(CapaRecord.status == status)
    return [_summary(c) for c in session.scalars(stmt)]


def get_capa(number: str, *, session: Session) -> CapaView | None:
    try:
        capa = _load(session, number)
    except StoreError:
        return None
    users = {u.id: f"{u.display_name} ({u.username})" for u in session.scalars(select(UserRecord))}
    sig_ids = [s.signature_id for s in capa.steps if s.signature_id is not None]
    if capa.closure_signature_id is not None:
        sig_ids.append(capa.closure_signature_id)
    sigs = {s.id: s for s in session.scalars(select(SignatureRecord).where(SignatureRecord.id.in_(sig_ids)))}
    numbers = {
        str(u): str(n)
        for u, n in session.execute(
            select(NcrRecord.ncr_uuid, NcrRecord.ncr_number).where(
                NcrRecord.ncr_uuid.in_([link.ncr_uuid for link in capa.links])
            )
        )
    }
    signed: dict[str, Any] = {}
    for row in session.scalars(
        select(AuditRecord).where(
            AuditRecord.entity == "capa", AuditRecord.entity_id == number, AuditRecord.action == "capa.step.sign"
        )
    ):
        body = json.loads(row.new_value or "{}")
        signed[str(body.get("step"))] = body.get("content")
    steps = [
        CapaStep(
            step=s.step,
            title=STEPS.get(s.step, s.step),
            owner_user_id=s.owner_user_id,
            owner_name=users.get(s.owner_user_id, f"user {s.owner_user_id}"),
            due_at=s.due_at,
            content=json.loads(s.content),
            signed_at=s.signed_at,
            intact=s.signature_id is None or signed.get(s.step) == json.loads(s.content),
            signature=_sig_view(sigs.get(s.signature_id)) if s.signature_id is not None else None,
        )
        for s in capa.steps
    ]
    return CapaView(
        summary=_summary(capa),
        defect_codes=json.loads(capa.defect_codes),
        baseline=json.loads(capa.baseline),
        opened_by=users.get(capa.opened_by, str(capa.opened_by)),
        steps=steps,
        ncrs=[(link.ncr_uuid, numbers.get(link.ncr_uuid, link.ncr_uuid)) for link in capa.links],
        closure=_sig_view(sigs.get(capa.closure_signature_id)) if capa.closure_signature_id else None,
        closed_by=users.get(capa.closed_by) if capa.closed_by is not None else None,
    )


def capas_for_ncrs(uuids: Sequence[str], *, session: Session) -> dict[str, list[dict[str, Any]]]:
    """uuid -> the CAPAs linked to it (number, status, title), for NCR pages and the QMS export."""
    if not uuids:
        return {}
    rows = session.execute(
        select(
            CapaLinkRecord.ncr_uuid, CapaRecord.capa_number, CapaRecord.status, CapaRecord.title, CapaRecord.closed_at
        )
        .join(CapaRecord, CapaRecord.id == CapaLinkRecord.capa_id)
        .where(CapaLinkRecord.ncr_uuid.in_(list(uuids)))
        .order_by(CapaLinkRecord.id)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for uuid, number, status, title, closed_at in rows:
        found.setdefault(uuid, []).append(
            {
                "capa_number": number,
                "status": status,
                "title": title,
                "closed_at": None if closed_at is None else format_utc(closed_at),
            }
        )
    return found
