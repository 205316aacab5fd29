"""Agreement between labellers: Cohen's kappa for two, Fleiss' kappa for more, and the confusion.

Labels are compared as whole-image classes (``good`` or a defect code). Only images every
labeller compared has labelled count. Kappa is undefined (None) when chance agreement is
total (every label the same class): then agreement says nothing about the labellers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

__all__ = ["cohen_kappa", "confusion", "fleiss_kappa"]


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two labellers' labels of the same images, in the same order."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} labels against {len(b)}: compare the same images")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(ratings: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa: ``ratings[i]`` are the labels the same number of raters gave image ``i``."""
    if not ratings:
        return None
    raters = len(ratings[0])
    if raters < 2 or any(len(r) != raters for r in ratings):
        raise ValueError("Fleiss' kappa needs the same number (2 or more) of labels per image")
    n = len(ratings)
    totals: Counter[str] = Counter()
    agreement = 0.0
    for labels in ratings:
        counts = Counter(labels)
        totals.update(counts)
        agreement += (sum(c * c for c in counts.values()) - raters) / (raters * (raters - 1))
    observed = agreement / n
    expected = sum((c / (n * raters)) ** 2 for c in totals.values())
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def confusion(a: Sequence[str], b: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """(classes, counts) where ``counts[i][j]`` = images the first labeller called ``classes[i]``
    and the second ``classes[j]``; classes sorted, ``good`` first."""
    classes = sorted(set(a) | set(b), key=lambda c: (c != "good", c))
    at: Mapping[str, int] = {c: i for i, c in enumerate(classes)}
    counts = [[0] * len(classes) for _ in classes]
    for x, y in zip(a, b, strict=True):
        counts[at[x]][at[y]] += 1
    return classes, counts
