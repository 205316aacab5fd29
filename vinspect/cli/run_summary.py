"""The closing report of ``vinspect run``: readable lines for a person, one JSON line for machines."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["closing_json", "closing_text"]


def closing_json(status: dict[str, Any], *, reconciled: bool) -> str:
    """The status.json document plus ``books_reconciled``, on one line (what scripts parse)."""
    return json.dumps(status | {"books_reconciled": reconciled}) + "\n"


def _ms(value: Any) -> str:
    return f"{value:.1f} ms" if isinstance(value, int | float) else "n/a"


def closing_text(status: dict[str, Any], *, reconciled: bool) -> str:
    """A few readable lines: state, the books (cumulative over every run), this run's latency."""
    books = status.get("books") or {}
    faults = books.get("failed_fault") or {}
    fault_total = sum(int(v) for v in faults.values())
    fault_detail = ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))
    lines = [
        f"station {status.get('station_id')}: {status.get('state')}"
        + (f" ({status['reason']})" if status.get("reason") else "")
    ]
    lines.append(
        f"  parts, all runs of this station: {books.get('triggers', 0)} triggered = {books.get('passed', 0)} pass"
        f" + {books.get('review', 0)} review + {books.get('failed_defect', 0)} fail (defect)"
        f" + {fault_total} fail (fault{': ' + fault_detail if fault_detail else ''})"
    )
    lines.append(
        "  books: "
        + (
            "closed, every trigger has exactly one verdict"
            if reconciled
            else f"NOT closed, discrepancy {books.get('discrepancy')}"
        )
    )
    latency = status.get("latency_ms") or {}
    if latency.get("n"):
        lines.append(
            f"  verdict latency, this run ({int(latency['n'])} parts): p50 {_ms(latency.get('p50_ms'))}, "
            f"p99 {_ms(latency.get('p99_ms'))}, max {_ms(latency.get('max_ms'))}"
        )
    model = status.get("model")
    if model:
        lines.append(f"  model: {model.get('name')} v{model.get('version')} ({str(model.get('sha256', ''))[:12]})")
    else:
        lines.append("  model: none loaded")
    lines.append("  (--json prints this as one JSON line)")
    return "\n".join(lines) + "\n"
