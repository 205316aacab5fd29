"""UTC hour keys shared by the analytics roll-ups (``YYYY-MM-DD HH`` text, the same on both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func
from sqlalchemy.orm import Session

from vinspect.store.tables import InspectionRecord

__all__ = ["hour_expr", "hour_key", "level_spans", "month_slot", "months_between"]


def hour_expr(session: Session, column: Any = None) -> ColumnElement[str]:
    """``YYYY-MM-DD HH`` (UTC) of a timestamp column, the same text on both databases."""
    column = InspectionRecord.recorded_at if column is None else column
    if session.get_bind().dialect.name == "sqlite":
        return func.substr(column, 1, 13)
    return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")


def hour_key(at: datetime) -> str:
    """The roll-up's hour text of a timezone-aware time."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H")


def month_slot(hour: str) -> str:
    """The month-level key of an hour key: ``YYYY-MM-01 HH`` (the month and the hour of the day).

    The month-level roll-ups (``inspection_monthly``, ``judgement_monthly``) keep the hourly counts
    summed per month and hour of the day under this key, the same text shape as an hour key, so a
    reader takes whole months from them and reads the hour of the day the same way."""
    return f"{hour[:8]}01{hour[10:13]}"


def months_between(low: datetime, high: datetime) -> tuple[datetime, datetime] | None:
    """The whole UTC months inside ``[low, high)`` (two whole-hour times): (first month's start, end of the
    last), or None where no whole month fits."""
    start = low.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start != low:
        start = (start + timedelta(days=32)).replace(day=1)
    end = high.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (start, end) if start < end else None


def level_spans(low: datetime, high: datetime, *, monthly: bool) -> list[tuple[bool, datetime, datetime]]:
    """Where a reader of the whole hours ``[low, high)`` takes each part: (from the month level?, start, end).

    Without ``monthly`` (or with no whole month inside), all from the hour level."""
    months = months_between(low, high) if monthly else None
    if months is None:
        return [(False, low, high)] if low < high else []
    spans = [(False, low, months[0]), (True, months[0], months[1]), (False, months[1], high)]
    return [s for s in spans if s[1] < s[2]]
