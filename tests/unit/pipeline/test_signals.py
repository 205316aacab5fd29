"""Signallers behind one protocol: verdict codes, camera outputs, payloads, metrics (issue 4)."""

from __future__ import annotations

import json

import pytest

from vinspect.camera.scripted import make_frame
from vinspect.errors import FeatureMissing, PlcUnreachable
from vinspect.pipeline.books import BookKeeper
from vinspect.pipeline.metrics import make_registry
from vinspect.pipeline.signals import LockedSignaller, NullSignaller, RecordingSignaller, verdict_code
from vinspect.pipeline.signals.camera_output import CameraOutputSignaller, FakeLineOutputs, NodeMapOutputs
from vinspect.pipeline.signals.modbus import ModbusSignaller
from vinspect.pipeline.signals.mqtt import result_payload
from vinspect.pipeline.status import PipelineStatus, StatusReader, StatusWriter
from vinspect.types import Decision, Inspection, ModelRef, Prediction, StageTimings, StationState, Verdict

SHA = "b" * 64


def insp(verdict: Verdict, reasons: tuple[str, ...] = (), *, seq: int = 1, defect: str | None = None) -> Inspection:
    pred = Prediction(score=0.3, defect_code=defect)
    return Inspection(
        inspection_id=f"i{seq}",
        station_id="s",
        part_seq=seq,
        frame=make_frame(1, frame_id=seq),
        prediction=pred,
        timings=StageTimings(acquired_ns=1_000_000, decided_ns=3_000_000),
        decision=Decision(verdict=verdict, reasons=reasons, policy_id="p", fail_at=0.6, review_at=0.5),
        model=ModelRef(name="m", version="1", sha256=SHA),
    )


@pytest.mark.parametrize(
    ("verdict", "reasons", "code"),
    [
        (Verdict.PASS, (), 1),
        (Verdict.FAIL, ("score",), 2),
        (Verdict.FAIL, ("score", "late"), 3),
        (Verdict.FAIL, ("error:ModelError",), 3),
        (Verdict.REVIEW, ("review_band",), 4),
        (Verdict.REVIEW, ("error:ModelError",), 3),
    ],
)  # on_error: review books a fault: the line says fault too
def test_verdict_code_only_pass_accepts(verdict, reasons, code) -> None:
    assert verdict_code(insp(verdict, reasons)) == code


def test_modbus_result_registers_one_write_toggle_last() -> None:
    sig = ModbusSignaller("127.0.0.1", defect_codes=("spot", "scratch"), seq_offset=65535)
    assert sig.result_registers(insp(Verdict.FAIL, ("score",), seq=2, defect="scratch")) == [1, 2, 2, 1]
    with pytest.raises(PlcUnreachable):
        sig.signal(insp(Verdict.PASS))  # never connected: the PLC's default reject stands


def test_camera_output_pulses_accept_for_pass_only() -> None:
    now = [0.0]
    lines = FakeLineOutputs()
    sig = CameraOutputSignaller(lines, heartbeat_output="UserOutput2", pulse_ms=50, clock=lambda: now[0])
    sig.signal(insp(Verdict.PASS))
    assert lines.levels["UserOutput1"] is True
    now[0] = 0.06
    sig.heartbeat()
    assert lines.levels == {"UserOutput1": False, "UserOutput2": True}
    sig.signal(insp(Verdict.REVIEW, ("review_band",)))
    assert lines.levels["UserOutput1"] is False
    sig.signal(insp(Verdict.PASS))
    sig.publish_state(StationState.ERROR)
    assert lines.levels["UserOutput1"] is False


def test_camera_output_refuses_device_without_user_output() -> None:
    class NoOutputs:
        pass

    with pytest.raises(FeatureMissing, match="no UserOutput"):
        CameraOutputSignaller(NodeMapOutputs(NoOutputs()))


def test_mqtt_result_payload_is_json_with_model_sha() -> None:
    body = result_payload(insp(Verdict.FAIL, ("score",), defect="spot"))
    assert json.loads(json.dumps(body))["model_sha256"] == SHA
    assert body["verdict"] == "FAIL"
    assert body["latency_ms"] == pytest.approx(2.0)
    assert body["part_id"] == "p1"


def test_locked_and_null_signallers_delegate() -> None:
    rec = RecordingSignaller()
    locked = LockedSignaller(rec)
    locked.signal(insp(Verdict.PASS))
    locked.heartbeat()
    locked.publish_state(StationState.OPERATIONAL)
    assert (len(rec.accepts), rec.heartbeats, rec.states) == (1, 1, [StationState.OPERATIONAL])
    NullSignaller().signal(insp(Verdict.PASS))


def _status(keeper: BookKeeper) -> PipelineStatus:
    from datetime import UTC, datetime

    books = keeper.books()
    return PipelineStatus(
        station_id="s",
        state=StationState.OPERATIONAL,
        reason="ok",
        state_since=datetime.now(UTC),
        books=books,
        in_flight=books.discrepancy,
        model=None,
        latency_ms=keeper.e2e.summary(),
        stages_ms={},
        extras=keeper.extras_dict(),
        queue_depth=0,
        record_queue_depth=0,
        line_stopped=False,
    )


def test_metrics_registry_exposes_books_per_pipeline() -> None:
    from prometheus_client import generate_latest

    keeper = BookKeeper()
    keeper.trigger()
    keeper.settle(verdict=Verdict.FAIL, reasons=("overflow",))
    keeper.count("sink_errors", key="jsonl")
    text = generate_latest(make_registry(lambda: _status(keeper))).decode()
    assert 'vinspect_parts_total{disposition="overflow",station="s"} 1.0' in text
    assert 'vinspect_station_state{state="OPERATIONAL",station="s"} 1.0' in text
    assert 'vinspect_sink_errors_total{sink="jsonl",station="s"} 1.0' in text


def test_status_file_rewrites_atomically(tmp_path) -> None:
    keeper = BookKeeper()
    path = tmp_path / "status.json"
    with StatusWriter(path, snapshot=lambda: _status(keeper), period_s=0.01):
        keeper.trigger()
        assert StatusReader(path).read().running
    snapshot = StatusReader(path).read()
    assert snapshot.running
    assert snapshot.state == "OPERATIONAL"
    assert snapshot.data["books"]["triggers"] == 1
    assert not list(tmp_path.glob(".*tmp"))
    assert StatusReader(tmp_path / "missing.json").read().running is False


def test_metrics_http_exporter_on_loopback() -> None:
    import urllib.request

    from vinspect.pipeline.metrics import serve_metrics

    server = serve_metrics(make_registry(lambda: _status(BookKeeper())), port=0)
    try:
        port = server.server_port
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "vinspect_triggers_total 0.0" in body


def test_node_map_outputs_drive_sfnc_user_output() -> None:
    class Node:
        def __init__(self, symbolics=()) -> None:
            self.symbolics, self.value, self.writes = symbolics, None, []

        def __setattr__(self, key, value) -> None:
            if key == "value" and hasattr(self, "writes"):
                self.writes.append(value)
            object.__setattr__(self, key, value)

    class NodeMap:
        UserOutputSelector = Node(("UserOutput1", "UserOutput2"))
        UserOutputValue = Node()

    outputs = NodeMapOutputs(NodeMap())
    sig = CameraOutputSignaller(outputs)
    sig.signal(insp(Verdict.PASS))
    assert NodeMap.UserOutputSelector.writes[-1] == "UserOutput1"
    assert NodeMap.UserOutputValue.writes == [False, True]
