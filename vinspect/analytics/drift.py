"""Score drift against the model's validation distribution: PSI and the two-sample KS test (§14).

PSI ``= Σ (a_i - e_i) ln(a_i / e_i)`` over fixed bins (edges from the validation scores'
deciles unless given; empty bins take a floor share of 1e-4 so the log stays finite):
below 0.1 stable, 0.1-0.25 watch, above 0.25 alarm. KS: ``D = sup |F_a - F_e|`` with the
asymptotic Kolmogorov p-value (Stephens' small-sample correction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["KsResult", "PsiResult", "ks_two_sample", "psi", "psi_band", "quantile_edges"]

FLOOR = 1e-4


@dataclass(frozen=True, slots=True)
class PsiResult:
    value: float
    edges: tuple[float, ...]
    expected: tuple[float, ...]
    actual: tuple[float, ...]

    @property
    def band(self) -> str:
        return psi_band(self.value)


def psi_band(value: float) -> str:
    return "stable" if value < 0.1 else ("watch" if value <= 0.25 else "alarm")


def quantile_edges(values: Sequence[float], bins: int = 10) -> tuple[float, ...]:
    """Inner bin edges at the quantiles of ``values`` (duplicates dropped)."""
    if not values:
        raise ValueError("drift: no validation scores to take bin edges from")
    ordered = sorted(values)
    edges = []
    for k in range(1, bins):
        edges.append(ordered[min(len(ordered) - 1, (k * len(ordered)) // bins)])
    return tuple(sorted(set(edges)))


def _shares(values: Sequence[float], edges: Sequence[float]) -> list[float]:
    # bin of v: bisect_right(edges, v), for every value at once
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1).tolist()
    return [max(c / len(values), FLOOR) for c in counts]


def psi(
    expected: Sequence[float], actual: Sequence[float], *, edges: Sequence[float] | None = None, bins: int = 10
) -> PsiResult:
    """Population stability index of ``actual`` scores against ``expected`` (validation) scores.

    A value ``v`` falls in bin ``bisect_right(edges, v)``: bin ``i`` holds ``edges[i-1] <= v < edges[i]``.

    Raises:
        ValueError: either side empty.
    """
    if not expected or not actual:
        raise ValueError(f"drift: PSI needs scores on both sides (expected {len(expected)}, actual {len(actual)})")
    cut = tuple(sorted(edges)) if edges is not None else quantile_edges(expected, bins)
    e, a = _shares(expected, cut), _shares(actual, cut)
    value = math.fsum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True))
    return PsiResult(value, cut, tuple(e), tuple(a))


@dataclass(frozen=True, slots=True)
class KsResult:
    d: float
    p_value: float
    n_expected: int
    n_actual: int


def _kolmogorov_q(lam: float) -> float:
    """``Q_KS(λ) = 2 Σ (-1)^{j-1} exp(-2 j² λ²)``."""
    if lam < 1e-3:
        return 1.0
    total = 0.0
    for j in range(1, 101):
        term = 2.0 * (-1) ** (j - 1) * math.exp(-2.0 * j * j * lam * lam)
        total += term
        if abs(term) < 1e-12:
            break
    return min(1.0, max(0.0, total))


def ks_two_sample(expected: Sequence[float], actual: Sequence[float]) -> KsResult:
    """Two-sample Kolmogorov-Smirnov statistic and asymptotic p-value.

    Raises:
        ValueError: either side empty.
    """
    if not expected or not actual:
        raise ValueError(f"drift: KS needs scores on both sides (expected {len(expected)}, actual {len(actual)})")
    e, a = np.sort(np.asarray(expected, dtype=np.float64)), np.sort(np.asarray(actual, dtype=np.float64))
    n, m = len(e), len(a)
    xs = np.unique(np.concatenate([e, a]))  # every step of either empirical CDF
    gaps = np.abs(np.searchsorted(e, xs, side="right") / n - np.searchsorted(a, xs, side="right") / m)
    d = float(gaps.max())
    en = math.sqrt(n * m / (n + m))
    return KsResult(d, _kolmogorov_q((en + 0.12 + 0.11 / en) * d), n, m)
