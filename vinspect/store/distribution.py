"""Model distribution (issue 18): one approved model version assigned to chosen stations.

Approval is not a second path: a version under promotion control (criteria fixed,
:mod:`vinspect.store.promotion`) is distributed only once it was promoted; any other version
only as a plain activation would allow it (a bundle with warnings needs the quality engineer's
signed risk acceptance, :mod:`vinspect.store.model_acceptance`, recorded in the same transaction
by the caller). :func:`distribute` then, in one transaction under the writer lock,

* stores the bundle archive once per (name, version) in ``model_bundles`` (a stored version is
  never replaced by different bytes);
* adds one ``model_assignments`` row per station (the newest row per station is current);
* appends one ``model.distribute`` audit row naming the stations, the approval, the model's and
  the archive's SHA-256.

Each station (:mod:`vinspect.store.model_pull`) reads its current assignment, pulls the archive,
verifies both hashes, gates the bundle and reports the outcome with :func:`report_outcome`:
``SWITCHED`` (the time its first part ran on the new model) or ``REFUSED`` and why. The outcome
is written on the assignment row and as a ``model.switched`` / ``model.refused`` audit row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from vinspect.errors import StateError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, content_sha256, format_utc
from vinspect.store.db import lock_writers, session_scope
from vinspect.store.promotion import candidate_state, entity_id, under_promotion_control
from vinspect.store.tables import ModelAssignmentRecord, ModelBundleRecord, StationRow

__all__ = [
    "DISTRIBUTED",
    "REFUSED",
    "SWITCHED",
    "Assignment",
    "approval_of",
    "current_assignment",
    "current_assignments",
    "distribute",
    "fetch_archive",
    "report_outcome",
    "resolve_stations",
]

DISTRIBUTED = "model.distribute"
SWITCHED = "SWITCHED"
REFUSED = "REFUSED"
_ACTIONS = {SWITCHED: "model.switched", REFUSED: "model.refused"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """One station's assignment and what the station reported about it."""

    id: int
    station_id: str
    name: str
    version: str
    sha256: str
    archive_sha256: str
    approval: str
    assigned_by: str
    assigned_at: datetime
    outcome: str | None
    outcome_reason: str | None
    outcome_at: datetime | None


def _view(row: ModelAssignmentRecord) -> Assignment:
    return Assignment(
        id=row.id,
        station_id=row.station_id,
        name=row.name,
        version=row.version,
        sha256=row.sha256,
        archive_sha256=row.archive_sha256,
        approval=row.approval,
        assigned_by=row.assigned_by,
        assigned_at=row.assigned_at,
        outcome=row.outcome,
        outcome_reason=row.outcome_reason,
        outcome_at=row.outcome_at,
    )


def approval_of(*, session: Session, name: str, version: str, sha256: str) -> str | None:
    """How a version under promotion control was approved ("promotion signed by A and B"); None when
    it is not under promotion control (the caller applies the plain-activation rule).

    Raises:
        StateError: under promotion control but not promoted, naming what still blocks it, or the
            promoted sha256 differs from the bundle's.
    """
    if not under_promotion_control(session=session, name=name, version=version):
        return None
    state = candidate_state(session=session, name=name, version=version)
    if not state.promoted:
        blockers = "; ".join(state.blockers) or "not promoted yet (vinspect models promote)"
        raise StateError(f"{name} {version} is under promotion control and was not promoted: {blockers}")
    if state.sha256 != sha256:
        raise StateError(
            f"{name} {version}: the bundle's sha256 {sha256[:12]} is not the promoted one ({(state.sha256 or '')[:12]})"
        )
    return f"promotion signed by {' and '.join(state.signers)}"


def resolve_stations(*, session: Session, station_ids: Sequence[str] = (), line_id: str | None = None) -> list[str]:
    """Registered stations by id, or every registered station of a line.

    Raises:
        StateError: unknown station ids (named), a line with no registered station, or neither given.
    """
    if not station_ids and not line_id:
        raise StateError("name the stations (--stations a,b) or a line (--line L)")
    if line_id:
        found = list(
            session.scalars(
                select(StationRow.station_id).where(StationRow.line_id == line_id).order_by(StationRow.station_id)
            )
        )
        if not found:
            raise StateError(f"line {line_id!r}: no station of that line has registered with this store")
        return sorted(set(found) | set(station_ids))
    wanted = sorted(set(station_ids))
    known = set(session.scalars(select(StationRow.station_id).where(StationRow.station_id.in_(wanted))))
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise StateError(
            f"unknown station(s) {', '.join(unknown)}: a station registers when it first runs with a "
            "store sink (see the plant page)"
        )
    return wanted


def _store_archive(
    session: Session,
    *,
    name: str,
    version: str,
    sha256: str,
    archive: bytes,
    archive_sha256: str,
    actor: str,
    at: datetime,
) -> None:
    row = session.scalars(
        select(ModelBundleRecord).where(ModelBundleRecord.name == name, ModelBundleRecord.version == version)
    ).first()
    if row is None:
        session.add(
            ModelBundleRecord(
                name=name,
                version=version,
                sha256=sha256,
                archive_sha256=archive_sha256,
                size_bytes=len(archive),
                archive=archive,
                stored_by=actor[:128],
                stored_at=at,
            )
        )
        session.flush()
        return
    if row.sha256 != sha256 or row.archive_sha256 != archive_sha256:
        raise StateError(
            f"{name} {version}: the store already holds a different bundle under this version "
            f"(model sha256 {row.sha256[:12]}, archive {row.archive_sha256[:12]}); a version is never "
            "replaced, give the new bundle a new version"
        )


