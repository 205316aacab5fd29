"""UTC hour keys shared by the analytics roll-ups (``YYYY-MM-DD HH`` text, the same on both databases)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func
from sqlalchemy.orm import Session

from vinspect.store.tables import InspectionRecord

__all__ = ["hour_expr", "hour_key"]


def hour_expr(session: Session, column: Any = None) -> ColumnElement[str]:
    """``YYYY-MM-DD HH`` (UTC) of a timestamp column, the same text on both databases."""
    column = InspectionRecord.recorded_at if column is None else column
    if session.get_bind().dialect.name == "sqlite":
        return func.substr(column, 1, 13)
    return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")


def hour_key(at: datetime) -> str:
    """The roll-up's hour text of a timezone-aware time."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H")
