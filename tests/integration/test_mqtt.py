"""MQTT result messages against a real mosquitto on loopback (issue 4)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from vinspect.camera.scripted import ScriptedSource, make_frame
from vinspect.errors import PlcUnreachable
from vinspect.pipeline.judge import unavailable_judge
from vinspect.pipeline.runner import InspectionPipeline, PipelineConfig
from vinspect.pipeline.signals.mqtt import MqttSignaller
from vinspect.types import StationState

pytest.importorskip("paho.mqtt")
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto binary not installed (apt install mosquitto)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def broker(tmp_path) -> Iterator[int]:
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([str(MOSQUITTO), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(5)


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, dict, bool]] = []
        self._subscribed = threading.Event()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id="test-sub")
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload), m.retain))
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(5)

    def wait_for(self, predicate, timeout_s: float = 5.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not predicate(self.messages):
            time.sleep(0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_publishes_results_and_retained_status(broker: int) -> None:
    sub = Subscriber(broker, "vinspect/p/l/st9/#")
    try:
        with MqttSignaller("127.0.0.1", port=broker, station_id="st9", topic_prefix="vinspect/p/l") as sig:
            pipe = InspectionPipeline(
                ScriptedSource([make_frame(10, frame_id=i) for i in range(3)]),
                judge=unavailable_judge("no model"),
                signaller=sig,
                sinks=[],
                config=PipelineConfig(station_id="st9"),
            )
            with pipe:
                assert pipe.wait(5)
            sig.publish_state(StationState.ERROR)
            sig.alarm("test alarm")
        sub.wait_for(
            lambda ms: (
                sum(t.endswith("/result") for t, _, _ in ms) == 3 and any(p.get("state") == "offline" for _, p, _ in ms)
            )
        )
    finally:
        sub.close()
    results = [p for t, p, _ in sub.messages if t.endswith("/result")]
    assert [r["part_seq"] for r in results] == [0, 1, 2]
    assert all(r["verdict"] == "FAIL" and r["reasons"] == ["no model"] for r in results)
    statuses = [p["state"] for t, p, _ in sub.messages if t.endswith("/status")]
    assert statuses[-1] == "offline" and "ERROR" in statuses
    alarms = [p["message"] for t, p, _ in sub.messages if t.endswith("/alarm")]
    assert "not operational: no model" in alarms and "test alarm" in alarms


def test_mqtt_unreachable_broker_is_reported() -> None:
    with pytest.raises(PlcUnreachable, match="mqtt"):
        MqttSignaller("127.0.0.1", port=free_port(), station_id="x").connect()
