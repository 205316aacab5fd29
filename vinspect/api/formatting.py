"""How numbers and times read on the pages (Jinja filters): no 16-digit floats, short ages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vinspect.store.canonical import format_utc

__all__ = ["age", "install_filters", "number", "utc"]


def number(value: Any, digits: int = 4) -> Any:
    """A float with ``digits`` significant digits (``0.7134``, ``36.19``); anything else unchanged."""
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    return f"{value:.{digits}g}"


def utc(value: Any) -> Any:
    """A datetime as the store's canonical UTC text; anything else unchanged."""
    return format_utc(value) if isinstance(value, datetime) else value


def age(value: Any, *, now: datetime | None = None) -> str:
    """How long ago: ``42 s``, ``5 min``, ``3 h``, ``2 d`` (from a datetime or ISO 8601 text)."""
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return "—"
    if not isinstance(when, datetime):
        return "—"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0.0, ((now or datetime.now(UTC)) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def install_filters(filters: dict[str, Any]) -> None:
    """Register ``utc``, ``num`` and ``age`` on a Jinja environment's filter table."""
    filters["utc"] = utc
    filters["num"] = number
    filters["age"] = age
