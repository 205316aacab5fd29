"""Station configuration versions: each approved station file kept as a signed controlled document.

A station file (``station.yaml``) decides what passes: threshold overrides, the deadline, the
``on_error`` policy, the signal and the sinks. Its effective configuration (the parsed file with
every default filled in, as canonical JSON: :meth:`vinspect.station_file.StationConfig.config_text`)
is hashed, and a store-backed station starts only with a configuration whose hash was approved
here (``vinspect config approve``).

An approval is one row of ``station_configs`` (append-only: canonical text, hash, the version it
replaces, who approved it, when, why) and one e-signature (meaning ``CONFIG_APPROVAL``, password
re-entry) by an active quality engineer or admin, its signed content kept in the
``station_config.approve`` audit row of the same keyed hash chain as NCRs and model promotions
(:func:`vinspect.store.signed_records.sign_record`). ``audit verify`` re-checks each row's text
against its hash and its signature against the signed content (:func:`config_problems`).

One signature, not two: the two-person rule of a model promotion guards evidence (a model's
evaluation) that its trainer produced; a station file carries no evidence of its own, and its
approver sees the whole change (:func:`config_diff` against the version it replaces) and signs
for it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vinspect.errors import StateError
from vinspect.store.canonical import sha256_hex
from vinspect.store.db import lock_writers
from vinspect.store.ncr import SignatureMeaning
from vinspect.store.signed_records import sign_record, verify_record_signature
from vinspect.store.tables import SignatureRecord, StationConfigRecord, UserRecord

__all__ = [
    "APPROVE_ACTION",
    "ConfigApproval",
    "approvals_by_version",
    "approve_config",
    "approved",
    "config_diff",
    "config_problems",
    "station_history",
]

APPROVE_ACTION = "station_config.approve"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigApproval:
    """One approved configuration version of a station."""

    id: int
    station_id: str
    config_sha256: str
    config_text: str
    source_path: str
    previous_sha256: str | None
    approved_by: str
    approved_by_user_id: int
    approved_at: datetime
    reason: str
    signature_id: int

    @property
    def short(self) -> str:
        """The hash prefix people read (12 hex digits)."""
        return self.config_sha256[:12]


def _view(row: StationConfigRecord) -> ConfigApproval:
    return ConfigApproval(
        id=row.id,
        station_id=row.station_id,
        config_sha256=row.config_sha256,
        config_text=row.config_text,
        source_path=row.source_path,
        previous_sha256=row.previous_sha256,
        approved_by=row.approved_by,
        approved_by_user_id=row.approved_by_user_id,
        approved_at=row.approved_at,
        reason=row.reason,
        signature_id=row.signature_id,
    )


def approved(*, session: Session, station_id: str, config_sha256: str) -> ConfigApproval | None:
    """The approval of this configuration version of this station, or None."""
    row = session.scalar(
        select(StationConfigRecord).where(
            StationConfigRecord.station_id == station_id, StationConfigRecord.config_sha256 == config_sha256
        )
    )
    return None if row is None else _view(row)


def station_history(*, session: Session, station_id: str) -> list[ConfigApproval]:
    """Every approved version of one station, oldest first."""
    rows = session.scalars(
        select(StationConfigRecord).where(StationConfigRecord.station_id == station_id).order_by(StationConfigRecord.id)
    )
    return [_view(r) for r in rows]


def approvals_by_version(*, session: Session) -> dict[tuple[str, str], ConfigApproval]:
    """Every approval, keyed by (station id, configuration hash) (the plant overview's lookup)."""
    return {
        (row.station_id, row.config_sha256): _view(row)
        for row in session.scalars(select(StationConfigRecord).order_by(StationConfigRecord.id))
    }


def config_diff(old_text: str | None, new_text: str) -> list[str]:
    """A unified diff of two canonical configurations, one JSON field per line (empty: first version)."""
    if old_text is None:
        return []

    def lines(text: str) -> list[str]:
        return json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False).splitlines()

    return list(difflib.unified_diff(lines(old_text), lines(new_text), "approved", "this file", lineterm="", n=1))


def approve_config(
    *,
    session: Session,
    station_id: str,
    config_text: str,
    source_path: str,
    signer_user_id: int,
    reason: str,
    auth_method: str = "password",
    at: datetime | None = None,
) -> ConfigApproval:
    """Approve (sign) one configuration version of a station, inside the caller's transaction.

    Raises:
        StateError: no reason, an inactive signer or one who is not a quality engineer or admin,
            a text that does not parse as canonical JSON, or a version that is already approved.
    """
    lock_writers(session)
    if not reason.strip():
        raise StateError("approving a station configuration needs a reason")
    signer = session.get(UserRecord, signer_user_id)
    if signer is None or not signer.active:
        raise StateError("approving a station configuration needs an active signing user")
    try:
        json.loads(config_text)
    except ValueError as exc:
        raise StateError(f"station {station_id}: the configuration text is not JSON ({exc})") from exc
    digest = sha256_hex(config_text.encode("utf-8"))
    if (done := approved(session=session, station_id=station_id, config_sha256=digest)) is not None:
        raise StateError(
            f"station {station_id}: configuration {digest[:12]} is already approved "
            f"(by {done.approved_by} at {done.approved_at:%Y-%m-%d %H:%M} UTC)"
        )
    history = station_history(session=session, station_id=station_id)
    previous = history[-1].config_sha256 if history else None
    when = at or datetime.now(UTC)
    content = {
        "station_id": station_id,
        "config_sha256": digest,
        "previous_sha256": previous,
        "source_path": source_path,
        "reason": reason.strip(),
    }
    sig = sign_record(
        session=session,
        entity="station_config",
        entity_id=f"{station_id}@{digest[:16]}",
        signer=signer,
        meaning=SignatureMeaning.CONFIG_APPROVAL,
        content=content,
        action=APPROVE_ACTION,
        reason=reason.strip(),
        source="cli",
        at=when,
        auth_method=auth_method,
    )
    row = StationConfigRecord(
        station_id=station_id,
        config_sha256=digest,
        config_text=config_text,
        source_path=source_path[:1024],
        previous_sha256=previous,
        approved_by_user_id=signer.id,
        approved_by=signer.display_name,
        approved_at=when,
        reason=reason.strip(),
        signature_id=sig.id,
    )
    session.add(row)
    session.flush()
    return _view(row)


def config_problems(session: Session) -> Iterator[str]:
    """One line per approved configuration whose text, hash or signature no longer agree (``audit verify``)."""
    for row in session.scalars(select(StationConfigRecord).order_by(StationConfigRecord.id)):
        where = f"station_config {row.id} ({row.station_id} {row.config_sha256[:12]})"
        if sha256_hex(row.config_text.encode("utf-8")) != row.config_sha256:
            yield f"{where}: its text no longer hashes to its version (edited)"
        sig = session.get(SignatureRecord, row.signature_id)
        if sig is None or sig.entity != "station_config" or not verify_record_signature(sig, session=session):
            yield f"{where}: no valid approval signature covers it (inserted outside the application?)"
            continue
        same = sig.entity_id == f"{row.station_id}@{row.config_sha256[:16]}"
        if not same or sig.signer_user_id != row.approved_by_user_id:
            yield f"{where}: its signature {sig.id} approved another version or was given by another person"
