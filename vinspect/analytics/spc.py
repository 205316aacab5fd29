"""p-chart for attribute data with frozen baseline limits, and Nelson rules 1-4 (quality-domain §11).

``p_i = d_i / n_i``; the baseline gives ``p̄ = Σd / Σn`` once and is then frozen; each subgroup's
limits are ``p̄ ± 3 sqrt(p̄(1 - p̄) / n_i)`` (LCL clamped at 0) and ``z_i = (p_i - p̄) / σ_i``.

Nelson rules (Nelson 1984), pinned as in the domain doc:

1. one point beyond 3σ (a run of consecutive points beyond on the same side is one violation);
2. nine points in a row on the same side of the centre line (a point on the line breaks the run);
3. six points in a row steadily increasing or decreasing (five differences of one sign; equal
   neighbours break the trend);
4. fourteen points in a row alternating up and down (thirteen differences alternating in sign).

Rules 1-2 read ``z``; rules 3-4 read the plotted ``p``. One violation per rule per run: a run
that goes on extends its violation instead of raising another.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "NELSON_RULES",
    "Baseline",
    "ChartPoint",
    "NelsonMonitor",
    "Violation",
    "chart",
    "freeze_baseline",
    "laney_sigma_z",
    "nelson",
]

NELSON_RULES = {
    1: "one point beyond 3 sigma",
    2: "9 points in a row on one side of the centre line",
    3: "6 points in a row steadily increasing or decreasing",
    4: "14 points in a row alternating up and down",
}


@dataclass(frozen=True, slots=True)
class Baseline:
    """Frozen limits: the centre line ``p_bar`` from ``subgroups`` subgroups holding ``parts`` parts.

    ``sigma_z`` is 1 for the classic p-chart; a Laney p'-chart (for large subgroups whose
    proportions vary more than the binomial allows, where the p-chart's limits are too tight)
    widens every limit by the baseline's ``sigma_z = mean moving range of z / 1.128``.
    """

    p_bar: float
    subgroups: int
    parts: int
    defects: int
    sigma_z: float = 1.0


@dataclass(frozen=True, slots=True)
class ChartPoint:
    d: int
    n: int
    p: float
    ucl: float
    lcl: float
    z: float


@dataclass(frozen=True, slots=True)
class Violation:
    """Rule ``rule`` held over subgroups ``first..last`` (indices into the chart, inclusive)."""

    rule: int
    first: int
    last: int

    @property
    def description(self) -> str:
        return NELSON_RULES[self.rule]


def freeze_baseline(
    defects: Sequence[int], sizes: Sequence[int], *, min_subgroups: int = 20, laney: bool = False
) -> Baseline:
    """Centre line from a chosen in-control period (``laney``: and the Laney ``sigma_z`` of that period).

    Raises:
        ValueError: mismatched lengths, fewer than ``min_subgroups`` subgroups, an empty subgroup,
            ``d > n``, or a centre line of 0 or 1 (no limits can be drawn).
    """
    if len(defects) != len(sizes):
        raise ValueError(f"baseline: {len(defects)} defect counts for {len(sizes)} subgroup sizes")
    if len(sizes) < min_subgroups:
        raise ValueError(f"baseline: {len(sizes)} subgroups, at least {min_subgroups} needed")
    for i, (d, n) in enumerate(zip(defects, sizes, strict=True)):
        if n <= 0 or not 0 <= d <= n:
            raise ValueError(f"baseline subgroup {i}: needs 0 <= d <= n and n > 0 (got d={d}, n={n})")
    total_d, total_n = sum(defects), sum(sizes)
    p_bar = total_d / total_n
    if p_bar in (0.0, 1.0):
        raise ValueError(f"baseline: centre line p = {p_bar:g} gives no control limits")
    sigma_z = laney_sigma_z(p_bar, defects, sizes) if laney else 1.0
    return Baseline(p_bar=p_bar, subgroups=len(sizes), parts=total_n, defects=total_d, sigma_z=sigma_z)


def laney_sigma_z(p_bar: float, defects: Sequence[int], sizes: Sequence[int]) -> float:
    """Laney (2002): the spread of the subgroups' z-scores, ``mean |z_i - z_(i-1)| / 1.128``.

    Raises:
        ValueError: fewer than two subgroups, or no variation at all (``sigma_z`` would be 0).
    """
    if len(sizes) < 2:
        raise ValueError("Laney p': at least two subgroups are needed for a moving range")
    z = [(d / n - p_bar) / math.sqrt(p_bar * (1 - p_bar) / n) for d, n in zip(defects, sizes, strict=True)]
    moving = [abs(b - a) for a, b in itertools.pairwise(z)]
    sigma_z = sum(moving) / len(moving) / 1.128
    if sigma_z <= 0.0:
        raise ValueError("Laney p': the baseline subgroups do not vary (sigma_z = 0)")
    return sigma_z


def point(baseline: Baseline, d: int, n: int) -> ChartPoint:
    """One subgroup against the frozen limits."""
    if n <= 0 or not 0 <= d <= n:
        raise ValueError(f"subgroup needs 0 <= d <= n and n > 0 (got d={d}, n={n})")
    p_bar = baseline.p_bar
    sigma = math.sqrt(p_bar * (1 - p_bar) / n) * baseline.sigma_z
    p = d / n
    return ChartPoint(d=d, n=n, p=p, ucl=p_bar + 3 * sigma, lcl=max(0.0, p_bar - 3 * sigma), z=(p - p_bar) / sigma)


def chart(baseline: Baseline, defects: Sequence[int], sizes: Sequence[int]) -> list[ChartPoint]:
    """Every subgroup against the frozen limits."""
    if len(defects) != len(sizes):
        raise ValueError(f"chart: {len(defects)} defect counts for {len(sizes)} subgroup sizes")
    return [point(baseline, d, n) for d, n in zip(defects, sizes, strict=True)]


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


class _Runs:
    """Run lengths ending at the newest point, updated in O(1) per point (a year of hourly subgroups per
    station is 8,760 points; re-reading each rule's window at every point took seconds)."""

    def __init__(self) -> None:
        self.n = 0
        self.last_p = 0.0
        self.side = 0  # sign of the newest z
        self.side_run = 0  # points in a row on that side (0 when on the centre line)
        self.diff = 0  # sign of the newest p difference
        self.trend_run = 0  # differences in a row with that same non-zero sign
        self.alt_run = 0  # non-zero differences in a row, each of the other sign than the one before

    def add(self, pt: ChartPoint) -> None:
        side = _sign(pt.z)
        self.side_run = 0 if side == 0 else (self.side_run + 1 if side == self.side else 1)
        self.side = side
        if self.n:
            diff = _sign(pt.p - self.last_p)
            if diff == 0:
                self.trend_run = self.alt_run = 0
            else:
                self.trend_run = self.trend_run + 1 if diff == self.diff else 1
                self.alt_run = self.alt_run + 1 if self.diff == -diff else 1
            self.diff = diff
        self.last_p = pt.p
        self.n += 1

    def holds(self, pt: ChartPoint, rule: int) -> int:
        """The direction (+1/-1) in which ``rule`` holds for the window ending at the newest point; 0 when not."""
        if rule == 1:
            return 1 if pt.z > 3.0 else (-1 if pt.z < -3.0 else 0)
        if rule == 2:
            return self.side if self.side_run >= 9 else 0
        if rule == 3:
            return self.diff if self.trend_run >= 5 else 0
        return 1 if self.alt_run >= 13 else 0


_WINDOW = {1: 1, 2: 9, 3: 6, 4: 14}


class NelsonMonitor:
    """Evaluates the rules as each subgroup closes; :meth:`add` returns only newly started violations."""

    def __init__(self, rules: Sequence[int] = (1, 2, 3, 4)) -> None:
        unknown = [r for r in rules if r not in NELSON_RULES]
        if unknown:
            raise ValueError(f"unknown Nelson rule(s) {unknown}: rules 1-4 are supported")
        self.rules = tuple(rules)
        self.points: list[ChartPoint] = []
        self._runs = _Runs()
        self._open: dict[int, tuple[int, int]] = {}  # rule -> (direction, index of its violation so far)
        self.violations: list[Violation] = []

    def add(self, pt: ChartPoint) -> list[Violation]:
        self.points.append(pt)
        self._runs.add(pt)
        i = len(self.points) - 1
        started: list[Violation] = []
        for rule in self.rules:
            direction = self._runs.holds(pt, rule)
            current = self._open.get(rule)
            if direction == 0:
                self._open.pop(rule, None)
                continue
            if current is not None and current[0] == direction and self.violations[current[1]].last == i - 1:
                self.violations[current[1]] = Violation(rule, self.violations[current[1]].first, i)
                continue
            new = Violation(rule, i - _WINDOW[rule] + 1, i)
            self.violations.append(new)
            self._open[rule] = (direction, len(self.violations) - 1)
            started.append(new)
        return started


def nelson(points: Sequence[ChartPoint], rules: Sequence[int] = (1, 2, 3, 4)) -> list[Violation]:
    """Every violation over a finished chart (one per rule per run), in the order they started."""
    monitor = NelsonMonitor(rules)
    for pt in points:
        monitor.add(pt)
    return monitor.violations
