"""Rates with intervals (Wilson, exact Clopper-Pearson) and the two-proportion z test."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vinspect.models.intervals import clopper_pearson

__all__ = ["Rate", "TwoProportion", "exact_rate", "two_proportion_test", "wilson"]

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Rate:
    """``k`` events in ``n`` trials with a 95 % interval (``value`` is None when ``n`` is 0)."""

    k: int
    n: int
    value: float | None
    low: float | None
    high: float | None
    method: str

    def percent(self) -> str:
        if self.value is None or self.low is None or self.high is None:
            return f"— (0 of {self.n})"
        return f"{100 * self.value:.2f} % [{100 * self.low:.2f}, {100 * self.high:.2f}] ({self.k} of {self.n})"


def _check(k: int, n: int) -> None:
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"a rate needs 0 <= k <= n (got k={k}, n={n})")


def wilson(k: int, n: int, *, z: float = Z95) -> Rate:
    """The Wilson score interval (quality-domain §10: every rate with its count and a 95 % interval)."""
    _check(k, n)
    if n == 0:
        return Rate(k, n, None, None, None, "wilson")
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Rate(k, n, p, max(0.0, centre - half), min(1.0, centre + half), "wilson")


def exact_rate(k: int, n: int) -> Rate:
    """The exact Clopper-Pearson 95 % interval (for audited samples such as the escape rate)."""
    _check(k, n)
    if n == 0:
        return Rate(k, n, None, None, None, "clopper-pearson")
    low, high = clopper_pearson(k, n)
    return Rate(k, n, k / n, low, high, "clopper-pearson")


@dataclass(frozen=True, slots=True)
class TwoProportion:
    """Before vs after: ``z`` (after minus before, pooled standard error) and two-sided ``p_value``."""

    before: Rate
    after: Rate
    difference: float
    z: float
    p_value: float
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    def verdict(self) -> str:
        """One sentence a quality engineer can sign under."""
        if not self.significant:
            return (
                f"no significant change (p = {self.p_value:.3g} >= {self.alpha:g}, "
                f"two-proportion z test, z = {self.z:.2f})"
            )
        direction = "lower" if self.difference < 0 else "higher"
        return (
            f"significantly {direction} after the action (p = {self.p_value:.3g} < {self.alpha:g}, "
            f"two-proportion z test, z = {self.z:.2f})"
        )


def two_proportion_test(
    k_before: int, n_before: int, k_after: int, n_after: int, *, alpha: float = 0.05
) -> TwoProportion:
    """Pooled two-proportion z test of ``k_after/n_after`` against ``k_before/n_before``.

    Raises:
        ValueError: an empty side, or counts outside ``0..n``.
    """
    _check(k_before, n_before)
    _check(k_after, n_after)
    if n_before == 0 or n_after == 0:
        raise ValueError(f"the effectiveness test needs parts on both sides (before {n_before}, after {n_after})")
    p1, p2 = k_before / n_before, k_after / n_after
    pooled = (k_before + k_after) / (n_before + n_after)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_before + 1 / n_after))
    if se == 0.0:
        z, p = 0.0, 1.0
    else:
        z = (p2 - p1) / se
        p = math.erfc(abs(z) / math.sqrt(2.0))
    return TwoProportion(wilson(k_before, n_before), wilson(k_after, n_after), p2 - p1, z, p, alpha)
