"""Whole-store verification: database integrity, the audit chain, and every record against it.

The chain proves the audit rows are intact; each append-only record is then checked against the
``record_sha256`` of the audit link that covers it, so an edit of a record (hash differs), an
insertion outside the application (no link), a deletion (a link without its record) or a
reordering of ids (hashes include ids) is reported by name. Mutable rows (user accounts) are
compared field by field with the state their last audit link declares, so a change made outside
the application (re-activating an account, swapping a password hash or a role) is named with
table, key and field; so is the QMS outbox's delivery state (a row marked delivered without the
audit link of its delivery, or reset to pending after one) and the payload a pending row would
still send; a pending row's retry time is checked against what the relay can have written (due
at creation before the first attempt, never more than its longest retry delay ahead), so holding
an NCR back from the QMS is named too. Signatures are re-verified against the content they signed.
:func:`verify_store` is what ``vinspect audit verify`` and backup verification run.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session, selectinload

from vinspect.store.audit import ChainAnchor, ChainReport, verify_chain
from vinspect.store.audit_key import AuditKeyring
from vinspect.store.canonical import format_utc, sha256_hex
from vinspect.store.content import event_sha256, inspection_batch_sha256, ncr_sha256, signature_sha256, user_sha256
from vinspect.store.label_verify import label_event_problems
from vinspect.store.lifecycle import verify_signature
from vinspect.store.station_configs import config_problems
from vinspect.store.tables import (
    AuditRecord,
    InspectionRecord,
    NcrEvent,
    NcrRecord,
    OutboxRecord,
    SignatureRecord,
    UserRecord,
)
from vinspect.store.users import user_state_fields

__all__ = ["StoreReport", "integrity_check", "record_counts", "verify_records", "verify_store"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreReport:
    """Everything :func:`verify_store` found; ``problems`` are in check order, first = first broken."""

    integrity: str
    chain: ChainReport
    problems: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.integrity == "ok" and self.chain.ok and not self.problems


def integrity_check(session: Session) -> str:
    """SQLite ``PRAGMA integrity_check`` ("ok" when sound); PostgreSQL reports "ok" if reachable."""
    if session.get_bind().dialect.name == "sqlite":
        rows = [str(r[0]) for r in session.execute(text("PRAGMA integrity_check"))]
        return "ok" if rows == ["ok"] else "; ".join(rows)
    session.execute(text("SELECT 1"))
    return "ok"


def record_counts(session: Session) -> dict[str, int]:
    """Row counts of the record tables (backup manifests, reconciliation)."""
    tables = {
        "inspections": InspectionRecord,
        "ncrs": NcrRecord,
        "ncr_events": NcrEvent,
        "signatures": SignatureRecord,
        "audit_records": AuditRecord,
        "users": UserRecord,
    }
    return {name: int(session.scalar(select(func.count()).select_from(t)) or 0) for name, t in tables.items()}


def _links(session: Session) -> dict[tuple[str, str], tuple[int, str | None]]:
    """(entity, id) -> (seq, record_sha256) of the link that recorded each record's creation."""
    creation = or_(
        and_(AuditRecord.entity == "ncr", AuditRecord.action == "ncr.open"),
        AuditRecord.entity == "ncr_event",
        and_(AuditRecord.entity == "signature", AuditRecord.action == "signature.create"),
        and_(AuditRecord.entity == "user", AuditRecord.action == "user.create"),
    )
    rows = session.execute(
        select(AuditRecord.entity, AuditRecord.entity_id, AuditRecord.seq, AuditRecord.record_sha256).where(creation)
    )
    return {(entity, entity_id): (seq, digest) for entity, entity_id, seq, digest in rows}


def _check(
    kind: str, key: str, *, digest: str | None, links: dict[tuple[str, str], tuple[int, str | None]]
) -> str | None:
    """The creation link of a record exists and (unless ``digest`` is None) matches its content."""
    link = links.pop((kind, key), None)
    if link is None:
        return f"{kind} {key}: no audit link covers it (inserted outside the application)"
    if digest is not None and link[1] != digest:
        return f"{kind} {key}: content differs from audit seq {link[0]} (edited)"
    return None


