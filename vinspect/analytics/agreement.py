"""Attribute agreement: Cohen's kappa with an interval and the confusion table (quality-domain §13).

``p_o`` = observed agreement, ``p_e = Σ_k row_k · col_k / N²``, ``κ = (p_o - p_e) / (1 - p_e)``,
``SE ≈ sqrt(p_o (1 - p_o) / (N (1 - p_e)²))``, 95 % interval ``κ ± 1.96 SE``.
AIAG reading: κ >= 0.75 good to excellent, κ < 0.40 poor.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from vinspect.analytics.rates import Z95

__all__ = ["Kappa", "cohen_kappa", "confusion", "confusion_counts", "kappa_from_counts", "kappa_from_pairs"]


@dataclass(frozen=True, slots=True)
class Kappa:
    """κ of rater A (rows) against rater B (columns), with the table it came from."""

    categories: tuple[str, ...]
    table: tuple[tuple[int, ...], ...]
    n: int
    p_observed: float
    p_expected: float
    kappa: float | None  # None when p_e = 1 (one category only: κ is undefined)
    low: float | None
    high: float | None

    @property
    def reading(self) -> str:
        if self.kappa is None:
            return "undefined (both raters used one category only)"
        if self.kappa >= 0.75:
            return "good to excellent"
        return "poor" if self.kappa < 0.40 else "fair to good"


def confusion(
    pairs: Iterable[tuple[str, str]], categories: Sequence[str] | None = None
) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """Rows: first rater's category; columns: second rater's."""
    return confusion_counts(Counter(pairs), categories)


def confusion_counts(
    counts: Mapping[tuple[str, str], int], categories: Sequence[str] | None = None
) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """:func:`confusion` of pairs already counted (pair -> how many times it occurred)."""
    cats = tuple(categories) if categories is not None else tuple(sorted({c for p in counts for c in p}))
    index = {c: i for i, c in enumerate(cats)}
    table = [[0] * len(cats) for _ in cats]
    for (a, b), n in counts.items():
        if a not in index or b not in index:
            raise ValueError(f"kappa: category {a if a not in index else b!r} is not among {list(cats)}")
        table[index[a]][index[b]] += n
    return cats, tuple(tuple(r) for r in table)


def cohen_kappa(categories: Sequence[str], table: Sequence[Sequence[int]]) -> Kappa:
    """κ from a square confusion table.

    Raises:
        ValueError: a non-square table, negative cells, or an empty table.
    """
    k = len(categories)
    if len(table) != k or any(len(row) != k for row in table):
        raise ValueError(f"kappa: the table must be {k}x{k} for categories {list(categories)}")
    if any(c < 0 for row in table for c in row):
        raise ValueError("kappa: negative cell")
    n = sum(sum(row) for row in table)
    if n == 0:
        raise ValueError("kappa: no rated items")
    p_o = sum(table[i][i] for i in range(k)) / n
    rows = [sum(table[i]) for i in range(k)]
    cols = [sum(table[i][j] for i in range(k)) for j in range(k)]
    p_e = sum(r * c for r, c in zip(rows, cols, strict=True)) / (n * n)
    frozen = tuple(tuple(int(c) for c in row) for row in table)
    if p_e >= 1.0:
        return Kappa(tuple(categories), frozen, n, p_o, p_e, None, None, None)
    kappa = (p_o - p_e) / (1 - p_e)
    se = math.sqrt(p_o * (1 - p_o) / (n * (1 - p_e) ** 2))
    return Kappa(tuple(categories), frozen, n, p_o, p_e, kappa, max(-1.0, kappa - Z95 * se), min(1.0, kappa + Z95 * se))


def kappa_from_pairs(pairs: Iterable[tuple[str, str]], categories: Sequence[str] | None = None) -> Kappa:
    cats, table = confusion(pairs, categories)
    return cohen_kappa(cats, table)


def kappa_from_counts(counts: Mapping[tuple[str, str], int], categories: Sequence[str] | None = None) -> Kappa:
    """:func:`kappa_from_pairs` of pairs already counted."""
    cats, table = confusion_counts(counts, categories)
    return cohen_kappa(cats, table)
