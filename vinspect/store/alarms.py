"""SPC baselines (frozen limits) and quality alarms: raised once per rule per run, acknowledged once, signed.

A baseline row is never changed: new limits are a new, approved row. An alarm row is inserted
when a run starts (``alarm.raise`` audited), its ``last_at`` follows the run while it lasts, and
its acknowledgement (who, when, why, signature with meaning ``AUTHORSHIP``) is written once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vinspect.errors import StateError, StoreError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, format_utc
from vinspect.store.db import lock_writers
from vinspect.store.ncr import Role, SignatureMeaning
from vinspect.store.signed_records import sign_record
from vinspect.store.tables import QualityAlarmRecord, SpcBaselineRecord, UserRecord

__all__ = [
    "AlarmView",
    "BaselineView",
    "acknowledge_alarm",
    "current_baseline",
    "list_alarms",
    "raise_alarm",
    "record_baseline",
]


def _json(value: object) -> str:
    return canonical_json(value).decode("utf-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class BaselineView:
    id: int
    station_id: str
    chart: str
    window_from: datetime
    window_to: datetime
    subgroup_minutes: int
    subgroup_parts: int | None
    p_bar: float
    subgroups: int
    parts: int
    defects: int
    approved_by: str
    reason: str
    created_at: datetime
    sigma_z: float | None = None  # set: a Laney p'-chart (limits widened by sigma_z)


def _baseline_view(row: SpcBaselineRecord) -> BaselineView:
    return BaselineView(
        id=row.id,
        station_id=row.station_id,
        chart=row.chart,
        window_from=row.window_from,
        window_to=row.window_to,
        subgroup_minutes=row.subgroup_minutes,
        subgroup_parts=row.subgroup_parts,
        p_bar=row.p_bar,
        subgroups=row.subgroups,
        parts=row.parts,
        defects=row.defects,
        approved_by=row.approved_by,
        reason=row.reason,
        created_at=row.created_at,
        sigma_z=row.sigma_z,
    )


def record_baseline(
    *,
    session: Session,
    station_id: str,
    chart: str,
    window_from: datetime,
    window_to: datetime,
    subgroup_minutes: int,
    p_bar: float,
    subgroups: int,
    parts: int,
    defects: int,
    actor: str,
    user_id: int | None,
    reason: str,
    source: str | None = None,
    at: datetime | None = None,
    subgroup_parts: int | None = None,
    sigma_z: float | None = None,
) -> BaselineView:
    """Freeze new p-chart limits for a station's chart (a quality engineer, or the CLI's operator login).

    Raises:
        StateError: a web user who is not a quality engineer, or no reason.
    """
    lock_writers(session)
    if user_id is not None:
        user = session.get(UserRecord, user_id)
        if user is None or not user.active or Role(user.role) is not Role.QUALITY_ENGINEER:
            raise StateError("freezing SPC limits needs a quality engineer")
    if not reason.strip():
        raise StateError("freezing SPC limits needs a reason")
    now = at or datetime.now(UTC)
    row = SpcBaselineRecord(
        station_id=station_id,
        chart=chart,
        window_from=window_from,
        window_to=window_to,
        subgroup_minutes=subgroup_minutes,
        subgroup_parts=subgroup_parts,
        p_bar=p_bar,
        subgroups=subgroups,
        parts=parts,
        sigma_z=sigma_z,
        defects=defects,
        approved_by=actor,
        reason=reason.strip(),
        created_at=now,
    )
    session.add(row)
    session.flush()
    append_audit(
        AuditEntry(
            actor=actor,
            action="spc.baseline",
            entity="spc_baseline",
            entity_id=str(row.id),
            field="p_bar",
            new_value=_json(
                {
                    "station_id": station_id,
                    "chart": chart,
                    "window_from": format_utc(window_from),
                    "window_to": format_utc(window_to),
                    "subgroup_minutes": subgroup_minutes,
                    "subgroup_parts": subgroup_parts,
                    "p_bar": p_bar,
                    "subgroups": subgroups,
                    "parts": parts,
                    "defects": defects,
                    **({"sigma_z": sigma_z} if sigma_z is not None else {}),
                }
            ),
            reason=reason.strip(),
            source=source,
        ),
        session=session,
        at=now,
    )
    return _baseline_view(row)


def current_baseline(*, session: Session, station_id: str, chart: str = "reject_rate") -> BaselineView | None:
    row = session.scalar(
        select(SpcBaselineRecord)
        .where(SpcBaselineRecord.station_id == station_id, SpcBaselineRecord.chart == chart)
        .order_by(SpcBaselineRecord.id.desc())
        .limit(1)
    )
    return None if row is None else _baseline_view(row)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmView:
    id: int
    kind: str
    station_id: str
    chart: str
    rule: int
    first_at: datetime
    last_at: datetime
    detail: dict[str, Any]
    raised_at: datetime
    acknowledged_at: datetime | None
    ack_user_id: int | None
    ack_reason: str | None
    ack_signature_id: int | None


def _alarm_view(row: QualityAlarmRecord) -> AlarmView:
    return AlarmView(
        id=row.id,
        kind=row.kind,
        station_id=row.station_id,
        chart=row.chart,
        rule=row.rule,
        first_at=row.first_at,
        last_at=row.last_at,
        detail=json.loads(row.detail),
        raised_at=row.raised_at,
        acknowledged_at=row.acknowledged_at,
        ack_user_id=row.ack_user_id,
        ack_reason=row.ack_reason,
        ack_signature_id=row.ack_signature_id,
    )


def raise_alarm(
    *,
    session: Session,
    kind: str,
    station_id: str,
    chart: str,
    rule: int,
    first_at: datetime,
    last_at: datetime,
    detail: Mapping[str, Any],
    at: datetime | None = None,
) -> tuple[AlarmView, bool]:
    """Insert the alarm of a run that started at ``first_at`` (True), or extend the existing one (False)."""
    lock_writers(session)
    now = at or datetime.now(UTC)
    row = session.scalar(
        select(QualityAlarmRecord).where(
            QualityAlarmRecord.kind == kind,
            QualityAlarmRecord.station_id == station_id,
            QualityAlarmRecord.chart == chart,
            QualityAlarmRecord.rule == rule,
            QualityAlarmRecord.first_at == first_at,
        )
    )
    if row is not None:
        if last_at > row.last_at:
            row.last_at = last_at
        return _alarm_view(row), False
    row = QualityAlarmRecord(
        kind=kind,
        station_id=station_id,
        chart=chart,
        rule=rule,
        first_at=first_at,
        last_at=last_at,
        detail=_json(dict(detail)),
        raised_at=now,
    )
    session.add(row)
    session.flush()
    append_audit(
        AuditEntry(
            actor=f"system:{station_id}"[:128],
            action="alarm.raise",
            entity="alarm",
            entity_id=str(row.id),
            field=chart[:64],
            new_value=row.detail,
        ),
        session=session,
        at=now,
    )
    return _alarm_view(row), True


def acknowledge_alarm(
    alarm_id: int,
    *,
    session: Session,
    user_id: int,
    reason: str,
    auth_method: str = "password",
    source: str | None = None,
    at: datetime | None = None,
) -> AlarmView:
    """Acknowledge an alarm once, with a signed reason (meaning AUTHORSHIP).

    Raises:
        StoreError: no such alarm. StateError: already acknowledged, no reason, or a role that may not sign.
    """
    lock_writers(session)
    now = at or datetime.now(UTC)
    row = session.get(QualityAlarmRecord, alarm_id)
    if row is None:
        raise StoreError(f"alarm {alarm_id} not found")
    if row.acknowledged_at is not None:
        raise StateError(f"alarm {alarm_id} is already acknowledged")
    if not reason.strip():
        raise StateError("acknowledging an alarm needs a reason")
    user = session.get(UserRecord, user_id)
    if user is None or not user.active:
        raise StateError(f"user {user_id} does not exist or is deactivated")
    sig = sign_record(
        session=session,
        entity="alarm",
        entity_id=str(alarm_id),
        signer=user,
        meaning=SignatureMeaning.AUTHORSHIP,
        content={
            "alarm_id": alarm_id,
            "kind": row.kind,
            "station_id": row.station_id,
            "chart": row.chart,
            "rule": row.rule,
            "first_at": format_utc(row.first_at),
            "detail": json.loads(row.detail),
            "reason": reason.strip(),
        },
        action="alarm.acknowledge",
        reason=reason.strip(),
        source=source,
        at=now,
        auth_method=auth_method,
    )
    row.acknowledged_at, row.ack_user_id, row.ack_reason, row.ack_signature_id = now, user.id, reason.strip(), sig.id
    return _alarm_view(row)


def list_alarms(*, session: Session, open_only: bool = False, limit: int = 100) -> list[AlarmView]:
    stmt = select(QualityAlarmRecord).order_by(QualityAlarmRecord.id.desc()).limit(limit)
    if open_only:
        stmt = stmt.where(QualityAlarmRecord.acknowledged_at.is_(None))
    return [_alarm_view(r) for r in session.scalars(stmt)]
