"""Start-up gating, golden self-test, state machine and station file (issue 4, F9)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from testkit.bundles import write_golden_samples
from vinspect.camera.config import ProcessSourceConfig
from vinspect.errors import ConfigError, StateError
from vinspect.pipeline.gating import gate_bundle
from vinspect.pipeline.state import StationStateMachine
from vinspect.station_file import JsonlSinkConfig, ModelByName, ModelByPath, load_station
from vinspect.types import StationState

GOOD = ("good", np.full((20, 20), 50, np.uint8), "PASS", 50 / 255)
BAD = ("bad", np.full((20, 20), 200, np.uint8), "FAIL", 200 / 255)


def _tamper(bundle: Path) -> None:
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))


def _manifest(bundle: Path, **changes: object) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps(m | changes))


@pytest.mark.parametrize(
    ("breaks", "reason"),
    [
        (lambda b: (b / "model.onnx").unlink(), "model file missing"),
        (lambda b: (b / "manifest.json").unlink(), "manifest missing"),
        (_tamper, "does not match the manifest"),
        (lambda b: (b / "model.onnx").write_bytes(b"\x80\x04junk"), "pickle"),
        (lambda b: _manifest(b, labels=["spot"]), "task"),
        (lambda b: write_golden_samples(b, [GOOD, (*BAD[:2], "PASS", BAD[3])]), "expected PASS, model says FAIL"),
        (lambda b: write_golden_samples(b, [(*GOOD[:3], 0.9)]), "drifted"),
        (lambda b: _manifest(b, golden_samples=[]), "no golden samples"),
    ],
)
def test_gate_refuses_bad_bundles_with_reason(tiny_bundle, breaks, reason) -> None:
    write_golden_samples(tiny_bundle, [GOOD, BAD])
    breaks(tiny_bundle)
    gate = gate_bundle(tiny_bundle)
    assert not gate.ok
    assert reason in gate.reason


def test_gate_missing_bundle_and_ok_bundle(tmp_path, tiny_bundle, tiny_bundle_factory) -> None:
    assert "not found" in gate_bundle(tmp_path / "nope").reason
    write_golden_samples(tiny_bundle, [GOOD, BAD])
    gate = gate_bundle(tiny_bundle)
    assert gate.ok
    assert "golden self-test passed" in gate.reason
    assert gate_bundle(tiny_bundle_factory(), require_golden=False).ok


def test_state_machine_allows_only_declared_transitions() -> None:
    sm = StationStateMachine("s")
    seen: list[StationState] = []
    sm.listen(seen.append)
    sm.enter(StationState.OPERATIONAL, reason="gated")
    sm.enter(StationState.DEGRADED, reason="faults")
    sm.enter(StationState.ERROR, reason="store")
    with pytest.raises(StateError, match="ERROR -> OPERATIONAL"):
        sm.enter(StationState.OPERATIONAL, reason="nope")
    assert not sm.try_enter(StationState.DEGRADED, reason="nope")
    sm.enter(StationState.ERROR, reason="still store")
    assert sm.reason == "still store"
    assert seen == [StationState.OPERATIONAL, StationState.DEGRADED, StationState.ERROR]


EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "config" / "station.example.yaml"


def test_station_example_file_loads() -> None:
    station = load_station(EXAMPLE)
    assert station.station_id
    assert station.deadline_ms > 0
    assert isinstance(station.model, ModelByName | ModelByPath)
    # the fast path is the default users copy: the camera runs in its own process (issue 21)
    assert isinstance(station.source, ProcessSourceConfig)
    assert station.source.inner.kind == "genicam"


def test_station_file_relative_model_and_bare_sinks(tmp_path) -> None:
    path = tmp_path / "st.yaml"
    path.write_text(
        "station_id: a\nsource: {kind: synthetic, fps: 10}\nmodel: {path: b}\nsinks: [jsonl]\n"
        "policy: {fail_at: 0.7, review_at: 0.6, on_error: review}\n"
    )
    station = load_station(path)
    assert station.model == ModelByPath(path=tmp_path / "b")
    assert station.sinks == [JsonlSinkConfig(kind="jsonl")]
    config = station.pipeline_config(max_parts=5)
    assert config.overrides.on_error == "REVIEW"
    assert config.critical_sinks == frozenset({"jsonl"})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("station_id: a\nsource: {kind: synthetic, fps: -1}\nmodel: {path: b}\n", "source.synthetic.fps"),
        ("station_id: a\nsource: {kind: synthetic}\nmodel: {path: b}\nbogus: 1\n", "bogus: Extra inputs"),
        (
            "station_id: a\nsource: {kind: synthetic}\nmodel: {path: b}\nsignal: {kind: modbus, port: 0}\n",
            "signal.modbus.port",
        ),
        ("station_id: a\nsource: {kind: synthetic}\n", "model: Field required"),
        ("- a list\n", "<root>"),
        ("station_id: [unclosed\n", "not valid YAML"),
    ],
)
def test_station_file_errors_name_file_field_reason(tmp_path, text, needle) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_station(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)
