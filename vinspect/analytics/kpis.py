"""Production KPIs from counts (quality-domain §10); each rate with its count and a 95 % interval.

The counts come from :func:`vinspect.store.analytics_queries.kpi_counts` for one group (station,
shift, model version) over a window; this module only does the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vinspect.analytics.rates import Rate, exact_rate, wilson

__all__ = ["KPI_LINES", "KpiCounts", "Kpis", "compute_kpis", "percentile"]

# One line per KPI, shown on the dashboard and in the report (the README repeats them).
KPI_LINES: dict[str, str] = {
    "first_pass_yield": "parts PASS at their first inspection / parts inspected for the first time",
    "reject_rate": "(FAIL + REVIEW) / parts inspected",
    "defect_reject_rate": "rejects with a score reason (model rejects, fault reason or not) / parts inspected",
    "review_rate": "REVIEW verdicts / parts inspected",
    "fault_rate": "fail-safe rejects with that reason (late, error, missing frame, ...) / parts inspected",
    "overturn_share": "FALSE_REJECT / adjudicated rejects",
    "false_reject_rate": "estimated good parts rejected / good parts: FR / (FR + PASS), FR = rejects x overturn share",
    "escape_rate": "defects found in the blind PASS audit / audited PASS parts (exact interval; it is a sample)",
    "throughput": "parts inspected per hour of the window",
    "latency": "capture to stored record, p50 / p95 / p99 (ms)",
}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiCounts:
    """What the store counted for one group over one window."""

    inspected: int
    passed: int
    review: int
    failed: int
    defect_rejects: int  # FAIL/REVIEW with a score reason (a fault reason may come with it)
    faults: Mapping[str, int] = field(default_factory=dict)  # fail-safe rejects by reason
    first_inspected: int = 0
    first_passed: int = 0
    adjudicated: int = 0  # rejects with a review decision
    false_rejects: int = 0  # of which FALSE_REJECT
    audited_passes: int = 0  # sampled PASS parts with a blind audit answer
    escapes: int = 0  # of which ESCAPE
    hours: float = 0.0  # length of the window
    latencies_ms: Sequence[float] = ()

    def __post_init__(self) -> None:
        if self.passed + self.review + self.failed != self.inspected:
            raise ValueError(
                f"KPI counts: PASS {self.passed} + REVIEW {self.review} + FAIL {self.failed} "
                f"!= inspected {self.inspected}"
            )
        if self.false_rejects > self.adjudicated or self.escapes > self.audited_passes:
            raise ValueError("KPI counts: more overturns/escapes than reviews/audits")


@dataclass(frozen=True, slots=True, kw_only=True)
class Kpis:
    first_pass_yield: Rate
    reject_rate: Rate
    defect_reject_rate: Rate
    review_rate: Rate
    fault_rates: dict[str, Rate]
    overturn_share: Rate
    false_reject_rate: float | None
    escape_rate: Rate
    escape_ppm_upper: float | None
    throughput_per_hour: float | None
    latency_ms: dict[str, float | None]


def compute_kpis(c: KpiCounts) -> Kpis:
    rejects = c.failed + c.review
    overturn = wilson(c.false_rejects, c.adjudicated)
    frr: float | None = None
    if overturn.value is not None:
        fr = rejects * overturn.value
        frr = fr / (fr + c.passed) if fr + c.passed > 0 else None
    escape = exact_rate(c.escapes, c.audited_passes)
    return Kpis(
        first_pass_yield=wilson(c.first_passed, c.first_inspected),
        reject_rate=wilson(rejects, c.inspected),
        defect_reject_rate=wilson(c.defect_rejects, c.inspected),
        review_rate=wilson(c.review, c.inspected),
        fault_rates={r: wilson(k, c.inspected) for r, k in sorted(c.faults.items())},
        overturn_share=overturn,
        false_reject_rate=frr,
        escape_rate=escape,
        escape_ppm_upper=None if escape.high is None else escape.high * 1e6,
        throughput_per_hour=c.inspected / c.hours if c.hours > 0 else None,
        latency_ms={f"p{q}": percentile(c.latencies_ms, q) for q in (50, 95, 99)},
    )
