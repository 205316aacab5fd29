"""CAPA effectiveness: the rate after the action against the baseline frozen when the CAPA opened.

The measure is the NCR rate of the linked defect codes per inspected part when the CAPA names
codes, else the model-reject rate (FAIL/REVIEW for a score reason) of its station (or of every
station). "After" starts when D6 (implemented corrective actions) was signed, or at opening when
it is not signed yet. The comparison is a pooled two-proportion z test at alpha = 0.05.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from vinspect.analytics.rates import TwoProportion, two_proportion_test
from vinspect.store.analytics_queries import Window, hourly_rollup, ncr_count
from vinspect.store.canonical import format_utc, parse_utc
from vinspect.store.capa import CapaView
from vinspect.store.review_queries import DbSession

__all__ = ["Effectiveness", "effectiveness", "freeze_capa_baseline"]

BASELINE_DAYS = 14


def _measure(session: DbSession, window: Window, station_id: str | None, codes: Sequence[str]) -> tuple[int, int]:
    rows = hourly_rollup(window, session=session, station_id=station_id)
    n = sum(r.count for r in rows)
    if codes:
        return ncr_count(window, session=session, defect_codes=codes, station_id=station_id), n
    return sum(r.model_rejects for r in rows), n


def freeze_capa_baseline(
    session: DbSession,
    *,
    station_id: str | None,
    defect_codes: Sequence[str],
    until: datetime,
    days: int = BASELINE_DAYS,
) -> dict[str, Any]:
    """The baseline stored with a new CAPA: the measure over the ``days`` before it opened."""
    window = Window(until - timedelta(days=days), until)
    k, n = _measure(session, window, station_id, defect_codes)
    return {
        "measure": "ncr_rate_of_codes" if defect_codes else "model_reject_rate",
        "k": k,
        "n": n,
        "since": format_utc(window.since),
        "until": format_utc(window.until),
        "station_id": station_id,
        "defect_codes": sorted(defect_codes),
    }


@dataclass(frozen=True, slots=True)
class Effectiveness:
    measure: str
    after_since: datetime
    after_until: datetime
    test: TwoProportion | None
    note: str

    def as_record(self) -> dict[str, Any]:
        t = self.test
        return {
            "measure": self.measure,
            "after_since": format_utc(self.after_since),
            "after_until": format_utc(self.after_until),
            "note": self.note,
            "before": None if t is None else {"k": t.before.k, "n": t.before.n},
            "after": None if t is None else {"k": t.after.k, "n": t.after.n},
            "z": None if t is None else round(t.z, 4),
            "p_value": None if t is None else t.p_value,
            "significant": None if t is None else t.significant,
        }


def effectiveness(session: DbSession, capa: CapaView, *, now: datetime) -> Effectiveness:
    base = capa.baseline
    d6 = next((s for s in capa.steps if s.step == "D6"), None)
    since = d6.signed_at if d6 is not None and d6.signed_at is not None else capa.summary.opened_at
    measure = str(base.get("measure", "model_reject_rate"))
    if since >= now:
        return Effectiveness(measure, since, now, None, "no time has passed since the action")
    k, n = _measure(session, Window(since, now), base.get("station_id"), list(base.get("defect_codes") or []))
    k0, n0 = int(base.get("k", 0)), int(base.get("n", 0))
    if n0 == 0 or n == 0:
        return Effectiveness(
            measure, since, now, None, f"not testable yet: {n0} parts in the baseline, {n} parts since the action"
        )
    test = two_proportion_test(k0, n0, k, n)
    window = (
        f"{parse_utc(base['since']):%Y-%m-%d %H:%M} to {parse_utc(base['until']):%Y-%m-%d %H:%M} UTC"
        if base.get("since") and base.get("until")
        else "the frozen baseline"
    )
    return Effectiveness(measure, since, now, test, f"{test.verdict()}; baseline {window}")
