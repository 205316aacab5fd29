"""A new SPC alarm is published on MQTT to a real mosquitto on loopback; a broker outage loses no alarm (issue 17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_mqtt import MOSQUITTO, Subscriber, broker, free_port  # noqa: F401  (the broker fixture)

from vinspect.quality.alarms import MqttAlarmPublisher, check_alarms
from vinspect.store import repository as repo
from vinspect.store.alarms import list_alarms, record_baseline
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.migrations import upgrade
from vinspect.store.review_queries import StoreHandle
from vinspect.types import Decision, Inspection, StageTimings, Verdict

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto binary not installed (apt install mosquitto)")


def _store(tmp_path: Path) -> StoreHandle:
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    upgrade(engine)
    now = datetime.now(UTC)
    seq = 0
    with session_scope(engine) as session:
        for h, d in enumerate([1] * 20 + [1, 30, 1]):  # hour 21 far beyond the limits
            rows = []
            for i in range(60):
                seq += 1
                bad = i < d
                rows.append(
                    Inspection(
                        inspection_id=f"q-{seq}",
                        station_id="st-q",
                        part_seq=seq,
                        frame=None,
                        prediction=None,
                        decision=Decision(
                            verdict=Verdict.FAIL if bad else Verdict.PASS,
                            reasons=("score",) if bad else (),
                            policy_id="p",
                            fail_at=0.7,
                            review_at=0.5,
                        ),
                        timings=StageTimings(),
                        model=None,
                    )
                )
            repo.add_inspections(rows, session=session, now=now - timedelta(hours=23 - h))
        record_baseline(
            session=session,
            station_id="st-q",
            chart="reject_rate",
            window_from=now - timedelta(hours=24),
            window_to=now - timedelta(hours=3, minutes=30),
            subgroup_minutes=60,
            p_bar=20 / 1200,
            subgroups=20,
            parts=1200,
            defects=20,
            actor="cli:test",
            user_id=None,
            reason="setup",
        )
    return StoreHandle(engine=engine, evidence=EvidenceStore(tmp_path / "ev"))


def test_new_alarm_is_published_once(tmp_path: Path, broker: int) -> None:  # noqa: F811
    store = _store(tmp_path)
    sub = Subscriber(broker, "plant/line/+/quality_alarm")
    publish = MqttAlarmPublisher("127.0.0.1", broker, "plant/line")
    new = check_alarms(store, now=datetime.now(UTC), publish=publish)
    assert [(a.kind, a.rule) for a in new] == [("spc", 1)]
    sub.wait_for(lambda m: len(m) >= 1)
    topic, body, _ = sub.messages[0]
    assert topic == "plant/line/st-q/quality_alarm" and body["rule"] == 1 and body["kind"] == "spc"
    assert check_alarms(store, now=datetime.now(UTC), publish=publish) == []


def test_a_broker_outage_keeps_the_alarm(tmp_path: Path) -> None:
    store = _store(tmp_path)
    new = check_alarms(store, now=datetime.now(UTC), publish=MqttAlarmPublisher("127.0.0.1", free_port()))
    assert len(new) == 1
    with session_scope(store.engine, readonly=True) as session:
        assert [a.id for a in list_alarms(session=session)] == [new[0].id]


def test_the_reviewer_app_publishes_its_own_alarm(tmp_path: Path, broker: int) -> None:  # noqa: F811
    """`vinspect web`'s evaluator (every 0.2 s here) raises the alarm itself and publishes it once."""
    import dataclasses
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
    from webseed import TEST_OPTIONS, TestClient, build_app

    store = _store(tmp_path)
    sub = Subscriber(broker, "plant/line/+/quality_alarm")
    app = build_app(
        tmp_path / "data",
        store,
        options=dataclasses.replace(
            TEST_OPTIONS, alarm_interval_s=0.2, alarm_mqtt=f"127.0.0.1:{broker}", alarm_topic_prefix="plant/line"
        ),
    )
    with TestClient(app, base_url="http://127.0.0.1:8600"):
        sub.wait_for(lambda m: len(m) >= 1)
        passes = app.state.services.evaluator.state.passes
        deadline = time.monotonic() + 20
        while app.state.services.evaluator.state.passes < passes + 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    topic, body, _ = sub.messages[0]
    assert topic == "plant/line/st-q/quality_alarm" and body["rule"] == 1
    assert len(sub.messages) == 1  # later passes found it stored: not published again