def _record_problems(session: Session) -> Generator[str, None, None]:
    links = _links(session)
    ncrs = select(NcrRecord).order_by(NcrRecord.id).options(selectinload(NcrRecord.evidence))
    with closing(session.scalars(ncrs.execution_options(yield_per=500))) as result:
        for ncr in result:
            if (problem := _check("ncr", ncr.ncr_uuid, digest=ncr_sha256(ncr, ncr.evidence), links=links)) is not None:
                yield problem
    events = select(NcrEvent).order_by(NcrEvent.id).execution_options(yield_per=2000)
    with closing(session.scalars(events)) as event_rows:
        for event in event_rows:
            if (problem := _check("ncr_event", str(event.id), digest=event_sha256(event), links=links)) is not None:
                yield problem
    for sig in session.scalars(select(SignatureRecord).order_by(SignatureRecord.id)):
        if (problem := _check("signature", str(sig.id), digest=signature_sha256(sig), links=links)) is not None:
            yield problem
        elif not verify_signature(sig.id, session=session):
            yield f"signature {sig.id}: no longer matches the content it signed"
    declared = _declared_user_states(session)
    for user in session.scalars(select(UserRecord).order_by(UserRecord.id)):
        state = declared.get(str(user.id))
        # an account with declared state may have changed role or name since its creation: the state
        # links carry the comparison; older accounts keep their creation digest
        digest = None if state is not None and "role" in state[1] else user_sha256(user)
        if (problem := _check("user", str(user.id), digest=digest, links=links)) is not None:
            yield problem
        yield from _user_state_problems(user, state)
    yield from label_event_problems(session)
    yield from config_problems(session)
    for (kind, key), (seq, _) in sorted(links.items(), key=lambda item: item[1][0]):
        yield f"{kind} {key}: covered by audit seq {seq} but missing (deleted)"


def _declared_user_states(session: Session) -> dict[str, tuple[int, dict[str, object]]]:
    """Per user id, the newest audit seq and the state its links declare.

    Links with ``state`` declare the whole account; older links (before ``state`` existed)
    declare only the active flag (``user.set_active``'s new value).
    """
    declared: dict[str, tuple[int, dict[str, object]]] = {}
    rows = session.execute(
        select(AuditRecord.entity_id, AuditRecord.seq, AuditRecord.action, AuditRecord.new_value, AuditRecord.state)
        .where(AuditRecord.entity == "user")
        .order_by(AuditRecord.seq)
    )
    for entity_id, seq, action, new_value, state in rows:
        _, fields = declared.get(entity_id, (0, {}))
        if state is not None:
            fields = dict(json.loads(state))
        elif action == "user.set_active" and new_value in ("true", "false"):
            fields = {**fields, "active": new_value == "true"}
        declared[entity_id] = (seq, fields)
    return declared


def _user_state_problems(user: UserRecord, declared: tuple[int, dict[str, object]] | None) -> Generator[str]:
    if declared is None:
        return
    seq, fields = declared
    current = user_state_fields(user)
    for name, value in fields.items():
        if current.get(name) != value:
            shown = "differs" if name == "password_sha256" else f"is {current.get(name)!r}"
            what = "password_hash" if name == "password_sha256" else name
            yield (
                f"users {user.id} ({user.username}): field {what} {shown} but audit seq {seq} declares "
                f"{'another value' if name == 'password_sha256' else repr(value)} (changed outside the application)"
            )


_OUTBOX_DECLARES = {"ncr.export": "DELIVERED", "ncr.export_parked": "PARKED"}
# The relay's longest retry delay (RelayConfig.backoff_cap_s, 60 s) plus margin: a pending row due
# later than this after the check was held back outside the application.
OUTBOX_LONGEST_WAIT = timedelta(seconds=120)


def _retry_problem(where: str, *, attempts: int, created_at: datetime, due: datetime, now: datetime) -> str | None:
    """The retry bookkeeping of a pending row against what the relay can have written (not audited)."""
    if attempts < 0:
        return f"{where}: field attempts is {attempts} (changed outside the application)"
    if attempts == 0 and due != created_at:
        return (
            f"{where}: field next_attempt_at is {format_utc(due)} but a row never attempted is due when it "
            f"was created, {format_utc(created_at)} (changed outside the application: delivery held back)"
        )
    if due > now + OUTBOX_LONGEST_WAIT:
        return (
            f"{where}: field next_attempt_at is {format_utc(due)}, later than the relay's longest retry "
            f"delay allows (changed outside the application: delivery held back)"
        )
    return None


