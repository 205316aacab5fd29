"""How numbers and times read on the pages (Jinja filters): no 16-digit floats, short ages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vinspect.store.canonical import format_utc

__all__ = ["age", "install_filters", "number", "utc", "when"]


def number(value: Any, digits: int = 4) -> Any:
    """A float with ``digits`` significant digits (``0.7134``, ``36.19``); anything else unchanged."""
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    return f"{value:.{digits}g}"


def utc(value: Any) -> Any:
    """A datetime as the store's canonical UTC text; anything else unchanged."""
    return format_utc(value) if isinstance(value, datetime) else value


def when(value: Any, seconds: bool = False) -> Any:
    """A datetime as a person reads it: ``2026-03-14 09:26 UTC`` (``seconds``: ``09:26:53``); anything else unchanged.

    The canonical text of :func:`utc` (microseconds, ``T``, ``Z``) is for records and exports; that
    text is read back and shown the same way.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


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
    """Register ``utc``, ``when``, ``num`` and ``age`` on a Jinja environment's filter table."""
    filters["utc"] = utc
    filters["when"] = when
    filters["num"] = number
    filters["age"] = age
