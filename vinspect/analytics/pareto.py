"""Pareto of counts (defect codes, stations), sorted descending with cumulative share (quality-domain §12)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Bar", "pareto"]


@dataclass(frozen=True, slots=True)
class Bar:
    key: str
    count: int
    share: float
    cumulative: float
    vital: bool  # among the "vital few": the bars needed to reach the cut-off (80 %)


def pareto(counts: Mapping[str, int], *, cutoff: float = 0.8) -> list[Bar]:
    """Bars sorted by count (ties by key); unknown codes stay their own bar, never folded into "other".

    Raises:
        ValueError: a negative count.
    """
    bad = {k: v for k, v in counts.items() if v < 0}
    if bad:
        raise ValueError(f"pareto: negative counts {bad}")
    items = sorted(((k, v) for k, v in counts.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    total = sum(v for _, v in items)
    bars: list[Bar] = []
    running = 0
    for key, count in items:
        before = running / total
        running += count
        bars.append(Bar(key, count, count / total, running / total, before < cutoff))
    return bars