def _outbox_problems(session: Session) -> Generator[str]:
    """Each outbox row's state against its audit links (none: PENDING); pending payloads against their hash."""
    declared: dict[tuple[str | None, str], tuple[int, str, str | None]] = {}
    rows = session.execute(
        select(
            AuditRecord.seq, AuditRecord.action, AuditRecord.source, AuditRecord.entity_id, AuditRecord.record_sha256
        )
        .where(AuditRecord.entity == "outbox")
        .order_by(AuditRecord.seq)
    )
    for audit_seq, action, audit_target, audit_key, audit_digest in rows:
        if action in _OUTBOX_DECLARES:
            declared[(audit_target, audit_key)] = (audit_seq, _OUTBOX_DECLARES[action], audit_digest)
    stmt = (
        select(
            OutboxRecord.id,
            OutboxRecord.target,
            OutboxRecord.idempotency_key,
            OutboxRecord.state,
            OutboxRecord.payload_sha256,
            OutboxRecord.attempts,
            OutboxRecord.created_at,
            OutboxRecord.next_attempt_at,
        )
        .order_by(OutboxRecord.id)
        .execution_options(yield_per=5000)
    )
    now = datetime.now(UTC)
    for row_id, target, key, state, payload_sha256, attempts, created_at, due in session.execute(stmt).all():
        link = declared.get((target, key))
        seq, wanted, digest = link if link is not None else (None, "PENDING", None)
        where = f"outbox {key} (target {target})"
        by = f"audit seq {seq}" if seq is not None else "no audit link of a delivery or parking"
        if state != wanted:
            yield f"{where}: field state is {state!r} but {by} declares {wanted!r} (changed outside the application)"
        elif wanted == "DELIVERED" and digest != payload_sha256:
            yield f"{where}: field payload_sha256 differs from audit seq {seq} (changed outside the application)"
        elif wanted == "PENDING":
            payload = session.scalar(select(OutboxRecord.payload).where(OutboxRecord.id == row_id)) or ""
            if sha256_hex(payload.encode("utf-8")) != payload_sha256:
                yield f"{where}: field payload differs from its payload_sha256 (changed outside the application)"
            elif held := _retry_problem(where, attempts=attempts, created_at=created_at, due=due, now=now):
                yield held


def _inspection_problems(session: Session) -> Generator[str, None, None]:
    batches = session.execute(
        select(AuditRecord.seq, AuditRecord.entity_id, AuditRecord.new_value, AuditRecord.record_sha256)
        .where(AuditRecord.entity == "inspections")
        .order_by(AuditRecord.seq)
    ).all()
    covered = 0
    spans: list[tuple[int, int]] = []
    for seq, span, count, digest in batches:
        first, _, last = span.partition("-")
        spans.append((int(first), int(last)))
        rows = session.scalars(select(InspectionRecord).where(InspectionRecord.id.between(int(first), int(last)))).all()
        covered += len(rows)
        if str(len(rows)) != count or inspection_batch_sha256(rows) != digest:
            yield f"inspections {span}: rows differ from audit seq {seq} (edited, deleted or inserted)"
    total = int(session.scalar(select(func.count()).select_from(InspectionRecord)) or 0)
    if total != covered:
        yield from _uncovered_inspections(session, spans)


def _uncovered_inspections(session: Session, spans: list[tuple[int, int]], *, limit: int = 20) -> Generator[str]:
    """Name inspection rows that no audited batch covers (inserted outside the application)."""
    spans.sort()
    named = 0
    stmt = (
        select(
            InspectionRecord.id, InspectionRecord.inspection_id, InspectionRecord.station_id, InspectionRecord.part_seq
        )
        .order_by(InspectionRecord.id)
        .execution_options(yield_per=5000)
    )
    k = 0
    with closing(session.execute(stmt)) as rows:
        for row_id, inspection_id, station_id, part_seq in rows:
            while k < len(spans) and spans[k][1] < row_id:
                k += 1
            if k < len(spans) and spans[k][0] <= row_id <= spans[k][1]:
                continue
            yield (
                f"inspections id {row_id} (inspection_id {inspection_id}, station {station_id}, "
                f"part seq {part_seq}): no audit link covers it (inserted outside the application)"
            )
            named += 1
            if named >= limit:
                return


def verify_records(*, session: Session, limit: int = 20) -> tuple[str, ...]:
    """Up to ``limit`` problems found checking every record against its audit link."""
    problems: list[str] = []
    for source_of in (_inspection_problems, _record_problems, _outbox_problems):
        with closing(source_of(session)) as source:
            for problem in source:
                problems.append(problem)
                if len(problems) >= limit:
                    return tuple(problems)
    return tuple(problems)


def verify_store(
    *,
    session: Session,
    anchor: ChainAnchor | None = None,
    keyring: AuditKeyring | None = None,
) -> StoreReport:
    """Integrity check, chain verification (with each row's HMAC when ``keyring`` is given) and
    record verification, in that order."""
    session.flush()
    integrity = integrity_check(session)
    chain = verify_chain(session=session, anchor=anchor, keyring=keyring)
    problems = verify_records(session=session)
    return StoreReport(integrity=integrity, chain=chain, problems=problems, counts=record_counts(session))
