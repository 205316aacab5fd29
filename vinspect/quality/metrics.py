"""The dashboard's figures as Prometheus metrics (text exposition), for the web app's ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from vinspect.quality.dashboard import build_dashboard
from vinspect.quality.evaluator import EvaluatorState
from vinspect.store.alarms import list_alarms
from vinspect.store.analytics_queries import Window
from vinspect.store.review_queries import DbSession

__all__ = ["render_metrics"]


def _families(db: DbSession, now: datetime, evaluator: EvaluatorState | None = None) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if evaluator is not None:
        with evaluator.lock:
            passes, failures, raised = evaluator.passes, evaluator.failures, evaluator.alarms_raised
            last_pass = evaluator.last_pass_at
        yield CounterMetricFamily(
            "vinspect_alarm_evaluations", "Alarm evaluation passes of this app", value=float(passes)
        )
        yield CounterMetricFamily(
            "vinspect_alarm_evaluation_failures", "Alarm evaluation passes that failed", value=float(failures)
        )
        yield CounterMetricFamily(
            "vinspect_alarms_raised", "Quality alarms raised by this app's evaluator", value=float(raised)
        )
        if last_pass is not None:
            yield GaugeMetricFamily(
                "vinspect_alarm_evaluation_last_success_seconds",
                "Unix time of the last successful alarm evaluation",
                value=last_pass.timestamp(),
            )

    board = build_dashboard(db, Window(now - timedelta(hours=24), now))
    rates = GaugeMetricFamily(
        "vinspect_quality_rate", "Quality KPI over the last 24 h (fraction)", labels=["station", "kpi"]
    )
    counts = GaugeMetricFamily("vinspect_quality_parts", "Parts inspected over the last 24 h", labels=["station"])
    for station, k in sorted(board.by_station.items()):
        counts.add_metric([station], float(k.reject_rate.n))
        for name, rate in (
            ("first_pass_yield", k.first_pass_yield),
            ("reject_rate", k.reject_rate),
            ("review_rate", k.review_rate),
            ("defect_reject_rate", k.defect_reject_rate),
            ("escape_rate", k.escape_rate),
            ("overturn_share", k.overturn_share),
        ):
            if rate.value is not None:
                rates.add_metric([station, name], rate.value)
    yield rates
    yield counts
    last = GaugeMetricFamily(
        "vinspect_spc_last_z", "Standardised reject proportion of the newest subgroup", labels=["station"]
    )
    for pc in board.charts:
        if pc.points:
            last.add_metric([pc.station_id], pc.points[-1].z)
    yield last
    alarms = list_alarms(session=db, open_only=True, limit=10_000)
    open_alarms = GaugeMetricFamily(
        "vinspect_quality_alarms_open", "Unacknowledged SPC and drift alarms", labels=["station", "kind"]
    )
    grouped: dict[tuple[str, str], int] = {}
    for a in alarms:
        grouped[(a.station_id, a.kind)] = grouped.get((a.station_id, a.kind), 0) + 1
    for (station, kind), n in sorted(grouped.items()):
        open_alarms.add_metric([station, kind], float(n))
    yield open_alarms
    pareto = GaugeMetricFamily(
        "vinspect_ncrs_by_code", "NCRs over the last 24 h by machine defect code", labels=["defect_code"]
    )
    for bar in board.pareto_codes:
        pareto.add_metric([bar.key], float(bar.count))
    yield pareto


class _Collector:
    def __init__(self, db: DbSession, now: datetime, evaluator: EvaluatorState | None) -> None:
        self._db, self._now, self._evaluator = db, now, evaluator

    def collect(self) -> Iterator[Any]:
        yield from _families(self._db, self._now, self._evaluator)


def render_metrics(db: DbSession, *, now: datetime, evaluator: EvaluatorState | None = None) -> tuple[bytes, str]:
    """(body, content type); prometheus-client (the ``[line]`` extra) is imported here only.

    ``evaluator``: the app's alarm evaluator state, when it runs one (its passes, failures, alarms).
    """
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(db, now, evaluator))
    return generate_latest(registry), CONTENT_TYPE_LATEST
