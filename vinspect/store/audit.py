"""The audit trail: one hash chain with gap-free sequence numbers, and its verifier.

``row_hash = sha256(prev_hash ‖ canonical(row))`` where ``row`` holds every column except the
surrogate ``id``, ``row_hash`` and its HMAC, ``seq`` included (``state`` only when set, so
rows written before that column existed hash as before), so edits, deletions, insertions and
reorderings each break a link. Appends run under the writer lock (see :mod:`vinspect.store.db`),
which makes ``seq`` gap-free across processes.

Plain hashes need no secret: anyone who can write the database could append or re-hash rows.
When the engine has an audit key attached (:mod:`vinspect.store.audit_key`), every new row also
carries ``key_id`` and ``mac`` = HMAC-SHA256(key, row_hash), and every commit that appended
rows rewrites the signed anchor file outside the database. :func:`verify_chain` checks each
MAC it has the key for, refuses an unkeyed row after a keyed one, and checks the chain still
reaches the anchor (deleting the newest rows leaves no broken link otherwise).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from vinspect.store.audit_key import AuditKeyring, keying_for
from vinspect.store.canonical import canonical_json, format_utc, sha256_hex
from vinspect.store.db import lock_writers
from vinspect.store.tables import AuditRecord, table_of

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "ChainAnchor",
    "ChainReport",
    "append_audit",
    "append_audits",
    "chain_head",
    "links_after",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
_HEAD_KEY = "vinspect.audit_head"  # (transaction, head) cached for appends within one transaction


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """What happened: who (user id or ``system:<station>``), what, to which record, and why."""

    actor: str
    action: str
    entity: str
    entity_id: str
    field: str | None = None
    old_value: str | None = None
    new_value: str | None = None
    reason: str | None = None
    source: str | None = None
    record_sha256: str | None = None
    state: str | None = None  # canonical JSON of a mutable row's state after the change (users)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainAnchor:
    """The chain head exported outside the database (QMS, WORM storage) for later checks."""

    seq: int
    row_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    """Result of :func:`verify_chain`; ``broken_seq`` names the first broken link."""

    ok: bool
    rows_checked: int
    head: ChainAnchor | None
    broken_seq: int | None = None
    problem: str | None = None
    unkeyed: int = 0  # rows written before the store had an audit key (plain hashes only)
    keyed_unchecked: int = 0  # keyed rows whose MAC was not checked (no key file given)


_AUDIT_INSERT = table_of(AuditRecord).insert()
_HASHED = (
    "seq",
    "at",
    "actor",
    "action",
    "entity",
    "entity_id",
    "field",
    "old_value",
    "new_value",
    "reason",
    "source",
    "record_sha256",
    "prev_hash",
)


def row_content(row: AuditRecord | Mapping[str, Any]) -> dict[str, object]:
    """The hashed fields of an audit row (a stored row or the values about to be inserted)."""
    if isinstance(row, Mapping):
        content = {name: row.get(name) for name in _HASHED}
    else:
        content = {name: getattr(row, name) for name in _HASHED}
    content["at"] = format_utc(content["at"])  # type: ignore[arg-type]
    state = row.get("state") if isinstance(row, Mapping) else row.state
    if state is not None:
        content["state"] = state
    return content


def compute_row_hash(row: AuditRecord | Mapping[str, Any]) -> str:
    """``sha256(prev_hash ‖ canonical(row))`` in hex."""
    content = row_content(row)
    return sha256_hex(str(content["prev_hash"]).encode("ascii") + canonical_json(content))


def chain_head(session: Session) -> ChainAnchor | None:
    """The newest link, or None for an empty chain."""
    row = (
        session.connection()
        .execute(select(AuditRecord.seq, AuditRecord.row_hash).order_by(AuditRecord.seq.desc()).limit(1))
        .first()
    )
    return None if row is None else ChainAnchor(seq=row.seq, row_hash=row.row_hash)


def links_after(session: Session, seq: int) -> tuple[int, datetime | None, datetime | None]:
    """(count, first ``at``, last ``at``) of the links after ``seq``: what an anchor at ``seq`` does not cover."""
    row = (
        session.connection()
        .execute(select(func.count(), func.min(AuditRecord.at), func.max(AuditRecord.at)).where(AuditRecord.seq > seq))
        .one()
    )
    return int(row[0]), row[1], row[2]


def append_audit(entry: AuditEntry, *, session: Session, at: datetime | None = None) -> ChainAnchor:
    """Append one link to the chain inside the caller's transaction; returns the new head.

    Args:
        entry: the event; ``reason`` is mandatory for changes to quality records (callers check).
        session: the open write transaction that also holds the audited change.
        at: server UTC time; now when omitted.
    """
    return append_audits([entry], session=session, at=at)


def append_audits(entries: Sequence[AuditEntry], *, session: Session, at: datetime | None = None) -> ChainAnchor:
    """Append several links, in order, with one INSERT round trip; returns the new head.

    Raises:
        ValueError: no entries.
    """
    if not entries:
        raise ValueError("append_audits needs at least one entry")
    lock_writers(session)
    transaction = session.get_nested_transaction() or session.get_transaction()
    cached = session.info.get(_HEAD_KEY)
    head: ChainAnchor | None
    if cached is not None and cached[0] is transaction:
        head = cached[1]  # this transaction holds the writer lock: nobody else moved the head
    else:
        session.flush()
        head = chain_head(session)
    when = at or datetime.now(UTC)
    keying = keying_for(session.get_bind())
    rows: list[dict[str, Any]] = []
    for entry in entries:
        values: dict[str, Any] = {
            "seq": 1 if head is None else head.seq + 1,
            "at": when,
            "actor": entry.actor,
            "action": entry.action,
            "entity": entry.entity,
            "entity_id": entry.entity_id,
            "field": entry.field,
            "old_value": entry.old_value,
            "new_value": entry.new_value,
            "reason": entry.reason,
            "source": entry.source,
            "record_sha256": entry.record_sha256,
            "state": entry.state,
            "prev_hash": GENESIS_HASH if head is None else head.row_hash,
        }
        values["row_hash"] = compute_row_hash(values)
        values["key_id"], values["mac"] = (None, None) if keying is None else keying.ring.sign(values["row_hash"])
        rows.append(values)
        head = ChainAnchor(seq=values["seq"], row_hash=values["row_hash"])
    session.connection().execute(_AUDIT_INSERT, rows)
    new_head = ChainAnchor(seq=rows[-1]["seq"], row_hash=rows[-1]["row_hash"])
    session.info[_HEAD_KEY] = (transaction, new_head)
    if keying is not None and keying.anchor is not None and not session.info.get(_ANCHOR_HOOK):
        session.info[_ANCHOR_HOOK] = True
        event.listen(session, "after_commit", _anchor_after_commit)
    return new_head


_ANCHOR_HOOK = "vinspect.audit_anchor_hook"


def _anchor_after_commit(session: Session) -> None:
    """Hand the head committed by this session to the anchor writer (written outside the database)."""
    cached = session.info.get(_HEAD_KEY)
    keying = keying_for(session.get_bind())
    if cached is not None and keying is not None and keying.anchor is not None:
        keying.anchor.offer(seq=cached[1].seq, row_hash=cached[1].row_hash)


def _rows(session: Session, chunk: int) -> Generator[AuditRecord, None, None]:
    stmt = select(AuditRecord).order_by(AuditRecord.seq, AuditRecord.id).execution_options(yield_per=chunk)
    result = session.scalars(stmt)
    try:
        for row in result:
            yield row
            session.expunge(row)
    finally:
        result.close()  # a server-side cursor on PostgreSQL when the walk stops early


def _link_problem(row: AuditRecord, prev: AuditRecord | None) -> str | None:
    expected = 1 if prev is None else prev.seq + 1
    if prev is not None and row.seq == prev.seq:
        return f"duplicate seq {row.seq}: a row was inserted"
    if row.seq != expected:
        return f"seq {expected}..{row.seq - 1} missing: a row was deleted (or renumbered)"
    wanted_prev = GENESIS_HASH if prev is None else prev.row_hash
    if row.prev_hash != wanted_prev:
        return f"prev_hash does not match seq {expected - 1}: a row was inserted, moved or edited"
    if compute_row_hash(row) != row.row_hash:
        return "row content does not match its row_hash: the row was edited"
    return None


def verify_chain(
    *,
    session: Session,
    anchor: ChainAnchor | None = None,
    chunk: int = 2000,
    keyring: AuditKeyring | None = None,
) -> ChainReport:
    """Walk the whole chain in ``seq`` order and name the first broken link.

    Args:
        session: any session; only reads.
        anchor: a previously exported head; the chain must still contain it unchanged
            (catches deletion of the newest rows, which no in-database check can see).
        chunk: rows fetched per round trip.
        keyring: the audit keys; each keyed row's MAC is checked (else only counted as unchecked).
    """
    session.flush()  # links appended in this session become visible to the walk
    with closing(_rows(session, chunk)) as rows:
        return _walk(rows, anchor, keyring)


def _mac_problem(row: AuditRecord, *, keyed_before: bool, keyring: AuditKeyring | None) -> str | None:
    if row.key_id is None:
        if keyed_before:
            return "row has no HMAC after keyed rows: appended without the audit key (forged)"
        return None
    if keyring is None:
        return None
    ok = keyring.check(row.key_id, row.row_hash, row.mac)
    if ok is None:
        return f"row is signed with key {row.key_id!r}, which is not in the audit key file"
    if not ok:
        return "HMAC does not match the row: written or rewritten without the audit key (forged)"
    return None


def _walk(rows: Iterator[AuditRecord], anchor: ChainAnchor | None, keyring: AuditKeyring | None) -> ChainReport:
    prev: AuditRecord | None = None
    checked = unkeyed = unchecked = 0
    keyed_before = False
    for row in rows:
        problem = _link_problem(row, prev) or _mac_problem(row, keyed_before=keyed_before, keyring=keyring)
        if problem is not None:
            missing = prev.seq + 1 if prev is not None else 1
            broken = missing if row.seq > missing else row.seq  # a gap names the first missing link
            return ChainReport(
                ok=False,
                rows_checked=checked,
                head=_anchor(prev),
                broken_seq=broken,
                problem=problem,
                unkeyed=unkeyed,
                keyed_unchecked=unchecked,
            )
        if anchor is not None and row.seq == anchor.seq and row.row_hash != anchor.row_hash:
            return ChainReport(
                ok=False,
                rows_checked=checked,
                head=_anchor(prev),
                broken_seq=row.seq,
                problem="row differs from the exported anchor: the chain was rewritten",
                unkeyed=unkeyed,
                keyed_unchecked=unchecked,
            )
        if row.key_id is None:
            unkeyed += 1
        else:
            keyed_before = True
            unchecked += keyring is None
        prev = row
        checked += 1
    if anchor is not None and (prev is None or prev.seq < anchor.seq):
        last = 0 if prev is None else prev.seq
        return ChainReport(
            ok=False,
            rows_checked=checked,
            head=_anchor(prev),
            broken_seq=last + 1,
            problem=f"chain ends at seq {last} but the anchor has seq {anchor.seq}: newest rows were deleted",
            unkeyed=unkeyed,
            keyed_unchecked=unchecked,
        )
    return ChainReport(ok=True, rows_checked=checked, head=_anchor(prev), unkeyed=unkeyed, keyed_unchecked=unchecked)


def _anchor(row: AuditRecord | None) -> ChainAnchor | None:
    return None if row is None else ChainAnchor(seq=row.seq, row_hash=row.row_hash)
