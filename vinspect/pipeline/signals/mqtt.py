"""MqttSignaller: result messages for the plant (``line-integration.md`` §8); never the reject path.

Topics under ``<prefix>/<station_id>/``: ``result`` (QoS 0, one per part), ``status`` (QoS 1,
retained; a Last Will sets it to ``offline``) and ``alarm`` (QoS 1). Payloads are JSON with
``schema_version``, ``station_id``, ``inspection_id``, ``part_id``, ``part_seq``, ``verdict``,
``reasons``, ``disposition`` (:class:`vinspect.types.Disposition`), ``score``, ``model_sha256``
and the latency. ``heartbeat`` publishes nothing: the broker's keepalive and the Last Will carry
liveness, the PLC watches the Modbus heartbeat.

paho-mqtt 2.x is imported lazily and built with ``CallbackAPIVersion.VERSION2``.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Self

from vinspect.errors import PlcUnreachable, SignalError
from vinspect.pipeline.record import model_sha256_of
from vinspect.types import Inspection, StationState

__all__ = ["MqttSignaller", "result_payload"]

SCHEMA_VERSION = 1


def result_payload(inspection: Inspection) -> dict[str, Any]:
    """The ``result`` message body for one inspection."""
    t, pred, frame = inspection.timings, inspection.prediction, inspection.frame
    latency = (t.decided_ns - t.acquired_ns) / 1e6 if t.decided_ns and t.acquired_ns else None
    return {
        "schema_version": SCHEMA_VERSION,
        "station_id": inspection.station_id,
        "inspection_id": inspection.inspection_id,
        "part_id": None if frame is None else frame.part_id,
        "part_seq": inspection.part_seq,
        "verdict": str(inspection.decision.verdict),
        "reasons": list(inspection.decision.reasons),
        "disposition": inspection.decision.disposition.value,
        "score": None if pred is None else pred.score,
        "model_sha256": model_sha256_of(inspection),
        "latency_ms": latency,
    }


class MqttSignaller:
    """Publishes results, state and alarms to an MQTT broker.

    Args:
        host: broker address.
        port: broker port.
        station_id: used in the topics and the client id.
        topic_prefix: ``vinspect/{site}/{line}``.
        keepalive_s: MQTT keepalive.
    """

    def __init__(
        self,
        host: str,
        *,
        port: int = 1883,
        station_id: str,
        topic_prefix: str = "vinspect/site/line",
        keepalive_s: int = 30,
    ) -> None:
        self._host, self._port, self._keepalive_s = host, port, keepalive_s
        self._station_id = station_id
        self.topic = f"{topic_prefix}/{station_id}"
        self._client: Any = None

    def connect(self) -> None:
        """Connect (with the Last Will set) and start paho's network thread.

        Raises:
            PlcUnreachable: the broker refuses or nobody listens.
        """
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        client = Client(
            CallbackAPIVersion.VERSION2, client_id=f"vinspect-{self._station_id}", protocol=MQTTProtocolVersion.MQTTv311
        )
        client.will_set(f"{self.topic}/status", self._status_body("offline"), qos=1, retain=True)
        try:
            client.connect(self._host, self._port, keepalive=self._keepalive_s)
        except OSError as exc:
            raise PlcUnreachable(f"mqtt {self._host}:{self._port}: {exc}") from exc
        client.loop_start()
        self._client = client

    def close(self) -> None:
        """Publish ``offline``, disconnect and stop the network thread."""
        if self._client is None:
            return
        client, self._client = self._client, None
        info = client.publish(f"{self.topic}/status", self._status_body("offline"), qos=1, retain=True)
        info.wait_for_publish(timeout=2.0)
        client.disconnect()
        client.loop_stop()

    def _status_body(self, state: str) -> str:
        return json.dumps({"schema_version": SCHEMA_VERSION, "station_id": self._station_id, "state": state})

    def _publish(self, leaf: str, body: str, *, qos: int, retain: bool = False) -> None:
        if self._client is None:
            raise PlcUnreachable(f"mqtt {self._host}:{self._port}: not connected")
        info = self._client.publish(f"{self.topic}/{leaf}", body, qos=qos, retain=retain)
        if info.rc != 0:
            raise SignalError(f"mqtt {self._host}:{self._port}: publish to {leaf} failed (rc={info.rc})")

    def signal(self, inspection: Inspection) -> None:
        self._publish("result", json.dumps(result_payload(inspection), allow_nan=False), qos=0)

    def heartbeat(self) -> None:
        return None

    def publish_state(self, state: StationState) -> None:
        self._publish("status", self._status_body(str(state)), qos=1, retain=True)

    def alarm(self, message: str) -> None:
        """Publish an alarm (QoS 1)."""
        self._publish("alarm", json.dumps({"station_id": self._station_id, "message": message}), qos=1)

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