def distribute(
    *,
    session: Session,
    name: str,
    version: str,
    sha256: str,
    archive: bytes,
    archive_sha256: str,
    station_ids: Sequence[str],
    approval: str,
    actor: str,
    reason: str | None = None,
    at: datetime | None = None,
) -> list[Assignment]:
    """Store the archive (once) and assign the version to each station, audited; inside the caller's
    transaction (which may also hold the signed risk acceptance).

    Raises:
        StateError: no station, or a different bundle already stored under this name and version.
    """
    lock_writers(session)
    if not station_ids:
        raise StateError("distribution needs at least one station")
    when = at or datetime.now(UTC)
    _store_archive(
        session,
        name=name,
        version=version,
        sha256=sha256,
        archive=archive,
        archive_sha256=archive_sha256,
        actor=actor,
        at=when,
    )
    rows = [
        ModelAssignmentRecord(
            station_id=s,
            name=name,
            version=version,
            sha256=sha256,
            archive_sha256=archive_sha256,
            approval=approval,
            assigned_by=actor[:128],
            assigned_at=when,
        )
        for s in station_ids
    ]
    session.add_all(rows)
    session.flush()
    content = {
        "model": name,
        "version": version,
        "sha256": sha256,
        "archive_sha256": archive_sha256,
        "size_bytes": len(archive),
        "stations": list(station_ids),
        "assignments": [r.id for r in rows],
        "approval": approval,
        "assigned_at": format_utc(when),
    }
    append_audit(
        AuditEntry(
            actor=actor[:128],
            action=DISTRIBUTED,
            entity="model",
            entity_id=entity_id(name, version),
            field="stations",
            new_value=canonical_json(content).decode("utf-8"),
            reason=reason,
            record_sha256=content_sha256(content),
            source=actor[:128],
        ),
        session=session,
        at=when,
    )
    return [_view(r) for r in rows]


def current_assignment(engine: Engine, station_id: str) -> Assignment | None:
    """The station's newest assignment (None when it never had one)."""
    with session_scope(engine, readonly=True) as session:
        row = session.scalars(
            select(ModelAssignmentRecord)
            .where(ModelAssignmentRecord.station_id == station_id)
            .order_by(ModelAssignmentRecord.id.desc())
            .limit(1)
        ).first()
        return None if row is None else _view(row)


def current_assignments(*, session: Session) -> dict[str, Assignment]:
    """Every station's newest assignment, by station id."""
    newest = (select(func.max(ModelAssignmentRecord.id)).group_by(ModelAssignmentRecord.station_id)).scalar_subquery()
    rows = session.scalars(select(ModelAssignmentRecord).where(ModelAssignmentRecord.id.in_(newest)))
    return {r.station_id: _view(r) for r in rows}


def fetch_archive(engine: Engine, *, name: str, version: str) -> bytes | None:
    """The stored archive bytes of a version (None when none is stored)."""
    with session_scope(engine, readonly=True) as session:
        data = session.scalars(
            select(ModelBundleRecord.archive).where(
                ModelBundleRecord.name == name, ModelBundleRecord.version == version
            )
        ).first()
        return None if data is None else bytes(data)


def report_outcome(
    engine: Engine,
    *,
    assignment_id: int,
    station_id: str,
    outcome: str,
    reason: str | None,
    at: datetime,
    running_sha256: str | None,
) -> None:
    """The station's outcome on its assignment row and as an audit row (``model.switched`` / ``model.refused``).

    Raises:
        StateError: an unknown outcome or assignment, or an assignment of another station.
        StoreError: the database refused the write.
    """
    if outcome not in _ACTIONS:
        raise StateError(f"unknown distribution outcome {outcome!r}")
    with session_scope(engine) as session:
        lock_writers(session)
        row = session.get(ModelAssignmentRecord, assignment_id)
        if row is None or row.station_id != station_id:
            raise StateError(f"assignment {assignment_id} is not station {station_id}'s")
        row.outcome, row.outcome_reason, row.outcome_at = outcome, reason, at
        content = {
            "station_id": station_id,
            "assignment": assignment_id,
            "model": row.name,
            "version": row.version,
            "sha256": row.sha256,
            "outcome": outcome,
            "reason": reason,
            "running_sha256": running_sha256,
            "at": format_utc(at),
        }
        actor = f"station:{station_id}"[:128]
        append_audit(
            AuditEntry(
                actor=actor,
                action=_ACTIONS[outcome],
                entity="model",
                entity_id=entity_id(row.name, row.version),
                field="outcome",
                new_value=canonical_json(content).decode("utf-8"),
                reason=reason,
                record_sha256=content_sha256(content),
                source=actor,
            ),
            session=session,
            at=at,
        )
