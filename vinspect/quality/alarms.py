"""SPC and drift alarm checks: evaluate the frozen p-charts and score drift, store each new alarm once, tell people.

Only closed subgroups are evaluated (hours before the current one; whole part subgroups). The
reviewer app runs this every minute (:mod:`vinspect.quality.evaluator`); ``vinspect spc check``
runs it once (a plant without the app, e.g. from a timer). A new violation is stored
(``quality_alarms``, audited), logged at WARNING, counted on ``/metrics`` and published as an MQTT
message when a broker is configured.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from vinspect.analytics.spc import NELSON_RULES
from vinspect.quality.dashboard import drift_figure, station_chart
from vinspect.store.alarms import AlarmView, current_baseline, list_alarms, raise_alarm
from vinspect.store.analytics_queries import Window, known_stations, score_sample
from vinspect.store.db import session_scope
from vinspect.store.review_queries import StoreHandle

__all__ = ["MqttAlarmPublisher", "check_alarms"]

logger = logging.getLogger(__name__)
Publish = Callable[[AlarmView], None]


@dataclass(frozen=True, slots=True)
class MqttAlarmPublisher:
    """Publishes each new alarm (QoS 1) on ``<prefix>/<station>/quality_alarm`` of a broker."""

    host: str
    port: int = 1883
    topic_prefix: str = "vinspect/site/line"

    def __call__(self, alarm: AlarmView) -> None:
        import paho.mqtt.publish as publish

        body = {
            "schema_version": 1,
            "alarm_id": alarm.id,
            "kind": alarm.kind,
            "station_id": alarm.station_id,
            "chart": alarm.chart,
            "rule": alarm.rule,
            "first_at": alarm.first_at.isoformat(),
            "last_at": alarm.last_at.isoformat(),
            "detail": alarm.detail,
        }
        publish.single(
            f"{self.topic_prefix}/{alarm.station_id}/quality_alarm",
            json.dumps(body),
            qos=1,
            hostname=self.host,
            port=self.port,
            client_id=f"vinspect-quality-{alarm.id}",
        )


def check_alarms(
    store: StoreHandle,
    *,
    now: datetime,
    stations: Sequence[str] | None = None,
    validation_scores: dict[str, Sequence[float]] | None = None,
    drift_days: int = 1,
    publish: Publish | None = None,
) -> list[AlarmView]:
    """Evaluate every station's frozen p-chart since its baseline and each model's drift; returns the new alarms."""
    new: list[AlarmView] = []
    with session_scope(store.engine, readonly=True) as session:
        found = {str(s) for s in (stations or [])} or set(known_stations(session))
        work = []
        for station in sorted(found):
            baseline = current_baseline(session=session, station_id=station)
            # closed subgroups only: hours up to the current one (a partial part subgroup is never formed)
            end = (
                now
                if baseline is not None and baseline.subgroup_parts
                else now.replace(minute=0, second=0, microsecond=0)
            )
            if baseline is None or baseline.window_to >= end:
                continue
            work.append(station_chart(session, Window(baseline.window_to, end), station))
        drift = []
        for model, expected in sorted((validation_scores or {}).items()):
            window = Window(now - timedelta(days=drift_days), now)
            live = score_sample(window, session=session, model_version=model)
            figure = drift_figure(model, expected, live)
            if figure.psi is not None and figure.psi.band == "alarm":
                drift.append((figure, window))
    with session_scope(store.engine) as session:
        for pc in work:
            for v in pc.violations:
                detail = {
                    "rule": v.rule,
                    "description": NELSON_RULES[v.rule],
                    "subgroups": v.last - v.first + 1,
                    "p": [round(p.p, 6) for p in pc.points[v.first : v.last + 1]],
                    "p_bar": pc.baseline.p_bar if pc.baseline else None,
                }
                alarm, created = raise_alarm(
                    session=session,
                    kind="spc",
                    station_id=pc.station_id,
                    chart="reject_rate",
                    rule=v.rule,
                    first_at=pc.hours[v.first],
                    last_at=pc.hours[v.last],
                    detail=detail,
                    at=now,
                )
                if created:
                    new.append(alarm)
        for figure, window in drift:
            assert figure.psi is not None and figure.ks is not None
            chart = f"scores:{figure.model_version}"[:64]
            # a drift that lasts is one alarm: continue the newest one while its windows overlap this one
            ongoing = [
                a
                for a in list_alarms(session=session, limit=1_000)
                if a.kind == "drift" and a.chart == chart and a.last_at >= window.since
            ]
            first_at = ongoing[0].first_at if ongoing else window.since.replace(minute=0, second=0, microsecond=0)
            alarm, created = raise_alarm(
                session=session,
                kind="drift",
                station_id="*",
                chart=chart,
                rule=0,
                first_at=first_at,
                last_at=window.until,
                detail={
                    "psi": round(figure.psi.value, 4),
                    "band": figure.psi.band,
                    "ks_d": round(figure.ks.d, 4),
                    "ks_p": figure.ks.p_value,
                    "live_n": len(figure.live),
                },
                at=now,
            )
            if created:
                new.append(alarm)
    for alarm in new:
        logger.warning(
            "quality alarm %s: %s %s rule %s on %s from %s",
            alarm.id,
            alarm.kind,
            alarm.chart,
            alarm.rule,
            alarm.station_id,
            alarm.first_at.isoformat(),
            extra={"alarm": alarm.detail},
        )
        if publish is not None:
            try:
                publish(alarm)
            except Exception as exc:  # boundary: the alarm is stored; a broker outage must not lose it
                logger.error("quality alarm %s not published: %s", alarm.id, exc)
    return new
